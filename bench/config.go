package bench

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

// Config is what a user sets for one benchmark run.
type Config struct {
	// Server is the base URL of the server, e.g. http://127.0.0.1:7070. Its
	// /v1/sql endpoint is used for freshness (see Freshness) and /metrics
	// for CPU and RSS; when either is missing, those figures are reported
	// as unknown.
	Server string
	// Protocol is connect, grpc or grpc-web, or ProtocolJSONLine to load
	// another system (a peer) through its JSON-lines ingest endpoint:
	// Server is then that endpoint's URL (e.g. VictoriaLogs'
	// http://127.0.0.1:9428/insert/jsonline), batches are POSTed one at a
	// time per worker, a 2xx answer is the acknowledgement, and CPU and
	// RSS come from /metrics at the URL's host.
	// Against weir's own /insert/jsonline the records go to Stream.
	// ProtocolOTLP sends OTLP/HTTP export requests to a weir server.
	Protocol string
	// Mode is stream (PushStream, one per worker) or unary (Push).
	// grpc-web supports unary only.
	Mode string
	// Format is how batches are sent: FormatRecords (the records field)
	// or FormatArrow (an Arrow IPC stream in arrow_ipc, built per batch
	// from the same records, as a columnar client would). Peers
	// (ProtocolJSONLine) take records only.
	Format string
	// Concurrency is the number of workers, each with its own stream or
	// one unary call in flight.
	Concurrency int
	// BatchSize is the number of records per batch.
	BatchSize int
	// Window bounds the batches in flight per stream (stream mode).
	Window int
	// Rate is the target of records per second over all workers, split
	// evenly between them; 0 sends as fast as acks allow.
	Rate float64
	// Duration is how long batches are sent. Batches in flight at the end
	// get DrainTimeout more to be acknowledged.
	Duration     time.Duration
	DrainTimeout time.Duration
	// AckLevel is accepted, durable or committed.
	AckLevel string
	// Source is "synthetic" or a file glob (such as
	// testdata/loghub/*.log) whose lines become the records.
	Source string
	// Stream is the target stream.
	Stream string
	// Freshness is how the time from ack to visibility is measured: the
	// client puts a marker record in a batch every 200 ms and polls the
	// server until each is visible. FreshnessSQL polls weir's /v1/sql
	// (Server's for weir's protocols, at the root of its host for
	// ProtocolJSONLine); FreshnessLogsQL polls VictoriaLogs'
	// /select/logsql/query at the root of Server's host; FreshnessOff
	// sends no markers. Empty means FreshnessSQL, or FreshnessOff with
	// ProtocolJSONLine. The polls are load on the server like any query,
	// so two systems compare fairly when both are polled or neither.
	Freshness string
}

// Ways to measure freshness.
const (
	FreshnessSQL    = "sql"
	FreshnessLogsQL = "logsql"
	FreshnessOff    = "off"
)

// freshness returns c.Freshness with the default for its protocol filled in.
func (c Config) freshness() string {
	switch {
	case c.Freshness != "":
		return c.Freshness
	case c.Protocol == ProtocolJSONLine:
		return FreshnessOff
	}
	return FreshnessSQL
}

// ProtocolJSONLine is the Protocol of peer runs.
const ProtocolJSONLine = "jsonline"

// Formats of batches.
const (
	FormatRecords = "records"
	FormatArrow   = "arrow"
)

// DefaultConfig returns the configuration of `weir bench` without flags.
func DefaultConfig() Config {
	return Config{
		Server:       "http://127.0.0.1:7070",
		Protocol:     "connect",
		Mode:         "stream",
		Format:       FormatRecords,
		Concurrency:  4,
		BatchSize:    1000,
		Window:       8,
		Duration:     10 * time.Second,
		DrainTimeout: 10 * time.Second,
		AckLevel:     "durable",
		Source:       "synthetic",
		Stream:       "bench",
	}
}

// ErrInvalidConfig is wrapped by every error of Validate.
var ErrInvalidConfig = errors.New("invalid bench config")

// Validate reports the first setting that Run cannot use.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case !strings.HasPrefix(c.Server, "http://") && !strings.HasPrefix(c.Server, "https://"):
		return bad("server %q is not an http:// or https:// URL", c.Server)
	case c.Protocol != "connect" && c.Protocol != "grpc" && c.Protocol != "grpc-web" && c.Protocol != ProtocolJSONLine && c.Protocol != ProtocolOTLP:
		return bad("protocol %q: want connect, grpc, grpc-web, %s or %s", c.Protocol, ProtocolOTLP, ProtocolJSONLine)
	case c.Mode != "stream" && c.Mode != "unary":
		return bad("mode %q: want stream or unary", c.Mode)
	case c.Format != FormatRecords && c.Format != FormatArrow:
		return bad("format %q: want %s or %s", c.Format, FormatRecords, FormatArrow)
	case c.Format == FormatArrow && (c.Protocol == ProtocolJSONLine || c.Protocol == ProtocolOTLP):
		return bad("format %s needs a weir protocol (connect, grpc or grpc-web), not %s", FormatArrow, c.Protocol)
	case c.Protocol == "grpc-web" && c.Mode == "stream":
		return bad("grpc-web supports unary calls only (bidirectional streams need HTTP/2 end to end): use --mode unary")
	case c.Concurrency < 1 || c.BatchSize < 1 || c.Window < 1:
		return bad("concurrency, batch size and window must be positive")
	case c.Rate < 0:
		return bad("rate must not be negative")
	case c.Duration <= 0 || c.DrainTimeout <= 0:
		return bad("duration and drain timeout must be positive")
	case c.Source == "":
		return bad("source is empty")
	case c.Freshness != "" && c.Freshness != FreshnessSQL && c.Freshness != FreshnessLogsQL && c.Freshness != FreshnessOff:
		return bad("freshness %q: want %s, %s or %s", c.Freshness, FreshnessSQL, FreshnessLogsQL, FreshnessOff)
	}
	if _, ok := ackLevels[c.AckLevel]; !ok {
		return bad("ack level %q: want accepted, durable or committed", c.AckLevel)
	}
	if err := record.ValidateStream(c.Stream); err != nil {
		return bad("%v", err)
	}
	return nil
}

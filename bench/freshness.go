package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// markerService is the service.name of marker records.
	markerService = "weir-bench"
	// markerInterval is how often a marker record is sent.
	markerInterval = 200 * time.Millisecond
	// probeInterval is the pause between two polls.
	probeInterval = 100 * time.Millisecond
	// markerTimeout is how long a marker may take to become visible
	// before it counts as not seen.
	markerTimeout = 10 * time.Second
	// maxOutstanding bounds the markers polled for at once; more are
	// dropped (counted) until the server catches up.
	maxOutstanding = 2 * int(markerTimeout/markerInterval)
	// pollTimeout bounds one poll.
	pollTimeout = 5 * time.Second
)

// errNoQuery means the server has no endpoint to poll for markers (such
// as Discard, or a peer without the query API asked for).
var errNoQuery = errors.New("server has no query endpoint for freshness")

// marker is an acknowledged marker record to look for.
type marker struct {
	body  string
	ts    time.Time // its timestamp, set by the client
	acked time.Time
}

// prober polls a server for acknowledged markers and records how long
// after their ack they became visible.
//
// One poll asks for every outstanding marker at once, and only for
// records with a marker's timestamp (set by the client, so clocks need
// not agree): the server can skip what lies at other times by its
// statistics, so the poll's load stays small and flat as data grows.
// Through weir's SQL a marker is the record of service markerService
// at its timestamp, to the microsecond the column keeps; through LogsQL,
// the record with its body in the markers' time span.
type prober struct {
	finder finder
	in     chan marker

	mu          sync.Mutex
	fresh       samples
	acked       int
	dropped     int
	lost        int
	probeErrors int
	noQuery     bool
}

// finder asks a server which of the markers ms it shows; a server without
// the endpoint gives errNoQuery.
type finder interface {
	find(ctx context.Context, ms []marker) (map[string]bool, error)
}

// newProber returns a prober that polls the server of cfg (whose trimmed
// URL is server) the way cfg.Freshness says, or nil when it is off.
func newProber(cfg Config, server string, hc *http.Client) *prober {
	var f finder
	switch cfg.freshness() {
	case FreshnessOff:
		return nil
	case FreshnessLogsQL:
		f = logsQL{url: rootURL(server) + "/select/logsql/query", hc: hc}
	default:
		base := server
		if cfg.Protocol == ProtocolJSONLine {
			base = rootURL(server)
		}
		f = weirSQL{c: sqlClient{url: base + "/v1/sql", hc: hc}, stream: cfg.Stream}
	}
	return &prober{finder: f, in: make(chan marker, maxOutstanding)}
}

// offer hands over an acknowledged marker without blocking; when the
// prober is behind, the marker is dropped and counted.
func (p *prober) offer(m marker) {
	p.mu.Lock()
	p.acked++
	p.mu.Unlock()
	select {
	case p.in <- m:
	default:
		p.mu.Lock()
		p.dropped++
		p.mu.Unlock()
	}
}

// run polls for markers until p.in is closed and every marker is seen or
// timed out, or ctx ends. Freshness is measured to the start of the first
// poll that sees a marker, so the poll's own query time is left out; the
// resolution is probeInterval plus the previous poll's duration.
func (p *prober) run(ctx context.Context) {
	var (
		pending []marker
		open    = true
	)
	for ctx.Err() == nil && (open || len(pending) > 0) {
		// Take what has arrived; wait for one marker when idle.
		if len(pending) == 0 && open {
			select {
			case m, ok := <-p.in:
				if !ok {
					open = false
					continue
				}
				pending = append(pending, m)
			case <-ctx.Done():
				return
			}
		}
	drain:
		for open && len(pending) < maxOutstanding {
			select {
			case m, ok := <-p.in:
				if !ok {
					open = false
					break drain
				}
				pending = append(pending, m)
			default:
				break drain
			}
		}
		start := time.Now()
		seen, err := p.finder.find(ctx, pending)
		p.mu.Lock()
		switch {
		case errors.Is(err, errNoQuery):
			p.noQuery = true
			p.mu.Unlock()
			return
		case err != nil:
			p.probeErrors++
		}
		kept := pending[:0]
		for _, m := range pending {
			switch {
			case seen[m.body]:
				p.fresh.add(max(start.Sub(m.acked), 0))
			case start.Sub(m.acked) > markerTimeout:
				p.lost++
			default:
				kept = append(kept, m)
			}
		}
		pending = kept
		p.mu.Unlock()
		if len(pending) > 0 {
			sleep(ctx, probeInterval)
		}
	}
}

// weirSQL finds markers in a stream through weir's /v1/sql.
type weirSQL struct {
	c      sqlClient
	stream string
}

func (w weirSQL) find(ctx context.Context, ms []marker) (map[string]bool, error) {
	lo, hi := timeSpan(ms)
	var stamps strings.Builder
	for i, m := range ms {
		if i > 0 {
			stamps.WriteString(", ")
		}
		stamps.WriteString(tsLiteral(m.ts))
	}
	// The poll names neither body nor any other wide column: the server
	// then reads only the timestamps and services of the row groups that
	// span a marker's time. A filter on body, however selective, makes
	// DuckDB decompress every body page of those row groups, ~64 K rows
	// each in the files written at ingest (bench/RESULTS.md, "The
	// freshness probe reads no bodies"). A marker the stream's processors
	// cannot parse is a dead letter; it is just as visible there.
	sql := fmt.Sprintf(`SELECT DISTINCT epoch_us("timestamp") AS us FROM logs WHERE stream IN (%s, '_dead_letter') AND "date" BETWEEN DATE '%s' AND DATE '%s' AND "timestamp" IN (%s) AND service_name = %s`,
		quoteSQL(w.stream), lo.UTC().Format(time.DateOnly), hi.UTC().Format(time.DateOnly), stamps.String(), quoteSQL(markerService))
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	var rows []struct{ Us int64 }
	if err := w.c.query(ctx, sql, &rows); err != nil {
		return nil, err
	}
	found := make(map[int64]bool, len(rows))
	for _, r := range rows {
		found[r.Us] = true
	}
	seen := make(map[string]bool, len(rows))
	for _, m := range ms {
		if found[m.ts.UnixMicro()] {
			seen[m.body] = true
		}
	}
	return seen, nil
}

// logsQL finds markers through VictoriaLogs' /select/logsql/query: the
// records whose _time lies within the markers' and whose _msg is one of
// theirs (marker bodies are plain ASCII), answered as JSON lines.
type logsQL struct {
	url string
	hc  *http.Client
}

func (l logsQL) find(ctx context.Context, ms []marker) (map[string]bool, error) {
	lo, hi := timeSpan(ms)
	var q strings.Builder
	fmt.Fprintf(&q, "_time:[%s, %s] _msg:in(", lo.UTC().Format(time.RFC3339Nano), hi.UTC().Format(time.RFC3339Nano))
	for i, m := range ms {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(strconv.Quote(m.body))
	}
	q.WriteString(") | fields _msg")
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, strings.NewReader(url.Values{"query": {q.String()}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := l.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errNoQuery
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("logsql: status %d: %s", resp.StatusCode, msg)
	}
	return logsQLMessages(resp.Body)
}

// Bounds of a LogsQL answer: the peer's bytes are read up to
// maxLogsQLAnswer in all, a line up to maxLogsQLLine (a longer line is
// an error).
const (
	maxLogsQLAnswer = 64 << 20
	maxLogsQLLine   = 1 << 20
)

// logsQLMessages returns the _msg of each JSON line of a LogsQL answer
// (blank lines are skipped).
func logsQLMessages(r io.Reader) (map[string]bool, error) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(r, maxLogsQLAnswer))
	sc.Buffer(make([]byte, 0, 4096), maxLogsQLLine)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var row struct {
			Msg string `json:"_msg"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("logsql: %w: %.200s", err, sc.Bytes())
		}
		seen[row.Msg] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("logsql: %w", err)
	}
	return seen, nil
}

// timeSpan returns the earliest and the latest timestamp of ms.
func timeSpan(ms []marker) (lo, hi time.Time) {
	lo, hi = ms[0].ts, ms[0].ts
	for _, m := range ms[1:] {
		lo, hi = minTime(lo, m.ts), maxTime(hi, m.ts)
	}
	return lo, hi
}

// Freshness is the time from a marker's ack until a query sees it.
type Freshness struct {
	// Markers is the number of acknowledged markers; Seen of them became
	// visible within 10 s, Lost did not, Dropped were not polled for
	// because too many were outstanding.
	Markers int     `json:"markers"`
	Seen    int     `json:"seen"`
	Lost    int     `json:"lost"`
	Dropped int     `json:"dropped"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	// ProbeErrors counts failed polls (retried).
	ProbeErrors int `json:"probe_errors"`
}

// result returns the freshness figures, or nil when they were not
// measured (freshness off, no query endpoint, or no marker acknowledged).
func (p *prober) result() *Freshness {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noQuery || p.acked == 0 {
		return nil
	}
	l := summarise(p.fresh.d, p.fresh.seen)
	return &Freshness{
		Markers: p.acked, Seen: p.fresh.seen, Lost: p.lost, Dropped: p.dropped,
		P50Ms: l.P50Ms, P99Ms: l.P99Ms, ProbeErrors: p.probeErrors,
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// tsLiteral is t, in UTC, as a DuckDB TIMESTAMPTZ literal truncated to
// the microsecond, as DuckDB reads the lake's nanosecond timestamps.
func tsLiteral(t time.Time) string {
	return "TIMESTAMPTZ '" + t.UTC().Format("2006-01-02 15:04:05.000000") + "+00'"
}

package jsonl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

// Paths of the two endpoints.
const (
	VictoriaLogsPath = "/insert/jsonline"
	NativePath       = "/v1/ingest/jsonl"
)

// StreamHeader names a request's stream, like the stream query argument.
const StreamHeader = "Weir-Stream"

// Submitter takes decoded records into the pipeline;
// *ingest.Service is one.
type Submitter = httpin.Submitter

// Config is what a user sets for JSON lines.
type Config struct {
	// MaxBodyBytes bounds a request body, and again after gzip
	// decompression; larger ones get 413.
	MaxBodyBytes int
	// MaxLineBytes bounds a line; longer ones are dead-lettered.
	MaxLineBytes int
	// DefaultStream takes lines of requests that name no stream and
	// have no stream field.
	DefaultStream string
}

// DefaultConfig returns the settings of a fresh server.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 16 << 20, MaxLineBytes: 1 << 20, DefaultStream: "default"}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("jsonl: MaxBodyBytes must be at least 1024, got %d", c.MaxBodyBytes)
	case c.MaxLineBytes < 1:
		return fmt.Errorf("jsonl: MaxLineBytes must be positive, got %d", c.MaxLineBytes)
	}
	if err := record.ValidateStream(c.DefaultStream); err != nil {
		return fmt.Errorf("jsonl: DefaultStream: %w", err)
	}
	return nil
}

// Handler serves one of the two endpoints. It is safe for concurrent
// use.
type Handler struct {
	cfg    Config
	out    Submitter
	native bool
}

// NewVictoriaLogs returns the handler of POST /insert/jsonline: errors
// are text/plain, as VictoriaLogs answers them.
func NewVictoriaLogs(cfg Config, out Submitter) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, out: out}, nil
}

// NewNative returns the handler of POST /v1/ingest/jsonl: errors are
// JSON {"code": "...", "error": "..."}, as /v1/sql answers them.
func NewNative(cfg Config, out Submitter) (*Handler, error) {
	h, err := NewVictoriaLogs(cfg, out)
	if h != nil {
		h.native = true
	}
	return h, err
}

// Answer is the JSON body of a successful push.
type Answer struct {
	// Accepted counts the lines stored in their streams.
	Accepted int `json:"accepted"`
	// DeadLettered counts the lines that went to the dead-letter
	// stream.
	DeadLettered int `json:"dead_lettered"`
}

// ServeHTTP reads the body's lines, submits them grouped by stream, and
// answers 200 with an Answer once every line reached the acknowledgement
// level. With debug=1 it stores nothing and answers the records it would
// have stored, one JSON object a line.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, http.StatusMethodNotAllowed, "", errors.New("use POST"))
		return
	}
	p, err := h.params(r)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "", err)
		return
	}
	level, err := httpin.AckLevel(r, "ack_level", h.out.ParseLevel)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "", err)
		return
	}
	body, err := httpin.ReadBody(r, h.cfg.MaxBodyBytes)
	if err != nil {
		h.fail(w, httpin.StatusOf(err), httpin.RetryAfter(err), err)
		return
	}
	lines, err := decode(body, p)
	if err != nil {
		h.fail(w, httpin.StatusOf(err), "", err)
		return
	}
	if debug(r) {
		writeDebug(w, lines)
		return
	}
	var g httpin.Grouper
	for _, l := range lines {
		g.Add(l.stream, l.rec, l.err)
	}
	res, err := httpin.SubmitAll(r.Context(), h.out, g.Batches(), level)
	if err != nil {
		status, retry := ingest.HTTPStatus(err)
		h.fail(w, status, retry, err)
		return
	}
	ans := Answer{Accepted: res.Records - res.DeadLettered, DeadLettered: res.DeadLettered}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ans)
}

// MaxFieldNames bounds each list of field names a request's arguments
// give (_msg_field, _time_field, _stream_fields, ignore_fields).
const MaxFieldNames = 64

// params reads the request's arguments, each from its query argument or
// else its VictoriaLogs header.
func (h *Handler) params(r *http.Request) (*Params, error) {
	q := r.URL.Query()
	arg := func(name, header string) string {
		if v := q.Get(name); v != "" {
			return v
		}
		return r.Header.Get(header)
	}
	// Every field of every line is matched against the lists, so their
	// length is bounded.
	var tooLong error
	list := func(name, header string) []string {
		var out []string
		for f := range strings.SplitSeq(arg(name, header), ",") {
			if f = strings.TrimSpace(f); f != "" {
				if len(out) == MaxFieldNames {
					tooLong = fmt.Errorf("%s names more than %d fields", name, MaxFieldNames)
					return nil
				}
				out = append(out, f)
			}
		}
		return out
	}
	p := &Params{
		MsgFields:     list("_msg_field", "VL-Msg-Field"),
		TimeFields:    list("_time_field", "VL-Time-Field"),
		StreamFields:  list("_stream_fields", "VL-Stream-Fields"),
		IgnoreFields:  list("ignore_fields", "VL-Ignore-Fields"),
		Stream:        arg("stream", StreamHeader),
		DefaultStream: h.cfg.DefaultStream,
		MaxLineBytes:  h.cfg.MaxLineBytes,
	}
	if tooLong != nil {
		return nil, tooLong
	}
	if len(p.MsgFields) == 0 {
		p.MsgFields = []string{"_msg", "message", "msg"}
	}
	if len(p.TimeFields) == 0 {
		p.TimeFields = []string{"_time", "time", "timestamp"}
	}
	if p.Stream != "" {
		if err := record.ValidateStream(p.Stream); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func debug(r *http.Request) bool {
	switch strings.ToLower(r.URL.Query().Get("debug")) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// debugLine is what debug=1 answers for each line.
type debugLine struct {
	Stream       string            `json:"stream"`
	Timestamp    int64             `json:"timestamp,omitempty"`
	SeverityText string            `json:"severity_text,omitempty"`
	Body         string            `json:"body"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	Resource     map[string]string `json:"resource,omitempty"`
	Error        string            `json:"error,omitempty"`
}

func writeDebug(w http.ResponseWriter, lines []line) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, l := range lines {
		d := debugLine{Stream: l.stream, Timestamp: l.rec.Timestamp, SeverityText: l.rec.SeverityText, Body: l.rec.Body,
			Attributes: kvMap(l.rec.Attributes), Resource: kvMap(l.rec.Resource)}
		if l.err != nil {
			d.Error = l.err.Error()
		}
		if enc.Encode(d) != nil {
			return
		}
	}
}

func kvMap(kvs []record.KV) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// fail writes an error: JSON on the native endpoint, text otherwise.
func (h *Handler) fail(w http.ResponseWriter, status int, retryAfter string, err error) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	if !h.native {
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": codeOf(status), "error": err.Error()})
}

// codeOf names a status as /v1/sql's errors do.
func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_argument"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return "resource_exhausted"
	case http.StatusUnsupportedMediaType:
		return "invalid_argument"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "deadline_exceeded"
	case http.StatusMethodNotAllowed:
		return "unimplemented"
	}
	return "internal"
}

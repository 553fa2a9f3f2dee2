package hec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

// Paths HEC clients use; each has a "/1.0" variant as well.
const (
	EventPath  = "/services/collector/event"
	RawPath    = "/services/collector/raw"
	HealthPath = "/services/collector/health"
	// CollectorPath takes events, like EventPath.
	CollectorPath = "/services/collector"
)

// ChannelHeader carries a client's channel id; weir accepts it (or the
// channel query argument) and needs none, since its answer comes only
// once the events reached the acknowledgement level.
const ChannelHeader = "X-Splunk-Request-Channel"

// Submitter takes decoded records into the pipeline;
// *ingest.Service is one.
type Submitter = httpin.Submitter

// Config is what a user sets for the HEC API.
type Config struct {
	// MaxBodyBytes bounds a request body, and again after gzip
	// decompression; larger ones get 413.
	MaxBodyBytes int
	// DefaultStream takes events without an index, and those whose
	// index makes no valid stream name.
	DefaultStream string
}

// DefaultConfig returns the settings of a fresh server.
func DefaultConfig() Config { return Config{MaxBodyBytes: 16 << 20, DefaultStream: "hec"} }

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("hec: MaxBodyBytes must be at least 1024, got %d", c.MaxBodyBytes)
	}
	if err := record.ValidateStream(c.DefaultStream); err != nil {
		return fmt.Errorf("hec: DefaultStream: %w", err)
	}
	return nil
}

// Handler serves the HEC endpoints. It is safe for concurrent use.
type Handler struct {
	cfg Config
	out Submitter
}

// NewHandler returns a handler that submits to out.
func NewHandler(cfg Config, out Submitter) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, out: out}, nil
}

// Routes returns each path the handler serves with its handler, for a
// mux.
func (h *Handler) Routes() map[string]http.Handler {
	ev, raw, health := http.HandlerFunc(h.events), http.HandlerFunc(h.raw), http.HandlerFunc(h.health)
	return map[string]http.Handler{
		CollectorPath: ev, CollectorPath + "/1.0": ev,
		EventPath: ev, EventPath + "/1.0": ev,
		RawPath: raw, RawPath + "/1.0": raw,
		HealthPath: health, HealthPath + "/1.0": health,
	}
}

// answer is HEC's answer body.
type answer struct {
	Text    string `json:"text"`
	Code    int    `json:"code"`
	Invalid *int   `json:"invalid-event-number,omitempty"`
	// Detail says what weir found wrong; HEC clients ignore it.
	Detail string `json:"detail,omitempty"`
}

func reply(w http.ResponseWriter, status, code int, invalid *int, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(answer{Text: texts[code], Code: code, Invalid: invalid, Detail: detail})
}

// failSubmit answers an error of Submit: 429 or 503 with Retry-After
// and "Server is busy" when the buffer is full or the server is going
// away, 400 "Invalid data format" for what ingest refused, 500
// otherwise.
func failSubmit(w http.ResponseWriter, err error) {
	status, retry := ingest.HTTPStatus(err)
	if retry != "" {
		w.Header().Set("Retry-After", retry)
	}
	code := CodeInternal
	switch {
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		code = CodeBusy
	case status < 500:
		code = CodeInvalidFormat
	}
	reply(w, status, code, nil, err.Error())
}

// begin checks the method and reads the level and the body; it answers
// the request itself and returns ok false when it cannot go on.
func (h *Handler) begin(w http.ResponseWriter, r *http.Request) (body []byte, level buffer.Level, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(w, http.StatusMethodNotAllowed, CodeInvalidFormat, nil, "use POST")
		return nil, 0, false
	}
	lvl, err := httpin.AckLevel(r, "ack_level", h.out.ParseLevel)
	if err != nil {
		reply(w, http.StatusBadRequest, CodeInvalidFormat, nil, err.Error())
		return nil, 0, false
	}
	body, err = httpin.ReadBody(r, h.cfg.MaxBodyBytes)
	if errors.Is(err, ingest.ErrBusy) || errors.Is(err, ingest.ErrOverBudget) {
		failSubmit(w, err) // 429 with Retry-After, or 413: "Server is busy"
		return nil, 0, false
	}
	if err != nil {
		reply(w, httpin.StatusOf(err), CodeInvalidFormat, nil, err.Error())
		return nil, 0, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		reply(w, http.StatusBadRequest, CodeNoData, nil, "")
		return nil, 0, false
	}
	return body, lvl, true
}

// stream is the stream of an index.
func (h *Handler) stream(index string) string {
	if s, err := record.StreamNameFrom(index); err == nil {
		return s
	}
	return h.cfg.DefaultStream
}

// events serves /services/collector/event: every event is submitted,
// those that cannot be stored as they are to the dead-letter stream; the
// answer is Success, or the first invalid event's number and code once
// the others are stored.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	body, level, ok := h.begin(w, r)
	if !ok {
		return
	}
	evs, bad, err := decodeEvents(body)
	if err != nil {
		reply(w, httpin.StatusOf(err), CodeInvalidFormat, nil, err.Error())
		return
	}
	var g httpin.Grouper
	for _, e := range evs {
		g.Add(h.stream(e.index), e.rec, e.err)
	}
	code, detail := CodeInvalidFormat, ""
	if bad >= 0 {
		var ee *eventError
		if errors.As(evs[bad].err, &ee) {
			code = ee.code
		}
		detail = evs[bad].err.Error()
	}
	if _, err := httpin.SubmitAll(r.Context(), h.out, g.Batches(), level); err != nil {
		allBad := bad >= 0
		for _, e := range evs {
			allBad = allBad && e.err != nil
		}
		if status, _ := ingest.HTTPStatus(err); allBad && status == http.StatusBadRequest {
			// Nothing was stored because no event was valid: the first
			// bad one says why, as Splunk answers.
			reply(w, http.StatusBadRequest, code, &bad, detail)
			return
		}
		failSubmit(w, err)
		return
	}
	if bad >= 0 {
		reply(w, http.StatusBadRequest, code, &bad, detail+"; the request's other events were stored")
		return
	}
	reply(w, http.StatusOK, CodeSuccess, nil, "")
}

// raw serves /services/collector/raw: each non-blank line is a record's
// body, with the host, source, sourcetype and index of the query
// arguments.
func (h *Handler) raw(w http.ResponseWriter, r *http.Request) {
	body, level, ok := h.begin(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	m := meta{Host: q.Get("host"), Source: q.Get("source"), Sourcetype: q.Get("sourcetype"), Index: q.Get("index")}
	res := m.resource()
	stream := h.stream(m.Index)
	var g httpin.Grouper
	n := 0
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if n++; n > httpin.MaxRecords {
			err := httpin.TooManyRecords()
			reply(w, httpin.StatusOf(err), CodeInvalidFormat, nil, err.Error())
			return
		}
		g.Add(stream, record.Record{Body: string(line), Resource: append([]record.KV(nil), res...)}, nil)
	}
	if _, err := httpin.SubmitAll(r.Context(), h.out, g.Batches(), level); err != nil {
		failSubmit(w, err)
		return
	}
	reply(w, http.StatusOK, CodeSuccess, nil, "")
}

// health serves /services/collector/health.
func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		reply(w, http.StatusMethodNotAllowed, CodeInvalidFormat, nil, "use GET")
		return
	}
	reply(w, http.StatusOK, CodeHealthy, nil, "")
}

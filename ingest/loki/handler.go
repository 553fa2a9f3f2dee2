package loki

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"

	"github.com/klauspost/compress/snappy"

	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

// Path is where Loki clients push.
const Path = "/loki/api/v1/push"

// Submitter takes decoded records into the pipeline;
// *ingest.Service is one.
type Submitter = httpin.Submitter

// Config is what a user sets for the Loki push API.
type Config struct {
	// MaxBodyBytes bounds a request body, and again the body after
	// gzip or snappy decompression; larger ones get 413.
	MaxBodyBytes int
	// StreamLabels name the labels that pick an entry's stream, first
	// first: the value of the first one present that makes a valid
	// stream name (record.StreamNameFrom) is the stream.
	StreamLabels []string
	// DefaultStream takes the entries of streams with none of
	// StreamLabels, and those whose labels cannot be read.
	DefaultStream string
}

// DefaultConfig returns the settings of a fresh server.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 16 << 20, StreamLabels: []string{"stream", "service_name", "job"}, DefaultStream: "loki"}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("loki: MaxBodyBytes must be at least 1024, got %d", c.MaxBodyBytes)
	}
	if err := record.ValidateStream(c.DefaultStream); err != nil {
		return fmt.Errorf("loki: DefaultStream: %w", err)
	}
	return nil
}

// Handler serves POST /loki/api/v1/push. It is safe for concurrent use.
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

// serviceLabels name the labels whose value becomes the resource
// attribute service.name, first first.
var serviceLabels = []string{"service_name", "service.name", "job", "app"}

// levelKeys name the structured metadata, then the labels, whose value
// becomes an entry's severity text, first first.
var levelKeys = []string{"level", "severity", "detected_level", "lvl"}

// ServeHTTP decodes a push, submits its entries grouped by stream and
// answers as Loki does: 204 when every entry reached the acknowledgement
// level, text/plain errors otherwise (400 for a body that cannot be
// decoded or entries that went to the dead-letter stream, 413 past
// MaxBodyBytes, 415 for an unknown content type, 429 or 503 with
// Retry-After when the buffer is full or the server is going away).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	level, err := httpin.AckLevel(r, "", h.out.ParseLevel)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	streams, err := h.decode(r)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, httpin.ErrTooLarge) || errors.Is(err, httpin.ErrEncoding) || errors.Is(err, httpin.ErrUnsupported) || errors.Is(err, ingest.ErrBusy) || errors.Is(err, ingest.ErrOverBudget) || errors.Is(err, ingest.ErrStalled) {
			status = httpin.StatusOf(err)
		}
		if retry := httpin.RetryAfter(err); retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		http.Error(w, err.Error(), status)
		return
	}
	var g httpin.Grouper
	total, rejected, firstReject := h.records(&g, streams)
	if total == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if _, err := httpin.SubmitAll(r.Context(), h.out, g.Batches(), level); err != nil {
		status, retry := ingest.HTTPStatus(err)
		if retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		http.Error(w, err.Error(), status)
		return
	}
	if rejected > 0 {
		http.Error(w, fmt.Sprintf("%d of %d entries went to the dead-letter stream (the first: %v); the others were stored", rejected, total, firstReject), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decode reads and decodes the body by its content type: JSON for
// application/json, else protobuf in a snappy block.
func (h *Handler) decode(r *http.Request) ([]pushStream, error) {
	ct := r.Header.Get("Content-Type")
	mt := ""
	if ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, fmt.Errorf("%w: Content-Type %q: %v", ErrMalformed, ct, err)
		}
	}
	body, err := httpin.ReadBody(r, h.cfg.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	switch mt {
	case "application/json":
		return decodeJSON(body)
	case "", "application/x-protobuf", "application/protobuf":
		n, err := snappy.DecodedLen(body)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrMalformed, err)
		}
		if n > h.cfg.MaxBodyBytes {
			return nil, fmt.Errorf("%w: the snappy block holds %d bytes; the limit is %d", httpin.ErrTooLarge, n, h.cfg.MaxBodyBytes)
		}
		if err := ingest.Charge(r.Context(), n); err != nil {
			return nil, err
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy: %v", ErrMalformed, err)
		}
		return decodeProto(raw)
	}
	return nil, fmt.Errorf("%w: Content-Type %q: send application/x-protobuf (snappy) or application/json", httpin.ErrUnsupported, mt)
}

// records adds the decoded streams' entries to g by weir stream and
// counts them, and those with a reason to be dead-lettered.
func (h *Handler) records(g *httpin.Grouper, streams []pushStream) (total, rejected int, first error) {
	for _, s := range streams {
		name := h.cfg.DefaultStream
		var resource []record.KV
		if s.labelErr == nil {
			name = h.streamOf(s.labels)
			resource = resourceOf(s.labels)
		}
		for _, e := range s.entries {
			// Processors change attributes in place: each record owns its
			// slices.
			rec := record.Record{Timestamp: e.ts, Body: e.line, Attributes: e.meta, Resource: slices.Clone(resource)}
			rec.SeverityText = firstValue(e.meta, s.labels)
			rec.SeverityNumber = record.ParseSeverity(rec.SeverityText)
			err := e.err
			if s.labelErr != nil {
				err = s.labelErr
				rec.Attributes = append(rec.Attributes, record.KV{Key: "loki.labels", Value: s.rawLabels})
			}
			if err != nil {
				if first == nil {
					first = err
				}
				rejected++
			}
			g.Add(name, rec, err)
			total++
		}
	}
	return total, rejected, first
}

// streamOf picks the stream of a Loki stream's labels.
func (h *Handler) streamOf(labels []record.KV) string {
	for _, l := range h.cfg.StreamLabels {
		for _, kv := range labels {
			if kv.Key == l {
				if name, err := record.StreamNameFrom(kv.Value); err == nil {
					return name
				}
			}
		}
	}
	return h.cfg.DefaultStream
}

// resourceOf is the labels as resource attributes, with service.name
// from the first of serviceLabels present.
func resourceOf(labels []record.KV) []record.KV {
	res := make([]record.KV, 0, len(labels)+1)
	res = append(res, labels...)
	for _, kv := range labels {
		if kv.Key == "service.name" {
			return res
		}
	}
	for _, l := range serviceLabels {
		for _, kv := range labels {
			if kv.Key == l && kv.Value != "" {
				return append(res, record.KV{Key: "service.name", Value: kv.Value})
			}
		}
	}
	return res
}

// firstValue is the value of the first of levelKeys in meta, else in
// labels, or "".
func firstValue(meta, labels []record.KV) string {
	for _, kvs := range [][]record.KV{meta, labels} {
		for _, k := range levelKeys {
			for _, kv := range kvs {
				if kv.Key == k && kv.Value != "" {
					return kv.Value
				}
			}
		}
	}
	return ""
}

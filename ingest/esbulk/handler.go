package esbulk

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/internal/record"
)

// Submitter takes decoded records down the pipeline;
// *ingest.Service implements it (see its Submit and ParseLevel).
type Submitter interface {
	Submit(ctx context.Context, stream string, recs []record.Record, rejects []error, level buffer.Level) (ingest.Result, error)
	ParseLevel(name string) (buffer.Level, error)
}

// Config bounds the endpoint.
type Config struct {
	// MaxBodyBytes bounds a bulk body after decompression; a larger one
	// is refused whole with 413. Default 16 MiB.
	MaxBodyBytes int
	// MaxBatchRecords is the most records handed to Submit at once:
	// the ingest service's own bound, so that a refused call is one
	// batch and its items can be answered with the error while those
	// of earlier calls stay stored. Default 100,000.
	MaxBatchRecords int
	// Limits bound the decoding of each line.
	Limits Limits
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.MaxBatchRecords <= 0 {
		c.MaxBatchRecords = 100_000
	}
	return c
}

// Version is the Elasticsearch version weir reports: clients that pick
// their request format by the server's major version (Vector, Filebeat)
// speak 8.x to it.
const Version = "8.19.0"

// Handler serves the Elasticsearch API subset. It is safe for
// concurrent use.
type Handler struct {
	cfg   Config
	sub   Submitter
	dec   *Decoder
	log   *slog.Logger
	seqNo atomic.Int64
}

// New returns a Handler that submits to sub.
func New(cfg Config, sub Submitter, log *slog.Logger) *Handler {
	cfg = cfg.withDefaults()
	return &Handler{cfg: cfg, sub: sub, dec: NewDecoder(cfg.Limits), log: log}
}

// Handler returns a handler that serves the Elasticsearch API at the
// root of a server shared with other routes and hands the rest to next:
// paths whose first segment starts with "_" (/_bulk, /_license,
// /_cluster/health, ...), /<index>/_bulk, and GET or HEAD / from an
// Elasticsearch client (IsClient), which gets the cluster info while a
// browser gets next's page.
func (h *Handler) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/_"), isIndexBulk(p):
			h.ServeHTTP(w, r)
		case p == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && IsClient(r):
			h.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// isIndexBulk reports whether p is /<index>/_bulk.
func isIndexBulk(p string) bool {
	rest, ok := strings.CutSuffix(p, "/_bulk")
	return ok && len(rest) > 1 && rest[0] == '/' && !strings.Contains(rest[1:], "/")
}

// IsClient reports whether r comes from an Elasticsearch client rather
// than a browser: it sends X-Elastic-Client-Meta (the official
// clients), or accepts JSON and not HTML, or names a known shipper in
// its User-Agent (Beats, Vector, Fluent Bit, Logstash, rsyslog).
func IsClient(r *http.Request) bool {
	if r.Header.Get("X-Elastic-Client-Meta") != "" {
		return true
	}
	accept := strings.ToLower(r.Header.Get("Accept"))
	if strings.Contains(accept, "text/html") {
		return false
	}
	if strings.Contains(accept, "json") {
		return true
	}
	ua := strings.ToLower(r.UserAgent())
	for _, s := range []string{"elastic", "beat", "vector", "fluent", "logstash", "rsyslog"} {
		if strings.Contains(ua, s) {
			return true
		}
	}
	return false
}

// ServeHTTP serves every path as the Elasticsearch API: mount it under
// a prefix of its own (http.StripPrefix) for clients that take a path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	p := r.URL.Path
	if p == "" {
		p = "/"
	}
	switch {
	case p == "/_bulk" || isIndexBulk(p):
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			methodNotAllowed(w, r, "POST, PUT")
			return
		}
		index := ""
		if p != "/_bulk" {
			index = strings.TrimSuffix(p[1:], "/_bulk")
		}
		h.bulk(w, r, index)
	default:
		h.probe(w, r, p)
	}
}

// acceptedTypes are the media types of bulk bodies clients send.
var acceptedTypes = []string{"application/json", "application/x-ndjson", "application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson"}

// bulk answers a bulk request.
func (h *Handler) bulk(w http.ResponseWriter, r *http.Request, pathIndex string) {
	start := time.Now()
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if !contains(acceptedTypes, mt) {
		// What Elasticsearch answers; it also keeps cross-site forms out.
		writeJSON(w, http.StatusNotAcceptable, map[string]any{
			"error":  fmt.Sprintf("Content-Type header [%s] is not supported: send application/x-ndjson or application/json", truncate(ct, 64)),
			"status": http.StatusNotAcceptable,
		})
		return
	}
	level, err := h.sub.ParseLevel(r.URL.Query().Get("ack"))
	if err != nil {
		writeError(w, http.StatusBadRequest, typeIllegal, err.Error(), "")
		return
	}
	body, status, err := h.readBody(w, r)
	if err != nil {
		retry := ""
		if status == http.StatusTooManyRequests {
			retry = "1"
		}
		writeError(w, status, errorType(status), err.Error(), retry)
		return
	}
	items, err := h.dec.Decode(body, pathIndex)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, errorType(http.StatusRequestEntityTooLarge), err.Error(), "")
		return
	}
	if status, retry, err := h.submit(r.Context(), items, level); err != nil {
		writeError(w, status, errorType(status), err.Error(), retry)
		return
	}
	h.answer(w, items, time.Since(start))
}

// readBody reads the request body, gunzipped when it says so, bounded by
// MaxBodyBytes; on error it returns the status to answer.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	max := h.cfg.MaxBodyBytes
	var src io.Reader = http.MaxBytesReader(w, r.Body, int64(max))
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if status, _, budget := ingest.BodyStatus(err); budget {
			return nil, status, err // reading the header met the in-flight budget
		}
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("gzip body: %v", err)
		}
		defer zr.Close()
		src = ingest.ChargeReader(r.Context(), zr)
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q is not supported: send gzip or none", truncate(enc, 32))
	}
	body, err := io.ReadAll(io.LimitReader(src, int64(max)+1))
	var tooBig *http.MaxBytesError
	budgetStatus, _, budget := ingest.BodyStatus(err)
	switch {
	case errors.As(err, &tooBig) || len(body) > max:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the bulk body is larger than %d bytes (after decompression): send smaller batches", max)
	case budget:
		return nil, budgetStatus, err
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %v", err)
	}
	return body, 0, nil
}

// submit hands the stored items' records to the submitter, one call per
// stream (in the order streams first appear) and per MaxBatchRecords.
// A refused call marks its items with the error. When the first call is
// refused for backpressure (429) or unavailability (503, 504), nothing
// was stored and the whole request fails with that status, so clients
// retry it whole.
func (h *Handler) submit(ctx context.Context, items []Item, level buffer.Level) (int, string, error) {
	var order []string
	byStream := map[string][]int{}
	for i := range items {
		if items[i].Status != 0 {
			continue
		}
		s := items[i].Stream
		if _, ok := byStream[s]; !ok {
			order = append(order, s)
		}
		byStream[s] = append(byStream[s], i)
	}
	stored := false
	for _, s := range order {
		idx := byStream[s]
		for len(idx) > 0 {
			part := idx[:min(len(idx), h.cfg.MaxBatchRecords)]
			idx = idx[len(part):]
			recs := make([]record.Record, len(part))
			var rejects []error
			for k, i := range part {
				recs[k] = items[i].Record
				if items[i].Reject != nil {
					if rejects == nil {
						rejects = make([]error, len(part))
					}
					rejects[k] = items[i].Reject
				}
			}
			_, err := h.sub.Submit(ctx, s, recs, rejects, level)
			if err == nil {
				stored = true
				continue
			}
			status, retry := ingest.HTTPStatus(err)
			msg := err.Error()
			var cerr *connect.Error
			if errors.As(err, &cerr) {
				msg = cerr.Message()
			}
			if !stored && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout) {
				return status, retry, errors.New(msg)
			}
			for _, i := range part {
				items[i].fail(status, errorType(status), "%s", msg)
			}
		}
	}
	return 0, "", nil
}

// errorType is the Elasticsearch error type of a status.
func errorType(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return typeRejected
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return typeUnavailable
	case http.StatusRequestEntityTooLarge:
		return "content_too_long_exception"
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return typeIllegal
	case http.StatusUnauthorized, http.StatusForbidden:
		return "security_exception"
	}
	return "exception"
}

type shards struct {
	Total      int `json:"total"`
	Successful int `json:"successful"`
	Failed     int `json:"failed"`
}

type esError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

type itemResult struct {
	Index       string   `json:"_index"`
	ID          string   `json:"_id"`
	Version     int      `json:"_version,omitempty"`
	Result      string   `json:"result,omitempty"`
	Shards      *shards  `json:"_shards,omitempty"`
	SeqNo       *int64   `json:"_seq_no,omitempty"`
	PrimaryTerm int      `json:"_primary_term,omitempty"`
	Status      int      `json:"status"`
	Error       *esError `json:"error,omitempty"`
}

// answer writes the bulk response: one item per action, in order.
func (h *Handler) answer(w http.ResponseWriter, items []Item, took time.Duration) {
	resp := struct {
		Took   int64                   `json:"took"`
		Errors bool                    `json:"errors"`
		Items  []map[string]itemResult `json:"items"`
	}{Took: took.Milliseconds(), Items: make([]map[string]itemResult, len(items))}
	for i := range items {
		it := &items[i]
		res := itemResult{Index: it.Index, ID: it.ID}
		if it.Status != 0 {
			resp.Errors = true
			res.Status, res.Error = it.Status, &esError{Type: it.ErrType, Reason: it.Reason}
		} else {
			if res.ID == "" {
				res.ID = newID()
			}
			seq := h.seqNo.Add(1) - 1
			res.Version, res.Result, res.SeqNo, res.PrimaryTerm = 1, "created", &seq, 1
			res.Shards = &shards{Total: 1, Successful: 1}
			res.Status = http.StatusCreated
		}
		resp.Items[i] = map[string]itemResult{it.Action: res}
	}
	writeJSON(w, http.StatusOK, resp)
}

// newID returns an id in the form Elasticsearch generates: 20 characters
// of URL-safe base64.
func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// writeError writes an error in Elasticsearch's shape.
func writeError(w http.ResponseWriter, status int, typ, reason, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	e := esError{Type: typ, Reason: reason}
	writeJSON(w, status, map[string]any{
		"error":  map[string]any{"root_cause": []esError{e}, "type": typ, "reason": reason},
		"status": status,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// A failed write means the client went away.
	_ = json.NewEncoder(w).Encode(v)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]any{
		"error":  fmt.Sprintf("Incorrect HTTP method for uri [%s] and method [%s], allowed: [%s]", truncate(r.URL.Path, 128), r.Method, allow),
		"status": http.StatusMethodNotAllowed,
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

package query

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Media types of the SQL endpoint's results.
const (
	MediaJSON  = "application/json"
	MediaCSV   = "text/csv"
	MediaArrow = "application/vnd.apache.arrow.stream"
	// MediaParquet is a Parquet file (zstd); it streams like the others,
	// with the file's footer written last.
	MediaParquet = "application/vnd.apache.parquet"
)

// maxSQLBody bounds the request body of the SQL endpoint.
const maxSQLBody = 1 << 20

// SQLRequest is the body of POST /v1/sql.
type SQLRequest struct {
	SQL       string `json:"sql"`
	MaxRows   uint64 `json:"max_rows,omitempty"`
	TimeoutMS uint32 `json:"timeout_ms,omitempty"`
}

// HTTPHandler serves POST /v1/sql: a JSON body {"sql": "..."} answered in
// JSON (default), CSV (Accept: text/csv), an Arrow IPC stream (Accept:
// application/vnd.apache.arrow.stream) or a Parquet file (Accept:
// application/vnd.apache.parquet).
//
// The request must say Content-Type: application/json. Browsers send a
// cross-site form or text body without asking the server first, but a
// JSON one only after a CORS preflight, which weir never grants: so a
// page on another site cannot make a visitor's browser run SQL here.
//
// The JSON answer is {"columns": [...], "rows": [{...}, ...],
// "truncated": bool, "elapsed_ms": n}; an error that strikes after rows
// were sent ends it with an "error" member, and CSV, Arrow and Parquet
// answers with a Weir-Error trailer. A CSV, Arrow or Parquet answer cut at
// the row limit ends with the trailer Weir-Truncated: true. Errors before
// any row get a status code and {"code": "...", "error": "..."}.
//
// tenant names whose data a request reads, from its context (the
// authenticated caller); nil means the default tenant for every request.
func (e *Engine) HTTPHandler(tenant func(context.Context) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.serveSQL(w, r, tenant) })
}

func (e *Engine) serveSQL(w http.ResponseWriter, r *http.Request, tenant func(context.Context) string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST with a JSON body {\"sql\": \"...\"}")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != MediaJSON {
		httpError(w, http.StatusUnsupportedMediaType, "invalid_argument", "Content-Type must be application/json")
		return
	}
	if r.Header.Get("Content-Encoding") != "" {
		httpError(w, http.StatusUnsupportedMediaType, "invalid_argument", "compressed request bodies are not accepted; send the JSON as it is")
		return
	}
	var req SQLRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSQLBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "invalid_argument", fmt.Sprintf("request body is larger than %d bytes", maxSQLBody))
			return
		}
		httpError(w, http.StatusBadRequest, "invalid_argument", "request body must be JSON {\"sql\": \"...\"}: "+err.Error())
		return
	}
	if strings.TrimSpace(req.SQL) == "" {
		httpError(w, http.StatusBadRequest, "invalid_argument", "sql is empty")
		return
	}
	media := negotiate(r.Header.Get("Accept"))
	var out ResultWriter
	hw := &httpResult{w: w, media: media}
	switch media {
	case MediaCSV:
		out = &headerOnBegin{hw: hw, inner: NewWriter(FormatCSV, w)}
	case MediaArrow:
		out = &headerOnBegin{hw: hw, inner: NewWriter(FormatArrow, w)}
	case MediaParquet:
		out = &headerOnBegin{hw: hw, inner: NewWriter(FormatParquet, w)}
	default:
		out = &jsonDocWriter{hw: hw}
	}
	if media != MediaJSON {
		w.Header().Set("Trailer", "Weir-Error, Weir-Truncated")
	}
	opt := Options{MaxRows: req.MaxRows, Timeout: time.Duration(req.TimeoutMS) * time.Millisecond}
	if tenant != nil {
		opt.Tenant = tenant(r.Context())
	}
	st, err := e.Run(r.Context(), req.SQL, opt, out)
	if err != nil {
		if !hw.begun {
			status, code := httpStatus(err)
			httpError(w, status, code, err.Error())
			return
		}
		if jw, ok := out.(*jsonDocWriter); ok {
			jw.fail(err)
		} else {
			w.Header().Set("Weir-Error", err.Error())
		}
		return
	}
	if jw, ok := out.(*jsonDocWriter); ok {
		jw.finish(st)
	}
}

// negotiate picks the result media type from an Accept header.
func negotiate(accept string) string {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case MediaCSV, MediaArrow, MediaParquet, MediaJSON:
			return mt
		}
	}
	return MediaJSON
}

// httpStatus maps a Run error to an HTTP status and a Connect code name.
func httpStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, "invalid_argument"
	case errors.Is(err, ErrBusy), errors.Is(err, ErrResources):
		return http.StatusTooManyRequests, "resource_exhausted"
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout, "deadline_exceeded"
	case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
		return 499, "canceled"
	}
	return http.StatusInternalServerError, "internal"
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", MediaJSON)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "error": msg})
}

// httpResult writes the success header once, when the result begins.
type httpResult struct {
	w     http.ResponseWriter
	media string
	begun bool
}

func (h *httpResult) begin() {
	h.begun = true
	h.w.Header().Set("Content-Type", h.media)
	h.w.WriteHeader(http.StatusOK)
}

type headerOnBegin struct {
	hw    *httpResult
	inner ResultWriter
}

func (h *headerOnBegin) Begin(cols []Column) error {
	h.hw.begin()
	return h.inner.Begin(cols)
}
func (h *headerOnBegin) Row(v []driver.Value) error { return h.inner.Row(v) }

func (h *headerOnBegin) nestedAsJSON() bool { return wantsJSONText(h.inner) }

func (h *headerOnBegin) parquetOptions() string {
	if cw, ok := h.inner.(columnarWriter); ok {
		return cw.parquetOptions()
	}
	return ""
}

func (h *headerOnBegin) writeParquet(r *parquetResult) error {
	return h.inner.(columnarWriter).writeParquet(r)
}
func (h *headerOnBegin) End(truncated bool) error {
	if truncated {
		h.hw.w.Header().Set("Weir-Truncated", "true")
	}
	return h.inner.End(truncated)
}

// jsonDocWriter writes the JSON document answer.
type jsonDocWriter struct {
	hw   *httpResult
	rows ndjsonWriter
	n    int
}

func (j *jsonDocWriter) nestedAsJSON() bool { return true }

func (j *jsonDocWriter) Begin(cols []Column) error {
	j.hw.begin()
	j.rows.w = j.hw.w
	if err := j.rows.Begin(cols); err != nil {
		return err
	}
	head, err := json.Marshal(cols)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(j.hw.w, `{"columns":%s,"rows":[`, head)
	return err
}

// jsonDocBlock is how many bytes of rows jsonDocWriter gathers before it
// writes them: one Write per row cost more than encoding the row.
const jsonDocBlock = 32 << 10

func (j *jsonDocWriter) Row(vals []driver.Value) error {
	b := j.rows.buf
	if j.n > 0 {
		b = append(b, ',')
	}
	b = append(b, '\n')
	b, err := j.rows.appendRow(b, vals)
	if err != nil {
		return err
	}
	j.rows.buf = b
	j.n++
	if len(b) >= jsonDocBlock {
		return j.flush()
	}
	return nil
}

// flush writes the rows gathered so far.
func (j *jsonDocWriter) flush() error {
	if len(j.rows.buf) == 0 {
		return nil
	}
	_, err := j.hw.w.Write(j.rows.buf)
	j.rows.buf = j.rows.buf[:0]
	return err
}

func (j *jsonDocWriter) End(bool) error { return j.flush() }

func (j *jsonDocWriter) finish(st Stats) {
	if j.flush() != nil {
		return
	}
	fmt.Fprintf(j.hw.w, "],\"truncated\":%t,\"elapsed_ms\":%.3f}\n", st.Truncated, float64(st.Elapsed)/float64(time.Millisecond))
}

func (j *jsonDocWriter) fail(err error) {
	if j.flush() != nil {
		return
	}
	msg, _ := json.Marshal(err.Error())
	fmt.Fprintf(j.hw.w, "],\"error\":%s}\n", msg)
}

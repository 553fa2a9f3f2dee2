package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of the schema endpoint.
const (
	// schemaTimeout bounds all the queries of one schema request.
	schemaTimeout = 20 * time.Second
	// schemaSample is the number of records, drawn at random, whose
	// attribute keys are counted.
	schemaSample = 100_000
	// maxSchemaStreams and maxSchemaKeys bound the lists returned.
	maxSchemaStreams = 1000
	maxSchemaKeys    = 200
)

// schema is the answer of GET /ui/schema.
type schema struct {
	// Streams are the streams with records, by name, with their counts.
	Streams []schemaStream `json:"streams"`
	// Columns are the columns of the logs view, in order.
	Columns []schemaColumn `json:"columns"`
	// AttributeKeys are the most frequent keys of the attributes map in
	// a random sample of SampledRecords records (of one stream, if the
	// request named one), most frequent first.
	AttributeKeys  []schemaKey `json:"attribute_keys"`
	SampledRecords int64       `json:"sampled_records"`
}

type schemaStream struct {
	Name    string `json:"name"`
	Records int64  `json:"records"`
}

type schemaColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type schemaKey struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	// Frequency is Count over the records sampled, 0 to 1.
	Frequency float64 `json:"frequency"`
}

// schemaHandler serves GET /ui/schema[?stream=name]. It runs three
// queries through query, one after another, within schemaTimeout.
type schemaHandler struct {
	query func(ctx context.Context, sql string) ([]map[string]any, error)
}

func (h schemaHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.query == nil {
		schemaError(w, http.StatusNotImplemented, errors.New("this server has no schema source"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), schemaTimeout)
	defer cancel()
	s, err := h.build(ctx, r.URL.Query().Get("stream"))
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, errUnknownStream) {
			status = http.StatusNotFound
		} else if ctx.Err() != nil {
			status = http.StatusGatewayTimeout
		}
		schemaError(w, status, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(s)
}

var errUnknownStream = errors.New("no such stream")

func (h schemaHandler) build(ctx context.Context, stream string) (*schema, error) {
	s := &schema{Streams: []schemaStream{}, Columns: []schemaColumn{}, AttributeKeys: []schemaKey{}}
	rows, err := h.query(ctx, "DESCRIBE logs")
	if err != nil {
		return nil, fmt.Errorf("columns: %w", err)
	}
	for _, r := range rows {
		s.Columns = append(s.Columns, schemaColumn{Name: str(r["column_name"]), Type: str(r["column_type"])})
	}
	rows, err = h.query(ctx, fmt.Sprintf("SELECT stream, count(*) AS records FROM logs GROUP BY stream ORDER BY stream LIMIT %d", maxSchemaStreams))
	if err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	var total int64
	for _, r := range rows {
		st := schemaStream{Name: str(r["stream"]), Records: integer(r["records"])}
		s.Streams = append(s.Streams, st)
		if stream == "" || stream == st.Name {
			total += st.Records
		}
	}
	from := "logs"
	if stream != "" {
		if !slices.ContainsFunc(s.Streams, func(st schemaStream) bool { return st.Name == stream }) {
			return nil, fmt.Errorf("%w: %q has no records", errUnknownStream, stream)
		}
		from = "(SELECT attributes FROM logs WHERE stream = " + quote(stream) + ")"
	}
	s.SampledRecords = min(total, schemaSample)
	if total == 0 {
		return s, nil
	}
	rows, err = h.query(ctx, fmt.Sprintf(
		"SELECT k AS key, count(*) AS n FROM (SELECT unnest(map_keys(attributes)) AS k FROM %s USING SAMPLE %d ROWS) GROUP BY k ORDER BY n DESC, k LIMIT %d",
		from, schemaSample, maxSchemaKeys))
	if err != nil {
		return nil, fmt.Errorf("attribute keys: %w", err)
	}
	for _, r := range rows {
		n := integer(r["n"])
		s.AttributeKeys = append(s.AttributeKeys, schemaKey{
			Key:       str(r["key"]),
			Count:     n,
			Frequency: math.Round(float64(n)/float64(s.SampledRecords)*1e4) / 1e4,
		})
	}
	return s, nil
}

func schemaError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// quote makes s a SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// integer converts a count as a query function may return it.
func integer(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		return int64(min(x, math.MaxInt64))
	case float64:
		return int64(x)
	case json.Number:
		n, _ := x.Int64()
		return n
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

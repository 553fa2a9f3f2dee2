package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// DashboardQuery is one query of the dashboard suite. SQL holds %[1]s
// where the stream's name goes (quoted) and, for the lookup, %[2]s where
// a trace id of the stream goes.
type DashboardQuery struct {
	Name string
	SQL  string
}

// DashboardQueries are the queries a log dashboard runs, timed by
// RunQueries over one stream: the severity histogram per minute and the
// top services, from the log_counts view, the top messages from
// log_messages (both answer from compacted files' rollups and count the
// other rows when queried; docs/format.md, "SQL views"), a point lookup
// by trace id and a substring search for the newest matches over the
// logs view. They read the stream's whole history, as a dashboard's
// "all" range does.
var DashboardQueries = []DashboardQuery{
	{"severity_histogram", `SELECT epoch_ms("minute") AS t, severity_text, sum(n)::BIGINT AS n FROM log_counts WHERE stream = %[1]s GROUP BY ALL ORDER BY t, severity_text`},
	{"top_services", `SELECT service_name, sum(n)::BIGINT AS n FROM log_counts WHERE stream = %[1]s GROUP BY 1 ORDER BY n DESC LIMIT 10`},
	{"top_messages", `SELECT body, sum(n)::BIGINT AS n FROM log_messages WHERE stream = %[1]s GROUP BY 1 ORDER BY n DESC, body LIMIT 10`},
	{"trace_lookup", `SELECT "timestamp", service_name, severity_text, body FROM logs WHERE stream = %[1]s AND trace_id = %[2]s ORDER BY "timestamp"`},
	{"search", `SELECT "timestamp", service_name, body FROM logs WHERE stream = %[1]s AND body LIKE '%%Exception%%' ORDER BY "timestamp" DESC LIMIT 100`},
}

// QueryTiming is how long one dashboard query took over Runs runs, after
// one untimed run that warms the server's caches.
type QueryTiming struct {
	Name  string  `json:"name"`
	Runs  int     `json:"runs"`
	P50Ms float64 `json:"p50_ms"`
	MaxMs float64 `json:"max_ms"`
	// Rows is the number of rows the query answered.
	Rows int `json:"rows"`
}

// QueryReport is the result of RunQueries.
type QueryReport struct {
	Stream string `json:"stream"`
	// StreamRows is the number of records the stream held.
	StreamRows int64         `json:"stream_rows"`
	Queries    []QueryTiming `json:"queries"`
}

// RunQueries times DashboardQueries over stream on the server's /v1/sql,
// each runs times (at least 1) after a warm-up run. Times are measured at
// the client, from request to the whole answer read, so they include the
// HTTP round trip and JSON encoding. A stream without a trace id skips
// the lookup.
func RunQueries(ctx context.Context, server, stream string, runs int) (QueryReport, error) {
	rep := QueryReport{Stream: stream}
	if runs < 1 {
		return rep, fmt.Errorf("%w: query runs %d: want at least 1", ErrInvalidConfig, runs)
	}
	c := sqlClient{url: strings.TrimRight(server, "/") + "/v1/sql", hc: &http.Client{}}
	qs := quoteSQL(stream)
	var counts []struct{ N int64 }
	if err := c.query(ctx, fmt.Sprintf("SELECT count(*) AS n FROM logs WHERE stream = %s", qs), &counts); err != nil {
		return rep, err
	}
	rep.StreamRows = counts[0].N
	var traces []struct{ TraceID string }
	if err := c.query(ctx, fmt.Sprintf("SELECT trace_id AS traceid FROM logs WHERE stream = %s AND trace_id IS NOT NULL LIMIT 1", qs), &traces); err != nil {
		return rep, err
	}
	for _, q := range DashboardQueries {
		if strings.Contains(q.SQL, "%[2]s") && len(traces) == 0 {
			continue
		}
		trace := "NULL"
		if len(traces) > 0 {
			trace = quoteSQL(traces[0].TraceID)
		}
		sql := fmt.Sprintf(q.SQL, qs, trace)
		var rows []json.RawMessage
		if err := c.query(ctx, sql, &rows); err != nil {
			return rep, fmt.Errorf("%s: %w", q.Name, err)
		}
		d := make([]time.Duration, runs)
		for i := range d {
			start := time.Now()
			if err := c.query(ctx, sql, &rows); err != nil {
				return rep, fmt.Errorf("%s: %w", q.Name, err)
			}
			d[i] = time.Since(start)
		}
		slices.Sort(d)
		rep.Queries = append(rep.Queries, QueryTiming{
			Name: q.Name, Runs: runs, Rows: len(rows),
			P50Ms: millis(d[(len(d)-1)/2]), MaxMs: millis(d[len(d)-1]),
		})
	}
	return rep, nil
}

// WriteTable writes r as a human-readable table.
func (r QueryReport) WriteTable(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "dashboard queries over stream %q (%d records):\n", r.Stream, r.StreamRows); err != nil {
		return err
	}
	for _, q := range r.Queries {
		if _, err := fmt.Fprintf(w, "  %-20s p50 %8.1f ms  max %8.1f ms  (%d runs, %d rows)\n", q.Name, q.P50Ms, q.MaxMs, q.Runs, q.Rows); err != nil {
			return err
		}
	}
	return nil
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func quoteSQL(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// sqlClient runs queries on a weir /v1/sql endpoint.
type sqlClient struct {
	url string
	hc  *http.Client
}

// query runs sql and decodes the answer's rows into rows. Errors carry
// the server's message; a server without the endpoint gives errNoQuery.
func (c sqlClient) query(ctx context.Context, sql string, rows any) error {
	body, _ := json.Marshal(map[string]any{"sql": sql})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		return errNoQuery
	}
	var res struct {
		Rows  json.RawMessage `json:"rows"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("sql: status %d: %.200s", resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK || res.Error != "" {
		return fmt.Errorf("sql: status %d: %s", resp.StatusCode, res.Error)
	}
	return json.Unmarshal(res.Rows, rows)
}

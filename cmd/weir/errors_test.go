package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/encoding/protowire"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestBadInput sends every kind of malformed request and checks each gets
// a clear error with the right code, and that accepted data is untouched.
func TestBadInput(t *testing.T) {
	s := startServer(t, "", func(c *config) { c.Ingest.MaxMessageBytes = 64 << 10 })
	if err := pushErr(t, s.url, "good", textRecord("accepted before the bad ones")); err != nil {
		t.Fatal(err)
	}
	future := uint64(time.Now().Add(365 * 24 * time.Hour).UnixNano())
	wantCode(t, "invalid stream name", pushErr(t, s.url, "Bad/Name", textRecord("x")), connect.CodeInvalidArgument)
	wantCode(t, "empty stream name", pushErr(t, s.url, "", textRecord("x")), connect.CodeInvalidArgument)
	wantCode(t, "empty batch", pushErr(t, s.url, "good"), connect.CodeInvalidArgument)
	// A batch whose every record is invalid is rejected; one with some
	// valid records is accepted and the invalid ones become dead letters.
	wantCode(t, "timestamp a year ahead", pushErr(t, s.url, "good", &weirv1.LogRecord{Body: "x", TimeUnixNano: future}), connect.CodeInvalidArgument)
	wantCode(t, "severity 99", pushErr(t, s.url, "good", &weirv1.LogRecord{Body: "x", SeverityNumber: 99}), connect.CodeInvalidArgument)
	if err := pushErr(t, s.url, "mixed", textRecord("fine"), &weirv1.LogRecord{Body: "from the future", TimeUnixNano: future}); err != nil {
		t.Fatalf("mixed batch: %v", err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE body = 'from the future' AND attributes['weir.dead_letter.stage'] = 'validate'", 1)
	waitCount(t, s.url, "SELECT count(*) FROM mixed", 1)
	wantCode(t, "3-byte trace id", pushErr(t, s.url, "good", &weirv1.LogRecord{Body: "x", TraceId: []byte{1, 2, 3}}), connect.CodeInvalidArgument)
	wantCode(t, "oversized message", pushErr(t, s.url, "good", textRecord(strings.Repeat("x", 100<<10))), connect.CodeResourceExhausted)

	// Invalid UTF-8 can't be produced by a conforming client, so build the
	// protobuf bytes by hand: PushRequest{stream: "good", records: [{body: "\xff"}]}.
	var rec []byte
	rec = protowire.AppendTag(rec, 5, protowire.BytesType)
	rec = protowire.AppendString(rec, "bad \xff utf-8")
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendString(msg, "good")
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	msg = protowire.AppendBytes(msg, rec)
	resp, err := http.Post(s.url+"/weir.v1.IngestService/Push", "application/proto", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_argument") {
		t.Errorf("invalid UTF-8: %s %s", resp.Status, body)
	}
	// Garbage bytes.
	resp, err = http.Post(s.url+"/weir.v1.IngestService/Push", "application/proto", strings.NewReader("\xff\xff\xff"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage body: %s", resp.Status)
	}

	waitCount(t, s.url, "SELECT count(*) FROM good", 1)
	res := mustSQL(t, s.url, "SELECT body FROM good")
	if len(res.Rows) != 1 || res.Rows[0]["body"] != "accepted before the bad ones" {
		t.Errorf("after bad input the data is %v", res.Rows)
	}
}

// TestTimesOutsideTheWindow sends, as a shipper with a broken clock (or
// a hostile one) would, records whose times are spread over hundreds of
// future hours and, with ingest.max_past set, hundreds of past dates.
// They are dead-lettered with their times kept in attributes, and filed
// under the time they arrived: the lake gets no file per hour or date for
// them, and the records inside the window are stored as sent.
func TestTimesOutsideTheWindow(t *testing.T) {
	s := startServer(t, "", func(c *config) { c.Ingest.MaxPast = 7 * 24 * time.Hour })
	now := time.Now().UTC()
	const spread = 300
	var body strings.Builder
	line := func(at time.Time, msg string) {
		fmt.Fprintf(&body, "{\"_time\": %q, \"_msg\": %q}\n", at.Format(time.RFC3339Nano), msg)
	}
	line(now.Add(-6*24*time.Hour), "six days old")
	line(now, "now")
	for i := range spread {
		line(now.Add(time.Duration(48+i)*time.Hour), "ahead")
		line(now.Add(-time.Duration(8+i)*24*time.Hour), "behind")
	}
	resp, err := http.Post(s.url+"/v1/ingest/jsonl?stream=clock", "application/x-ndjson", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`{"accepted":2,"dead_lettered":%d}`, 2*spread); resp.StatusCode != http.StatusOK || strings.TrimSpace(string(answer)) != want {
		t.Fatalf("push: %s %s, want %s", resp.Status, answer, want)
	}
	waitCount(t, s.url, "SELECT count(*) FROM clock", 2)
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter", 2*spread)
	res := mustSQL(t, s.url, `SELECT count(DISTINCT (date, hour)) AS partitions, count(DISTINCT attributes['weir.dead_letter.timestamp']) AS times,
		count(*) FILTER (WHERE attributes['weir.dead_letter.error'] LIKE '%in the past%') AS past,
		count(*) FILTER (WHERE attributes['weir.dead_letter.error'] LIKE '%in the future%') AS future,
		count(*) FILTER (WHERE timestamp < now() - INTERVAL 1 HOUR OR timestamp > now() + INTERVAL 1 HOUR) AS outside FROM _dead_letter`)
	got := fmt.Sprint(res.Rows[0])
	// The records arrived within a second: one hour, two if it turned.
	want := fmt.Sprintf("map[future:%d outside:0 partitions:1 past:%[1]d times:%d]", spread, 2*spread)
	if got != want && got != strings.Replace(want, "partitions:1", "partitions:2", 1) {
		t.Errorf("dead letters: %s, want %s", got, want)
	}
	res = mustSQL(t, s.url, "SELECT body, date FROM clock ORDER BY timestamp")
	if len(res.Rows) != 2 || res.Rows[0]["body"] != "six days old" || res.Rows[0]["date"] != now.Add(-6*24*time.Hour).Format(time.DateOnly) {
		t.Errorf("stored: %v", res.Rows)
	}
}

// TestSQLSandbox checks that only reading statements run, that DuckDB can
// reach no file outside the data directory, and the result formats and
// bounds of the SQL endpoint.
func TestSQLSandbox(t *testing.T) {
	s := startServer(t, "", func(c *config) { c.Query.MaxConcurrent = 1 })
	if err := pushErr(t, s.url, "app", textRecord("one"), textRecord("two")); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CREATE TABLE t (i INTEGER)",
		"INSERT INTO logs (body) VALUES ('x')",
		"DELETE FROM logs",
		"DROP VIEW logs",
		"COPY (SELECT 1) TO '/tmp/weir-escape.csv'",
		"COPY (SELECT 1) TO '" + s.data + "/inside.csv'",
		"ATTACH ':memory:' AS other",
		"INSTALL httpfs",
		"LOAD httpfs",
		"SET threads = 1",
		"SELECT * FROM read_csv('/etc/passwd')",
		"SELECT * FROM glob('/etc/*')",
		"SELECT 1; SELECT 2",
		"CALL pragma_version()",
		"SELECT * FROM nosuchtable",
		"SELEC 1",
	} {
		status, raw, _ := postSQL(t, s.url, sql, "")
		var e struct{ Code, Error string }
		json.Unmarshal(raw, &e)
		if status != http.StatusBadRequest || e.Code != "invalid_argument" || e.Error == "" {
			t.Errorf("%s: status %d: %s", sql, status, raw)
		}
	}
	if n := len(lakeFiles(t, s.data)); n != 0 {
		t.Errorf("refused statements left %d files", n)
	}

	// The Connect Query refuses the same.
	_, q := newClients(s.url)
	st, err := q.Query(context.Background(), connect.NewRequest(&weirv1.QueryRequest{Sql: "DROP VIEW logs"}))
	if err == nil {
		for st.Receive() {
		}
		err = st.Err()
	}
	wantCode(t, "Connect DROP VIEW", err, connect.CodeInvalidArgument)

	waitCount(t, s.url, "SELECT count(*) FROM logs", 2)
	// CSV.
	status, raw, _ := postSQL(t, s.url, "SELECT body, severity_number FROM app ORDER BY body", "text/csv")
	if status != 200 || string(raw) != "body,severity_number\none,0\ntwo,0\n" {
		t.Errorf("CSV: %d %q", status, raw)
	}
	// Arrow IPC.
	status, raw, _ = postSQL(t, s.url, "SELECT body, length(body) AS n FROM app ORDER BY body", "application/vnd.apache.arrow.stream")
	if status != 200 {
		t.Fatalf("Arrow: %d %s", status, raw)
	}
	rd, err := ipc.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for rd.Next() {
		rec := rd.RecordBatch()
		b := rec.Column(0).(*array.String)
		n := rec.Column(1).(*array.Int64)
		for i := 0; i < int(rec.NumRows()); i++ {
			if int64(len(b.Value(i))) != n.Value(i) {
				t.Errorf("Arrow row %d: %q has length %d", i, b.Value(i), n.Value(i))
			}
			bodies = append(bodies, b.Value(i))
		}
	}
	rd.Release()
	if strings.Join(bodies, ",") != "one,two" {
		t.Errorf("Arrow bodies %v", bodies)
	}
	// Parquet, read back with the other Parquet library: DuckDB wrote it,
	// and a map stays a map.
	status, raw, _ = postSQL(t, s.url, "SELECT body, length(body) AS n, MAP {'upper': upper(body)} AS m FROM app ORDER BY body", "application/vnd.apache.parquet")
	if status != 200 {
		t.Fatalf("Parquet: %d %s", status, raw)
	}
	type pqRow struct {
		Body string            `parquet:"body,optional"`
		N    int64             `parquet:"n,optional"`
		M    map[string]string `parquet:"m,optional"`
	}
	pf, err := parquet.OpenFile(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatalf("Parquet: %v", err)
	}
	pqRows := make([]pqRow, 4)
	pr := parquet.NewGenericReader[pqRow](pf)
	n, _ := pr.Read(pqRows)
	pr.Close()
	if n != 2 || fmt.Sprint(pqRows[:n]) != "[{one 3 map[upper:ONE]} {two 3 map[upper:TWO]}]" {
		t.Errorf("Parquet rows %v", pqRows[:n])
	}

	// Row limit.
	body, _ := json.Marshal(map[string]any{"sql": "SELECT * FROM range(100)", "max_rows": 10})
	resp, err := http.Post(s.url+"/v1/sql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var res sqlResult
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if len(res.Rows) != 10 || !res.Truncated {
		t.Errorf("max_rows 10: %d rows, truncated %t", len(res.Rows), res.Truncated)
	}

	// Timeout.
	const heavy = "SELECT sum(a.range * b.range) FROM range(300000) a, range(300000) b"
	body, _ = json.Marshal(map[string]any{"sql": heavy, "timeout_ms": 200})
	resp, err = http.Post(s.url+"/v1/sql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(raw), "deadline_exceeded") {
		t.Errorf("timeout: %s %s", resp.Status, raw)
	}

	// Cancelling the request cancels the query: with one query slot, the
	// next query runs only if the cancelled one let go of it.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	body, _ = json.Marshal(map[string]any{"sql": heavy})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/sql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("heavy query finished in 300ms: %s", resp.Status)
	}
	body, _ = json.Marshal(map[string]any{"sql": "SELECT 42 AS answer", "timeout_ms": 5000})
	resp, err = http.Post(s.url+"/v1/sql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"answer":42`) {
		t.Errorf("query after a cancelled one: %s %s", resp.Status, raw)
	}
}

// TestSQLEndpointRequests covers the HTTP shapes of POST /v1/sql: curl's
// default form content type is accepted, other types and bad bodies are not.
func TestSQLEndpointRequests(t *testing.T) {
	s := startServer(t, "", nil)
	post := func(ct, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/sql", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	if st, body := post("application/json; charset=utf-8", `{"sql": "SELECT 1 AS one"}`); st != 200 || !strings.Contains(body, `"one":1`) {
		t.Errorf("JSON: %d %s", st, body)
	}
	// The content types a browser sends cross-site without a preflight
	// are refused, and so is a body that says nothing of its type.
	for _, ct := range []string{"application/x-www-form-urlencoded", "", "text/plain", "multipart/form-data; boundary=x"} {
		if st, _ := post(ct, `{"sql": "SELECT 1"}`); st != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: %d, want 415", ct, st)
		}
	}
	for _, body := range []string{`SELECT 1`, `{"sql": 1}`, `{"sql": ""}`, `{"sql": "SELECT 1", "extra": true}`} {
		if st, _ := post("application/json", body); st != http.StatusBadRequest {
			t.Errorf("body %s: %d, want 400", body, st)
		}
	}
	if st, _ := post("application/json", `{"sql": "`+strings.Repeat("x", 2<<20)+`"}`); st != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: %d, want 413", st)
	}
	resp, err := http.Get(s.url + "/v1/sql")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

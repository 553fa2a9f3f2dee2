package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// arrowBatch writes an Arrow IPC stream of schema with one record batch
// per JSON array of rows (arrow-go's JSON form: maps as lists of
// {"key", "value"}, fixed_size_binary in base64).
func arrowBatch(t *testing.T, schema *arrow.Schema, batches ...string) []byte {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var out bytes.Buffer
	w := ipc.NewWriter(&out, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	for _, rows := range batches {
		rec, _, err := array.RecordFromJSON(mem, schema, strings.NewReader(rows))
		if err != nil {
			t.Fatalf("%s: %v", rows, err)
		}
		err = w.Write(rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// allColumns is every column a client may send, each nullable.
var allColumns = arrow.NewSchema([]arrow.Field{
	{Name: "timestamp", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "observed_timestamp", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "severity_number", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "severity_text", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "body", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "attributes", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String), Nullable: true},
	{Name: "resource", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String), Nullable: true},
	{Name: "service_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "trace_id", Type: &arrow.FixedSizeBinaryType{ByteWidth: 16}, Nullable: true},
	{Name: "span_id", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "flags", Type: arrow.PrimitiveTypes.Uint32, Nullable: true},
}, nil)

// allRows are two record batches of allColumns: every field set, then
// nulls and the server's defaults.
var allRows = []string{`[
	{"timestamp": 1767225600123456, "observed_timestamp": 1767225601000000000, "severity_number": 17, "severity_text": "ERROR",
	 "body": "disk full", "attributes": [{"key": "path", "value": "/var"}, {"key": "free", "value": "0"}],
	 "resource": [{"key": "host.name", "value": "db-1"}, {"key": "service.name", "value": "overridden"}],
	 "service_name": "storage", "trace_id": "AQIDBAUGBwgJCgsMDQ4PEA==", "span_id": "a1a2a3a4a5a6a7a8", "flags": 1}
]`, `[
	{"body": "defaults", "severity_text": "warn"},
	{"body": "resource only", "resource": [{"key": "service.name", "value": "from-resource"}], "service_name": null}
]`}

// checkAllRows checks what allRows became in stream, through SQL.
func checkAllRows(t *testing.T, url, stream string) {
	t.Helper()
	waitCount(t, url, "SELECT count(*) FROM "+stream, 3)
	res := mustSQL(t, url, `SELECT body, epoch_us(timestamp) AS ts, epoch_us(observed_timestamp) AS observed,
		observed_timestamp > now() - INTERVAL 1 HOUR AS observed_now, severity_number, severity_text,
		attributes, resource, service_name, trace_id, span_id, flags FROM `+stream+` ORDER BY body`)
	want := []map[string]any{
		{"body": "defaults", "ts": nil, "observed_now": true, "severity_number": "13", "severity_text": "warn",
			"attributes": map[string]any{}, "resource": map[string]any{}, "service_name": "", "trace_id": nil, "span_id": nil, "flags": "0"},
		{"body": "disk full", "ts": "1767225600123456", "observed": "1767225601000000", "observed_now": false, "severity_number": "17", "severity_text": "ERROR",
			"attributes": map[string]any{"path": "/var", "free": "0"}, "resource": map[string]any{"host.name": "db-1", "service.name": "storage"},
			"service_name": "storage", "trace_id": "0102030405060708090a0b0c0d0e0f10", "span_id": "a1a2a3a4a5a6a7a8", "flags": "1"},
		{"body": "resource only", "ts": nil, "observed_now": true, "severity_number": "0", "severity_text": "",
			"attributes": map[string]any{}, "resource": map[string]any{"service.name": "from-resource"}, "service_name": "from-resource", "trace_id": nil, "span_id": nil, "flags": "0"},
	}
	if len(res.Rows) != len(want) {
		t.Fatalf("%s: %d rows, want %d: %v", stream, len(res.Rows), len(want), res.Rows)
	}
	for i, w := range want {
		got := res.Rows[i]
		if w["ts"] == nil {
			// A record without a timestamp takes its observed time.
			w["ts"] = fmt.Sprint(got["observed"])
		}
		for k, v := range w {
			g := got[k]
			if n, ok := g.(json.Number); ok {
				g = n.String()
			}
			if !reflect.DeepEqual(g, v) {
				t.Errorf("%s: row %q: %s = %#v, want %#v", stream, w["body"], k, g, v)
			}
		}
	}
}

// TestArrowPush pushes every column as Arrow IPC with the Connect and
// gRPC clients, unary and streaming, and reads every field back with SQL.
// What the SQL endpoint answers in Arrow, minus the _ columns, pushes
// back as it came.
func TestArrowPush(t *testing.T) {
	s := startServer(t, "", nil)
	ctx := context.Background()
	data := arrowBatch(t, allColumns, allRows...)
	hc := newHTTPClient()
	for name, client := range map[string]weirv1connect.IngestServiceClient{
		"connect": weirv1connect.NewIngestServiceClient(hc, s.url),
		"grpc":    weirv1connect.NewIngestServiceClient(hc, s.url, connect.WithGRPC()),
	} {
		resp, err := client.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "arrow_" + name, ArrowIpc: data}))
		if err != nil {
			t.Fatalf("%s Push: %v", name, err)
		}
		if resp.Msg.GetAccepted() != 3 {
			t.Errorf("%s Push: %+v", name, resp.Msg)
		}
		checkAllRows(t, s.url, "arrow_"+name)

		st := client.PushStream(ctx)
		for i, b := range []struct {
			stream string
			data   []byte
		}{{"arrow_" + name + "_stream", data}, {"Bad-Name", data}, {"arrow_" + name + "_stream", []byte("not arrow")}} {
			if err := st.Send(&weirv1.PushStreamRequest{BatchId: uint64(i), Stream: b.stream, ArrowIpc: b.data}); err != nil {
				t.Fatal(err)
			}
		}
		for i, want := range []string{"", "invalid_argument", "invalid_argument"} {
			ack, err := st.Receive()
			if err != nil || ack.GetBatchId() != uint64(i) || ack.GetErrorCode() != want {
				t.Fatalf("%s stream ack %d: %+v, %v; want error code %q", name, i, ack, err, want)
			}
		}
		if err := st.CloseRequest(); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseResponse(); err != nil {
			t.Fatal(err)
		}
		checkAllRows(t, s.url, "arrow_"+name+"_stream")
	}

	// The SQL endpoint's Arrow (maps as JSON text, timestamps in µs)
	// pushed back into another stream.
	const cols = "timestamp, observed_timestamp, severity_number, severity_text, body, attributes, resource, service_name, trace_id, span_id, flags"
	status, answer, _ := postSQL(t, s.url, "SELECT "+cols+" FROM arrow_connect", "application/vnd.apache.arrow.stream")
	if status != http.StatusOK {
		t.Fatalf("SQL in Arrow: %d: %s", status, answer)
	}
	ingest, _ := newClients(s.url)
	if _, err := ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "arrow_copy", ArrowIpc: answer})); err != nil {
		t.Fatalf("push back the SQL answer: %v", err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM arrow_copy", 3)
	q := func(stream string) string {
		return fmt.Sprint(mustSQL(t, s.url, "SELECT "+cols+" FROM "+stream+" ORDER BY body").Rows)
	}
	if got, want := q("arrow_copy"), q("arrow_connect"); got != want {
		t.Errorf("pushed back:\n%s\nwant\n%s", got, want)
	}
}

// TestArrowIdempotentRetry retries an idempotent producer's Arrow batch:
// the retry is acknowledged as a duplicate and nothing is written twice.
func TestArrowIdempotentRetry(t *testing.T) {
	s := startServer(t, "", nil)
	ingest, _ := newClients(s.url)
	data := arrowBatch(t, allColumns, allRows...)
	for i, dup := range []bool{false, true} {
		resp, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{
			Stream: "arrow_retry", ArrowIpc: data, ProducerId: "arrow-producer", Sequence: 1, AckLevel: weirv1.AckLevel_ACK_LEVEL_DURABLE,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.GetDuplicate() != dup || resp.Msg.GetAccepted() != 3 {
			t.Errorf("push %d: %+v, want duplicate %t", i, resp.Msg, dup)
		}
	}
	checkAllRows(t, s.url, "arrow_retry")
}

// TestArrowProcessors pushes the same lines as records and as Arrow to
// two streams with the same processors: both come out parsed alike, and
// a line the parser rejects is a dead letter either way.
func TestArrowProcessors(t *testing.T) {
	const procs = "    processors:\n      - parse: {format: logfmt}\n      - severity: {field: level}\n"
	cfgPath := writeConfig(t, t.TempDir(), "streams:\n  app_records:\n"+procs+"  app_arrow:\n"+procs)
	s := startServer(t, "", withConfigFile(t, cfgPath))
	ingest, _ := newClients(s.url)
	ctx := context.Background()
	lines := []string{`level=warn msg="disk almost full" free=3`, `level=error msg="disk full" free=0`, `level=info msg=ok`, `not "logfmt`}
	recs := make([]*weirv1.LogRecord, len(lines))
	rows := make([]string, len(lines))
	for i, l := range lines {
		recs[i] = textRecord(l)
		body, _ := json.Marshal(l)
		rows[i] = fmt.Sprintf(`{"body": %s, "service_name": "test"}`, body)
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "body", Type: arrow.BinaryTypes.String},
		{Name: "service_name", Type: arrow.BinaryTypes.String},
	}, nil)
	want := &weirv1.PushResponse{Accepted: 4, DeadLettered: 1, AckLevel: weirv1.AckLevel_ACK_LEVEL_DURABLE}
	for stream, req := range map[string]*weirv1.PushRequest{
		"app_records": {Stream: "app_records", Records: recs},
		"app_arrow":   {Stream: "app_arrow", ArrowIpc: arrowBatch(t, schema, "["+strings.Join(rows, ",")+"]")},
	} {
		resp, err := ingest.Push(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		if resp.Msg.GetAccepted() != want.Accepted || resp.Msg.GetDeadLettered() != want.DeadLettered {
			t.Errorf("%s: %+v, want %+v", stream, resp.Msg, want)
		}
		waitCount(t, s.url, "SELECT count(*) FROM "+stream, 3)
	}
	const q = `SELECT attributes['msg'] AS msg, attributes['free'] AS free, severity_text, severity_number, service_name FROM %s ORDER BY msg`
	got, wantRows := mustSQL(t, s.url, fmt.Sprintf(q, "app_arrow")).Rows, mustSQL(t, s.url, fmt.Sprintf(q, "app_records")).Rows
	if fmt.Sprint(got) != fmt.Sprint(wantRows) {
		t.Errorf("arrow:\n%v\nrecords:\n%v", got, wantRows)
	}
	if len(got) != 3 || got[0]["msg"] != "disk almost full" || got[0]["severity_text"] != "WARN" || got[0]["service_name"] != "test" {
		t.Errorf("parsed: %v", got)
	}
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE body = 'not \"logfmt'", 2)
}

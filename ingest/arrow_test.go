package ingest

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/transform"
)

// capture is a buffer consumer that keeps every batch.
type capture struct {
	mu       *sync.Mutex
	got      *[]*record.Batch
	columnar *[]*record.Batch // copies of the columnar batches, as they came
}

func (c capture) Consume(_ context.Context, b *record.Batch) error {
	var cb record.Batch
	if b.Cols != nil {
		cb = *b
		cb.Cols = nil
	}
	b.Materialize() // a columnar batch: the tests read records
	c.mu.Lock()
	if cb.Stream != "" {
		cb.Records = b.Records
		*c.columnar = append(*c.columnar, &cb)
	}
	*c.got = append(*c.got, b)
	c.mu.Unlock()
	return nil
}
func (capture) Tick(context.Context, time.Time) error { return nil }
func (capture) Close(context.Context) error           { return nil }

// harness is a Service behind a real buffer and pipeline (no
// processors), served over HTTP/2 on loopback, whose Arrow memory comes
// from a checked allocator.
type harness struct {
	client   weirv1connect.IngestServiceClient
	grpc     weirv1connect.IngestServiceClient
	json     weirv1connect.IngestServiceClient
	http     *http.Client // to the server, HTTP/2 over TLS
	url      string
	svc      *Service
	mem      *memory.CheckedAllocator
	buf      *buffer.Buffer
	stop     sync.Once
	mu       sync.Mutex
	got      []*record.Batch
	columnar []*record.Batch
	pipe     *transform.Pipeline
}

// testNow is the harness's receive time, the default observed timestamp.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{mem: memory.NewCheckedAllocator(memory.NewGoAllocator())}
	buf, err := buffer.New(buffer.DefaultConfig(), buffer.Deps{NewConsumer: func(buffer.Key) buffer.Consumer {
		return capture{mu: &h.mu, got: &h.got, columnar: &h.columnar}
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.buf = buf
	cfg := DefaultConfig()
	cfg.DefaultLevel = buffer.Accepted // this buffer has no write-ahead log
	if mutate != nil {
		mutate(&cfg)
	}
	pipe, err := transform.NewPipeline(transform.PipelineConfig{Limits: record.Limits{MaxFuture: 24 * time.Hour}, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	h.pipe = pipe
	h.svc, err = NewService(cfg, pipe, buf, nil, WithAllocator(h.mem))
	if err != nil {
		t.Fatal(err)
	}
	h.svc.now = func() time.Time { return testNow }
	mux := http.NewServeMux()
	mux.Handle(h.svc.Handler())
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	h.client = weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL)
	h.grpc = weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL, connect.WithGRPC())
	h.json = weirv1connect.NewIngestServiceClient(srv.Client(), srv.URL, connect.WithProtoJSON())
	h.http, h.url = srv.Client(), srv.URL
	t.Cleanup(func() {
		srv.Close()
		h.shutdown(t)
		h.mem.AssertSize(t, 0)
	})
	return h
}

func (h *harness) shutdown(t *testing.T) {
	h.stop.Do(func() {
		if err := h.buf.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// records shuts the buffer down (once) and returns what reached a
// stream, in the order it was consumed.
func (h *harness) records(t *testing.T, stream string) []record.Record {
	t.Helper()
	h.shutdown(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []record.Record
	for _, b := range h.got {
		if b.Stream == stream {
			out = append(out, b.Records...)
		}
	}
	return out
}

func (h *harness) push(stream string, ipcData []byte) (*weirv1.PushResponse, error) {
	resp, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: stream, ArrowIpc: ipcData}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func nullable(name string, t arrow.DataType) arrow.Field {
	return arrow.Field{Name: name, Type: t, Nullable: true}
}

// ipcStream writes an Arrow IPC stream of schema with one record batch
// per JSON array of rows (arrow-go's JSON form: maps as lists of
// {"key", "value"}, fixed_size_binary in base64).
func ipcStream(t testing.TB, schema *arrow.Schema, batches ...string) []byte {
	t.Helper()
	return ipcStreamWith(t, schema, nil, batches...)
}

func ipcStreamWith(t testing.TB, schema *arrow.Schema, opts []ipc.Option, batches ...string) []byte {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var out bytes.Buffer
	w := ipc.NewWriter(&out, append([]ipc.Option{ipc.WithSchema(schema), ipc.WithAllocator(mem)}, opts...)...)
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

var (
	stringMap = arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)
	traceHex  = "0102030405060708090a0b0c0d0e0f10"
	traceID   = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	spanID    = [8]byte{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8}
)

// TestArrowRoundTrip pushes every column, in both of the types each
// accepts, over two record batches with nulls, and checks the records
// that reach the buffer field by field.
func TestArrowRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	parisMs := &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "Europe/Paris"}
	schemaA := arrow.NewSchema([]arrow.Field{
		nullable("body", arrow.BinaryTypes.String), // any order
		nullable("timestamp", parisMs),
		nullable("observed_timestamp", arrow.PrimitiveTypes.Int64),
		nullable("severity_number", arrow.PrimitiveTypes.Int8),
		nullable("severity_text", arrow.BinaryTypes.LargeString),
		nullable("attributes", stringMap),
		nullable("resource", arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.LargeString)),
		nullable("service_name", arrow.BinaryTypes.String),
		nullable("trace_id", arrow.BinaryTypes.String),
		nullable("span_id", &arrow.FixedSizeBinaryType{ByteWidth: 8}),
		nullable("flags", arrow.PrimitiveTypes.Uint32),
	}, nil)
	data := ipcStream(t, schemaA, `[
		{"body": "hello", "timestamp": 1700000000123, "observed_timestamp": 1700000000500000001, "severity_number": 9,
		 "severity_text": "INFO", "attributes": [{"key": "k1", "value": "v1"}, {"key": "k2", "value": null}],
		 "resource": [{"key": "service.name", "value": "old"}, {"key": "host.name", "value": "h1"}],
		 "service_name": "checkout", "trace_id": "`+traceHex+`", "span_id": "oaKjpKWmp6g=", "flags": 1},
		{}
	]`, `[
		{"body": "ünïcode", "severity_number": 17, "attributes": [], "service_name": "solo", "trace_id": "", "flags": 0},
		{"body": "no service", "resource": [{"key": "host.name", "value": "h2"}], "service_name": ""}
	]`)
	resp, err := h.push("app", data)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAccepted() != 4 || resp.GetDeadLettered() != 0 {
		t.Fatalf("response %+v", resp)
	}
	want := []record.Record{
		{
			Body: "hello", Timestamp: 1700000000123_000_000, ObservedTimestamp: 1700000000500000001, SeverityNumber: 9, SeverityText: "INFO",
			Attributes: []record.KV{kv("k1", "v1"), kv("k2", "")},
			Resource:   []record.KV{kv("service.name", "checkout"), kv("host.name", "h1")},
			TraceID:    traceID, SpanID: spanID, Flags: 1,
		},
		{ObservedTimestamp: testNow.UnixNano()},
		{Body: "ünïcode", ObservedTimestamp: testNow.UnixNano(), SeverityNumber: 17, Resource: []record.KV{kv("service.name", "solo")}},
		{Body: "no service", ObservedTimestamp: testNow.UnixNano(), Resource: []record.KV{kv("host.name", "h2")}},
	}
	checkRecords(t, h.records(t, "app"), want)

	// The other types: timestamp in seconds without a zone, severity
	// int32, attributes as JSON text (as weir's SQL endpoint writes maps),
	// trace id as fixed_size_binary, span id as hex, no resource column.
	h2 := newHarness(t, nil)
	schemaB := arrow.NewSchema([]arrow.Field{
		nullable("timestamp", &arrow.TimestampType{Unit: arrow.Second}),
		nullable("severity_number", arrow.PrimitiveTypes.Int32),
		nullable("body", arrow.BinaryTypes.LargeString),
		nullable("attributes", arrow.BinaryTypes.String),
		nullable("service_name", arrow.BinaryTypes.LargeString),
		nullable("trace_id", &arrow.FixedSizeBinaryType{ByteWidth: 16}),
		nullable("span_id", arrow.BinaryTypes.String),
	}, nil)
	data = ipcStream(t, schemaB, `[
		{"timestamp": 1700000000, "severity_number": 13, "body": "json attributes",
		 "attributes": "{\"b\":\"two\",\"a\":1,\"c\":{\"x\":[true,null]},\"d\":null}",
		 "service_name": "api", "trace_id": "AQIDBAUGBwgJCgsMDQ4PEA==", "span_id": "A1A2A3A4A5A6A7A8"},
		{"attributes": "{}", "body": "empty"},
		{"attributes": "", "body": "blank"}
	]`)
	if _, err := h2.push("app", data); err != nil {
		t.Fatal(err)
	}
	want = []record.Record{
		{
			Timestamp: 1700000000_000_000_000, ObservedTimestamp: testNow.UnixNano(), SeverityNumber: 13, Body: "json attributes",
			Attributes: []record.KV{kv("a", "1"), kv("b", "two"), kv("c", `{"x":[true,null]}`), kv("d", "")},
			Resource:   []record.KV{kv("service.name", "api")},
			TraceID:    traceID, SpanID: spanID,
		},
		{Body: "empty", ObservedTimestamp: testNow.UnixNano()},
		{Body: "blank", ObservedTimestamp: testNow.UnixNano()},
	}
	checkRecords(t, h2.records(t, "app"), want)
}

func kv(k, v string) record.KV { return record.KV{Key: k, Value: v} }

// checkRecords compares records in the order of their bodies: the
// buffer queues records of high severity first.
func checkRecords(t *testing.T, got, want []record.Record) {
	t.Helper()
	byBody := func(a, b record.Record) int { return strings.Compare(a.Body, b.Body) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortStableFunc(got, byBody)
	slices.SortStableFunc(want, byBody)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g := got[i]
		if len(g.Attributes) == 0 {
			g.Attributes = nil
		}
		if len(g.Resource) == 0 {
			g.Resource = nil
		}
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
}

// TestArrowMatchesRecords pushes the same batch as records and as Arrow
// and checks the two arrive the same, dead letter included.
func TestArrowMatchesRecords(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	str := func(s string) *weirv1.AnyValue {
		return &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: s}}
	}
	recs := []*weirv1.LogRecord{
		{TimeUnixNano: 1700000000_000_000_001, SeverityNumber: 9, SeverityText: "INFO", Body: "one",
			Attributes: []*weirv1.KeyValue{{Key: "a", Value: str("1")}},
			Resource:   []*weirv1.KeyValue{{Key: "service.name", Value: str("svc")}},
			TraceId:    traceID[:], SpanId: spanID[:], Flags: 3},
		{Body: "two"},
		{Body: "bad severity", SeverityNumber: 99},
	}
	if _, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "proto", Records: recs})); err != nil {
		t.Fatal(err)
	}
	schema := arrow.NewSchema([]arrow.Field{
		nullable("timestamp", arrow.PrimitiveTypes.Int64),
		nullable("severity_number", arrow.PrimitiveTypes.Int32),
		nullable("severity_text", arrow.BinaryTypes.String),
		nullable("body", arrow.BinaryTypes.String),
		nullable("attributes", stringMap),
		nullable("service_name", arrow.BinaryTypes.String),
		nullable("trace_id", arrow.BinaryTypes.String),
		nullable("span_id", arrow.BinaryTypes.String),
		nullable("flags", arrow.PrimitiveTypes.Uint32),
	}, nil)
	resp, err := h.push("arrow", ipcStream(t, schema, `[
		{"timestamp": 1700000000000000001, "severity_number": 9, "severity_text": "INFO", "body": "one",
		 "attributes": [{"key": "a", "value": "1"}], "service_name": "svc",
		 "trace_id": "`+strings.ToUpper(traceHex)+`", "span_id": "`+hex.EncodeToString(spanID[:])+`", "flags": 3},
		{"body": "two"},
		{"body": "bad severity", "severity_number": 99}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAccepted() != 3 || resp.GetDeadLettered() != 1 {
		t.Errorf("arrow push: %+v, want 3 accepted, 1 dead-lettered (as records)", resp)
	}
	checkRecords(t, h.records(t, "arrow"), h.records(t, "proto"))
	var dead []string
	for _, r := range h.records(t, logschema.DeadLetterStream) {
		dead = append(dead, r.Body)
	}
	if len(dead) != 2 || dead[0] != "bad severity" || dead[1] != "bad severity" {
		t.Errorf("dead letters %q, want the bad record of each push", dead)
	}
}

// TestArrowColumnarPath checks that a batch sent as one Arrow record
// batch to a stream without processors crosses the buffer as columns,
// with the request's bytes kept for the write-ahead log, and arrives as
// the records it holds; and that a stream with processors gets records.
func TestArrowColumnarPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	schema := arrow.NewSchema([]arrow.Field{
		nullable("timestamp", arrow.FixedWidthTypes.Timestamp_ns),
		nullable("severity_number", arrow.PrimitiveTypes.Int32),
		nullable("body", arrow.BinaryTypes.String),
		nullable("resource", stringMap),
		nullable("trace_id", &arrow.FixedSizeBinaryType{ByteWidth: 16}),
	}, nil)
	data := ipcStream(t, schema, `[
		{"timestamp": 1700000000000000001, "severity_number": 9, "body": "one",
		 "resource": [{"key": "service.name", "value": "svc"}], "trace_id": "AQIDBAUGBwgJCgsMDQ4PEA=="},
		{"timestamp": 1700000000000000002, "severity_number": 9, "body": "two", "resource": []}
	]`)
	resp, err := h.push("app", data)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAccepted() != 2 || resp.GetDeadLettered() != 0 {
		t.Fatalf("response %+v", resp)
	}
	want := []record.Record{
		{Timestamp: 1700000000000000001, ObservedTimestamp: testNow.UnixNano(), SeverityNumber: 9, Body: "one",
			Resource: []record.KV{kv("service.name", "svc")}, TraceID: traceID},
		{Timestamp: 1700000000000000002, ObservedTimestamp: testNow.UnixNano(), SeverityNumber: 9, Body: "two"},
	}
	checkRecords(t, h.records(t, "app"), want)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.columnar) != 1 || !bytes.Equal(h.columnar[0].IPC, data) || h.columnar[0].IPCNow != testNow.UnixNano() {
		t.Fatalf("%d columnar batches consumed, want one carrying the request's bytes", len(h.columnar))
	}

	// A stream with processors gets records.
	hp := newHarness(t, nil)
	if err := hp.pipe.Reload(transform.Rules{"app": {Processors: []transform.Processor{{Set: map[string]string{"x": "1"}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := hp.push("app", data); err != nil {
		t.Fatal(err)
	}
	if got := hp.records(t, "app"); len(got) != 2 {
		t.Fatalf("%d records through processors, want 2", len(got))
	}
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if len(hp.columnar) != 0 {
		t.Errorf("a stream with processors got %d columnar batches", len(hp.columnar))
	}
}

// TestArrowErrors checks that every malformed columnar batch fails with
// its Connect code and a message that says what is wrong, on Push and as
// a PushStream acknowledgement.
func TestArrowErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.MaxBatchRecords = 3
		c.MaxMessageBytes = 64 << 10
	})
	body := arrow.NewSchema([]arrow.Field{nullable("body", arrow.BinaryTypes.String)}, nil)
	good := ipcStream(t, body, `[{"body": "a"}]`)
	one := func(name string, typ arrow.DataType, row string) []byte {
		return ipcStream(t, arrow.NewSchema([]arrow.Field{nullable(name, typ)}, nil), "["+row+"]")
	}
	// A second stream appended without the first's end-of-stream marker:
	// a schema message between record batches.
	schemaChange := append(slices.Clone(good[:len(good)-8]), one("flags", arrow.PrimitiveTypes.Uint32, `{"flags": 1}`)...)
	// Bodies that compress 1000 to 1: small on the wire, more than four
	// times MaxMessageBytes once decompressed.
	bomb := ipcStreamWith(t, body, []ipc.Option{ipc.WithZstd()}, `[{"body": "`+strings.Repeat("a", 300<<10)+`"}]`)
	if len(bomb) > 32<<10 {
		t.Fatalf("the compressed stream has %d bytes", len(bomb))
	}
	cases := []struct {
		name    string
		records []*weirv1.LogRecord
		data    []byte
		code    connect.Code
		want    []string
	}{
		{"both representations", []*weirv1.LogRecord{{Body: "x"}}, good, connect.CodeInvalidArgument, []string{"records and arrow_ipc are both set"}},
		{"neither", nil, nil, connect.CodeInvalidArgument, []string{"no records", "arrow_ipc"}},
		{"unknown column", nil, one("level", arrow.BinaryTypes.String, `{"level": "x"}`), connect.CodeInvalidArgument,
			[]string{`column "level" (utf8) is not accepted`, "timestamp, observed_timestamp, severity_number", "flags"}},
		{"_partition", nil, one("_partition", arrow.PrimitiveTypes.Int32, `{"_partition": 1}`), connect.CodeInvalidArgument,
			[]string{`column "_partition" (int32)`, "leave them out", "accepted columns: timestamp"}},
		{"_offset", nil, one("_offset", arrow.PrimitiveTypes.Int64, `{"_offset": 1}`), connect.CodeInvalidArgument, []string{`column "_offset" (int64)`}},
		{"wrong type", nil, one("body", arrow.PrimitiveTypes.Int32, `{"body": 1}`), connect.CodeInvalidArgument,
			[]string{`column "body" has type int32; want utf8 or large_utf8`}},
		{"wrong timestamp type", nil, one("timestamp", arrow.PrimitiveTypes.Float64, `{"timestamp": 1}`), connect.CodeInvalidArgument,
			[]string{`column "timestamp" has type float64; want timestamp`}},
		{"wrong trace_id width", nil, one("trace_id", &arrow.FixedSizeBinaryType{ByteWidth: 8}, `{"trace_id": "AAAAAAAAAAA="}`), connect.CodeInvalidArgument,
			[]string{`column "trace_id" has type fixed_size_binary[8]`, "fixed_size_binary[16]"}},
		{"duplicate column", nil, ipcStream(t, arrow.NewSchema([]arrow.Field{nullable("body", arrow.BinaryTypes.String), nullable("body", arrow.BinaryTypes.String)}, nil), `[]`),
			connect.CodeInvalidArgument, []string{`column "body" appears twice`}},
		{"too many rows", nil, ipcStream(t, body, `[{"body": "a"}, {"body": "b"}]`, `[{"body": "c"}, {"body": "d"}]`), connect.CodeInvalidArgument,
			[]string{"at least 4 rows; the limit is 3"}},
		{"no rows", nil, ipcStream(t, body), connect.CodeInvalidArgument, []string{"arrow_ipc has no rows"}},
		{"empty record batches", nil, ipcStream(t, body, `[]`, `[]`), connect.CodeInvalidArgument, []string{"arrow_ipc has no rows"}},
		{"truncated", nil, good[:len(good)-20], connect.CodeInvalidArgument, []string{"not a valid Arrow IPC stream"}},
		{"garbage", nil, []byte("this is not arrow at all"), connect.CodeInvalidArgument, []string{"not a valid Arrow IPC stream"}},
		{"schema change", nil, schemaChange, connect.CodeInvalidArgument, []string{"a second schema message"}},
		{"two streams", nil, append(slices.Clone(good), good...), connect.CodeInvalidArgument, []string{"bytes after the end-of-stream marker"}},
		{"trace_id not hex", nil, one("trace_id", arrow.BinaryTypes.String, `{"trace_id": "`+strings.Repeat("g", 32)+`"}`), connect.CodeInvalidArgument,
			[]string{"row 0: trace_id", "want 32 hex digits"}},
		{"timestamp past 2262", nil, one("timestamp", &arrow.TimestampType{Unit: arrow.Second}, `{"timestamp": 10000000000}`), connect.CodeInvalidArgument,
			[]string{"row 0: timestamp", "timestamp out of range"}},
		{"severity beyond int32", nil, one("severity_number", arrow.PrimitiveTypes.Int64, `{"severity_number": 4294967296}`), connect.CodeInvalidArgument,
			[]string{"row 0: severity_number", "severity number out of range"}},
		{"attributes not a JSON object", nil, one("attributes", arrow.BinaryTypes.String, `{"attributes": "[1, 2]"}`), connect.CodeInvalidArgument,
			[]string{"row 0: attributes: not a JSON object"}},
		{"every record invalid", nil, one("severity_number", arrow.PrimitiveTypes.Int32, `{"severity_number": 99}`), connect.CodeInvalidArgument,
			[]string{"severity number out of range"}},
		{"decompresses too large", nil, bomb, connect.CodeResourceExhausted, []string{"too large", "262144 bytes"}},
	}
	st := h.grpc.PushStream(context.Background())
	// Every error path releases the Arrow memory it took.
	for _, c := range cases {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		decodeArrow(context.Background(), c.data, 3, mem, 256<<10)
		if n := mem.CurrentAlloc(); n != 0 {
			t.Errorf("%s: %d bytes of Arrow memory not released", c.name, n)
		}
	}
	for i, c := range cases {
		_, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: c.records, ArrowIpc: c.data}))
		if connect.CodeOf(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
		// A stream acknowledges the batch with the same error and goes on.
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: uint64(i), Stream: "app", Records: c.records, ArrowIpc: c.data}); err != nil {
			t.Fatal(err)
		}
		ack, err := st.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if ack.GetBatchId() != uint64(i) || ack.GetCode() != weirv1.ErrorCode(c.code) || ack.GetErrorCode() != c.code.String() || ack.GetAccepted() != 0 {
			t.Errorf("%s: stream ack %+v", c.name, ack)
		}
	}
	if err := st.Send(&weirv1.PushStreamRequest{BatchId: 100, Stream: "app", ArrowIpc: good}); err != nil {
		t.Fatal(err)
	}
	if ack, err := st.Receive(); err != nil || ack.GetErrorCode() != "" || ack.GetAccepted() != 1 {
		t.Fatalf("good batch after the bad ones: %+v, %v", ack, err)
	}
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	st.CloseResponse()
	if got := h.records(t, "app"); len(got) != 1 || got[0].Body != "a" {
		t.Errorf("records written: %+v, want the one good batch", got)
	}
}

// TestArrowIdempotentProducer retries an Arrow batch of an idempotent
// producer: the retry is acknowledged as a duplicate and not written.
func TestArrowIdempotentProducer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	body := arrow.NewSchema([]arrow.Field{nullable("body", arrow.BinaryTypes.String)}, nil)
	data := ipcStream(t, body, `[{"body": "once"}, {"body": "only"}]`)
	for i, dup := range []bool{false, true} {
		resp, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", ArrowIpc: data, ProducerId: "p1", Sequence: 1}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.GetDuplicate() != dup || resp.Msg.GetAccepted() != 2 {
			t.Errorf("push %d: %+v, want duplicate %t", i, resp.Msg, dup)
		}
	}
	if got := h.records(t, "app"); len(got) != 2 {
		t.Errorf("%d records written, want 2", len(got))
	}
}

// FuzzArrowBatch feeds the Arrow decoders arbitrary bytes: they never
// panic, the row decoder returns between one and the limit of records or
// an error, the columnar reader takes only streams the row decoder reads
// without rejects, and both release all the Arrow memory they took.
func FuzzArrowBatch(f *testing.F) {
	all := arrow.NewSchema([]arrow.Field{
		nullable("timestamp", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}),
		nullable("observed_timestamp", arrow.PrimitiveTypes.Int64),
		nullable("severity_number", arrow.PrimitiveTypes.Int32),
		nullable("severity_text", arrow.BinaryTypes.String),
		nullable("body", arrow.BinaryTypes.LargeString),
		nullable("attributes", stringMap),
		nullable("resource", stringMap),
		nullable("service_name", arrow.BinaryTypes.String),
		nullable("trace_id", arrow.BinaryTypes.String),
		nullable("span_id", &arrow.FixedSizeBinaryType{ByteWidth: 8}),
		nullable("flags", arrow.PrimitiveTypes.Uint32),
	}, nil)
	rows := `[{"timestamp": 1, "observed_timestamp": 2, "severity_number": 9, "severity_text": "INFO", "body": "b",
		"attributes": [{"key": "k", "value": "v"}], "resource": [{"key": "service.name", "value": "s"}], "service_name": "t",
		"trace_id": "` + traceHex + `", "span_id": "oaKjpKWmp6g=", "flags": 1}, {}]`
	f.Add(ipcStream(f, all, rows, rows))
	f.Add(ipcStreamWith(f, all, []ipc.Option{ipc.WithLZ4()}, rows))
	f.Add(ipcStream(f, arrow.NewSchema([]arrow.Field{nullable("attributes", arrow.BinaryTypes.String)}, nil), `[{"attributes": "{\"a\":1}"}]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		recs, rejects, err := decodeArrow(context.Background(), data, 100, mem, 1<<20)
		if err == nil && (len(recs) == 0 || len(recs) > 100) {
			t.Errorf("%d records without an error", len(recs))
		}
		if rejects != nil && len(rejects) != len(recs) {
			t.Errorf("%d rejects for %d records", len(rejects), len(recs))
		}
		mem.AssertSize(t, 0)
		// The columnar reader of the same bytes: what it takes it
		// takes whole, row for row as the row path reads it.
		cols, cerr := record.ReadColumns(data, 7, 100, mem, 1<<20)
		if cerr != nil {
			mem.AssertSize(t, 0)
			return
		}
		rows := record.Rows(cols)
		_ = record.ValidateColumns(cols, time.Now(), record.Limits{})
		cols.Release()
		mem.AssertSize(t, 0)
		if err != nil || len(rows) != len(recs) || rejects != nil {
			t.Fatalf("columns of %d rows where the row path read %d records, %d rejects, err %v", len(rows), len(recs), len(rejects), err)
		}
	})
}

// TestArrowDeepSchema sends a schema whose column nests a thousand list
// types deep: it is refused before arrow-go follows the nesting (by
// recursion), and the server goes on.
func TestArrowDeepSchema(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	typ := arrow.DataType(arrow.BinaryTypes.String)
	for range 1000 {
		typ = arrow.ListOf(typ)
	}
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(arrow.NewSchema([]arrow.Field{nullable("attributes", typ)}, nil)))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := h.push("app", buf.Bytes())
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "nested more than 32 deep") {
		t.Errorf("push: %v, want invalid_argument, nested more than 32 deep", err)
	}
	h.checkAlive(t, "a deep schema")
}

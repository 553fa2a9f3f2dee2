package ingest

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// deadOf returns the dead-letter attribute k of r.
func deadOf(r *record.Record, k string) string {
	for _, kv := range r.Attributes {
		if kv.Key == k {
			return kv.Value
		}
	}
	return ""
}

// checkDeadLetters checks what a push with bad records left: the valid
// records (by body) in stream "app", in order, and one dead letter per
// bad record, in order, whose error says each of its wants.
func checkDeadLetters(t *testing.T, h *harness, kept []string, dead map[string][]string, order []string) {
	t.Helper()
	var got []string
	for _, r := range h.records(t, "app") {
		got = append(got, r.Body)
	}
	if strings.Join(got, "|") != strings.Join(kept, "|") {
		t.Errorf("stored %q, want %q", got, kept)
	}
	letters := h.records(t, logschema.DeadLetterStream)
	if len(letters) != len(order) {
		t.Fatalf("%d dead letters, want %d: %+v", len(letters), len(order), letters)
	}
	for i, body := range order {
		d := &letters[i]
		if d.Body != body {
			t.Errorf("dead letter %d is %q, want %q", i, d.Body, body)
			continue
		}
		if deadOf(d, logschema.AttrDeadStream) != "app" || deadOf(d, logschema.AttrDeadStage) != "validate" {
			t.Errorf("%s: dead letter attributes %+v", body, d.Attributes)
		}
		for _, w := range dead[body] {
			if e := deadOf(d, logschema.AttrDeadError); !strings.Contains(e, w) {
				t.Errorf("%s: error %q does not say %q", body, e, w)
			}
		}
	}
}

// TestBadRecordsDeadLettered pushes a batch in which some records hold
// values a record cannot (times past 2262, ids of the wrong length): the
// valid records are stored and acknowledged, the others go to the
// dead-letter stream with the reason and the value, on Push and on
// PushStream.
func TestBadRecordsDeadLettered(t *testing.T) {
	t.Parallel()
	recs := []*weirv1.LogRecord{
		{Body: "ok 1", Attributes: []*weirv1.KeyValue{{Key: "k", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "v"}}}}},
		{Body: "far future", TimeUnixNano: math.MaxUint64},
		{Body: "short trace", TraceId: []byte{0x0a, 0x0b, 0x0c}, SeverityText: "WARN"},
		{Body: "long span", SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{Body: "ok 2", TraceId: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{Body: "two faults", TimeUnixNano: 1 << 63, TraceId: []byte{0xff}},
		{Body: "observed far", ObservedTimeUnixNano: math.MaxInt64 + 1},
	}
	kept := []string{"ok 1", "ok 2"}
	order := []string{"far future", "short trace", "long span", "two faults", "observed far"}
	dead := map[string][]string{
		"far future":   {"record 1: ", "timestamp out of range: time_unix_nano 18446744073709551615 is past the year 2262"},
		"short trace":  {"record 2: trace_id 0a0b0c has 3 bytes; want 0 or 16"},
		"long span":    {"record 3: span_id 010203040506070809 has 9 bytes; want 0 or 8"},
		"two faults":   {"time_unix_nano 9223372036854775808 is past the year 2262; trace_id ff has 1 bytes"},
		"observed far": {"observed_time_unix_nano 9223372036854775808"},
	}
	t.Run("Push", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil)
		resp, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.GetAccepted() != 7 || resp.Msg.GetDeadLettered() != 5 {
			t.Errorf("response %+v, want 7 accepted, 5 dead-lettered", resp.Msg)
		}
		checkDeadLetters(t, h, kept, dead, order)
	})
	t.Run("PushStream", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil)
		st := h.grpc.PushStream(context.Background())
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: 1, Stream: "app", Records: recs}); err != nil {
			t.Fatal(err)
		}
		ack, err := st.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if ack.GetErrorCode() != "" || ack.GetAccepted() != 7 || ack.GetDeadLettered() != 5 {
			t.Errorf("ack %+v, want 7 accepted, 5 dead-lettered", ack)
		}
		if err := st.CloseRequest(); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseResponse(); err != nil {
			t.Fatal(err)
		}
		checkDeadLetters(t, h, kept, dead, order)
	})
	t.Run("all bad", func(t *testing.T) {
		t.Parallel()
		// Every record bad, no processors: nothing to keep, so the request
		// is refused whole, as for records failing validation.
		h := newHarness(t, nil)
		_, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs[1:2]}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "past the year 2262") {
			t.Errorf("all bad: %v, want invalid_argument", err)
		}
	})
}

// TestArrowBadRowsDeadLettered is TestBadRecordsDeadLettered for a batch
// sent as arrow_ipc.
func TestArrowBadRowsDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	schema := arrow.NewSchema([]arrow.Field{
		nullable("body", arrow.BinaryTypes.String),
		nullable("timestamp", &arrow.TimestampType{Unit: arrow.Second}),
		nullable("trace_id", arrow.BinaryTypes.String),
		nullable("span_id", arrow.BinaryTypes.String),
		nullable("severity_number", arrow.PrimitiveTypes.Int64),
		nullable("attributes", arrow.BinaryTypes.String),
	}, nil)
	data := ipcStream(t, schema, `[
		{"body": "ok 1", "attributes": "{\"k\": \"v\"}"},
		{"body": "far future", "timestamp": 10000000000},
		{"body": "bad trace", "trace_id": "xyz"}
	]`, `[
		{"body": "bad span", "span_id": "`+traceHex+`"},
		{"body": "severity", "severity_number": 4294967296},
		{"body": "attributes", "attributes": "[1, 2]"},
		{"body": "ok 2", "trace_id": "`+traceHex+`", "timestamp": 1772366400}
	]`)
	resp, err := h.push("app", data)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAccepted() != 7 || resp.GetDeadLettered() != 5 {
		t.Errorf("response %+v, want 7 accepted, 5 dead-lettered", resp)
	}
	checkDeadLetters(t, h, []string{"ok 1", "ok 2"}, map[string][]string{
		"far future": {"row 1: timestamp", "10000000000 is outside the years 1678 to 2262"},
		"bad trace":  {`row 2: trace_id "xyz": want 32 hex digits`},
		"bad span":   {`row 3: span_id "` + traceHex + `": want 16 hex digits`},
		"severity":   {"row 4: severity_number", "4294967296"},
		"attributes": {`row 5: attributes: not a JSON object of attributes: "[1, 2]"`},
	}, []string{"far future", "bad trace", "bad span", "severity", "attributes"})
}

// TestReservedStreams pushes to streams named like SQL catalog objects:
// each is refused whole with INVALID_ARGUMENT.
func TestReservedStreams(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, name := range []string{"information_schema", "pg_catalog", "duckdb_views", "duckdb_tables", "main", "temp", "system", "memory", "sqlite_master", "pragma_version", "logs", "LOGS", "_dead_letter"} {
		_, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: name, Records: []*weirv1.LogRecord{{Body: "x"}}}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "invalid stream name") {
			t.Errorf("stream %q: %v, want invalid_argument", name, err)
		}
	}
	h.checkAlive(t, "reserved names")
}

// TestArrowNullMapKey converts a map of attributes with a null key,
// which the IPC format can carry though arrow-go will not make an array
// of it: the row is rejected with its other attributes kept, the next
// row is not.
func TestArrowNullMapKey(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	kb, vb := array.NewStringBuilder(mem), array.NewStringBuilder(mem)
	defer kb.Release()
	defer vb.Release()
	kb.AppendValues([]string{"", "k", "k"}, []bool{false, true, true})
	vb.AppendValues([]string{"lost key", "v1", "v2"}, nil)
	keys, vals := kb.NewArray(), vb.NewArray()
	defer keys.Release()
	defer vals.Release()
	entries := array.NewData(stringMap.Elem(), 3, []*memory.Buffer{nil}, []arrow.ArrayData{keys.Data(), vals.Data()}, 0, 0)
	defer entries.Release()
	offsets := memory.NewBufferBytes(arrow.Int32Traits.CastToBytes([]int32{0, 2, 3}))
	attrs := array.NewData(stringMap, 2, []*memory.Buffer{nil, offsets}, []arrow.ArrayData{entries}, 0, 0)
	defer attrs.Release()
	dst := make([]record.Record, 2)
	var rej rowErrors
	if err := convertMap(colAttributes, attrs, dst, 0, 0, &rej); err != nil {
		t.Fatal(err)
	}
	errs := rej.all(len(dst))
	if len(errs) != 2 || errs[0] == nil || errs[1] != nil || errs[0].Error() != "arrow_ipc: row 0: attributes: entry 0 has a null key" {
		t.Fatalf("rejects %v", errs)
	}
	want := [][]record.KV{{{Key: "", Value: "lost key"}, {Key: "k", Value: "v1"}}, {{Key: "k", Value: "v2"}}}
	for i := range dst {
		if !slices.Equal(dst[i].Attributes, want[i]) {
			t.Errorf("row %d: %+v, want %+v", i, dst[i].Attributes, want[i])
		}
	}
}

package record

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ipcOf encodes rec as an Arrow IPC stream.
func ipcOf(tb testing.TB, rec arrow.RecordBatch) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// withService returns recs as Rows returns them: the resource's
// service.name is what service_name holds.
func rowsWant(recs []Record) []Record {
	out := normalized(&Batch{Records: recs}).Records
	if out == nil {
		out = []Record{}
	}
	return out
}

func TestColumnsRoundTrip(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs := append(realisticBatch(t, 300).Records, fullRecord(), Record{Body: "bare"}, Record{Resource: []KV{{"host.name", "h"}}})
	cols := Columns(recs, mem)
	b := NewColumnarBatch("acme", "web", cols)
	b.Partition, b.Offset, b.ProducerID, b.Sequence = 3, 1000, "p1", 9
	if got := Rows(b.Cols); !reflect.DeepEqual(got, rowsWant(recs)) {
		t.Fatalf("Rows differ from the records built")
	}
	for _, raw := range []bool{false, true} {
		if raw {
			b.IPC = ipcOf(t, b.Cols)
		}
		enc := AppendBatch(nil, b)
		if enc[0] != columnarVersion {
			t.Fatalf("version byte %d", enc[0])
		}
		got, err := DecodeBatch(enc)
		if err != nil {
			t.Fatalf("DecodeBatch: %v", err)
		}
		if got.Tenant != "acme" || got.Stream != "web" || got.Partition != 3 || got.Offset != 1000 || got.ProducerID != "p1" || got.Sequence != 9 {
			t.Fatalf("header: %+v", got)
		}
		if got.Len() != len(recs) || got.Bytes != b.Bytes {
			t.Fatalf("Len %d Bytes %d, want %d and %d", got.Len(), got.Bytes, len(recs), b.Bytes)
		}
		if rows := Rows(got.Cols); !reflect.DeepEqual(rows, rowsWant(recs)) {
			t.Fatal("decoded rows differ")
		}
		got.Release()
	}
	// A slice encodes its own rows only.
	sl := NewColumnarBatch("acme", "web", b.Cols.NewSlice(10, 20))
	got, err := DecodeBatch(AppendBatch(nil, sl))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(Rows(got.Cols), rowsWant(recs[10:20])) {
		t.Fatal("decoded slice differs")
	}
	if sl.Bytes >= b.Bytes/10 {
		t.Fatalf("a slice of 10 of %d rows accounts %d of %d bytes", len(recs), sl.Bytes, b.Bytes)
	}
	got.Release()
	sl.Release()
	// Take, in any order.
	idx := []int{5, 0, 301, 301, 2}
	tk := Take(b.Cols, idx, mem)
	var want []Record
	for _, i := range idx {
		want = append(want, recs[i])
	}
	if !reflect.DeepEqual(Rows(tk), rowsWant(want)) {
		t.Fatal("Take differs")
	}
	tk.Release()
	// Materialize.
	b.Materialize()
	if b.Cols != nil || !reflect.DeepEqual(b.Records, rowsWant(recs)) || b.Bytes != normalized(&Batch{Records: recs}).Bytes {
		t.Fatal("Materialize")
	}
}

// TestReadColumnsClientSchema reads a stream in the other accepted types
// and with columns left out, as docs/ingest-arrow.md allows, and checks
// the rows are what the row path makes of them.
func TestReadColumnsClientSchema(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "body", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "timestamp", Type: &arrow.TimestampType{Unit: arrow.Millisecond}, Nullable: true},
		{Name: "severity_number", Type: arrow.PrimitiveTypes.Int8},
		{Name: "resource", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
		{Name: "service_name", Type: arrow.BinaryTypes.String},
		{Name: "trace_id", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	rb := array.NewRecordBuilder(mem, sc)
	defer rb.Release()
	body := rb.Field(0).(*array.StringBuilder)
	body.AppendValues([]string{"a", "", "c"}, []bool{true, false, true})
	ts := rb.Field(1).(*array.TimestampBuilder)
	ts.AppendValues([]arrow.Timestamp{1500, 0, 2500}, []bool{true, false, true})
	rb.Field(2).(*array.Int8Builder).AppendValues([]int8{9, 17, 0}, nil)
	res := rb.Field(3).(*array.MapBuilder)
	for _, kvs := range [][]KV{{{"service.name", "old"}, {"host.name", "h"}}, nil, {{"host.name", "h"}}} {
		res.Append(true)
		for _, kv := range kvs {
			res.KeyBuilder().(*array.StringBuilder).Append(kv.Key)
			res.ItemBuilder().(*array.StringBuilder).Append(kv.Value)
		}
	}
	rb.Field(4).(*array.StringBuilder).AppendValues([]string{"api", "", "db"}, nil)
	rb.Field(5).(*array.StringBuilder).AppendValues([]string{"0102030405060708090a0b0c0d0e0f10", "", ""}, []bool{true, true, false})
	rec := rb.NewRecordBatch()
	defer rec.Release()
	data := ipcOf(t, rec)
	cols, err := ReadColumns(data, 77, 10, mem, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer cols.Release()
	want := []Record{
		{Timestamp: 1_500_000_000, ObservedTimestamp: 77, SeverityNumber: 9, Body: "a",
			Resource: []KV{{"service.name", "api"}, {"host.name", "h"}}, TraceID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{ObservedTimestamp: 77, SeverityNumber: 17},
		{Timestamp: 2_500_000_000, ObservedTimestamp: 77, Body: "c", Resource: []KV{{"host.name", "h"}, {"service.name", "db"}}},
	}
	if got := Rows(cols); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n got %+v\nwant %+v", got, want)
	}
	if got := cols.Column(ColServiceName).(*array.String); got.Value(0) != "api" || got.Value(1) != "" || got.Value(2) != "db" {
		t.Fatalf("service_name %v", got)
	}
	if IsPriority(cols, 0) || !IsPriority(cols, 1) {
		t.Fatal("IsPriority")
	}
	// What the row path rejects row by row is not columnar.
	for _, bad := range []string{"zz", "0102"} {
		rb.Field(0).(*array.StringBuilder).Append("x")
		rb.Field(1).(*array.TimestampBuilder).Append(1)
		rb.Field(2).(*array.Int8Builder).Append(1)
		rb.Field(3).(*array.MapBuilder).Append(true)
		rb.Field(4).(*array.StringBuilder).Append("s")
		rb.Field(5).(*array.StringBuilder).Append(bad)
		r := rb.NewRecordBatch()
		_, err := ReadColumns(ipcOf(t, r), 0, 10, mem, 1<<20)
		r.Release()
		if !errors.Is(err, ErrNotColumnar) {
			t.Fatalf("trace id %q: err %v, want ErrNotColumnar", bad, err)
		}
	}
	// A row limit.
	if _, err := ReadColumns(data, 0, 2, mem, 1<<20); !errors.Is(err, ErrNotColumnar) {
		t.Fatalf("3 rows over a limit of 2: %v", err)
	}
}

func TestValidateColumns(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	lim := Limits{MaxFuture: time.Hour, MaxPast: 24 * time.Hour}
	ok := Record{Timestamp: now.UnixNano(), Body: "fine", Attributes: []KV{{"k", "v"}}}
	for _, tc := range []struct {
		name string
		bad  Record
		want error
	}{
		{"future", Record{Timestamp: now.Add(2 * time.Hour).UnixNano()}, ErrInvalidTimestamp},
		{"past", Record{Timestamp: now.Add(-25 * time.Hour).UnixNano(), ObservedTimestamp: now.UnixNano()}, ErrInvalidTimestamp},
		{"observed past, no timestamp", Record{ObservedTimestamp: now.Add(-25 * time.Hour).UnixNano()}, ErrInvalidTimestamp},
		{"severity", Record{SeverityNumber: 30}, ErrInvalidSeverity},
		{"body", Record{Body: "a\xffb"}, ErrInvalidUTF8},
		{"attribute", Record{Attributes: []KV{{"k", "\xc3"}}}, ErrInvalidUTF8},
		{"resource key", Record{Resource: []KV{{"\x80", "v"}}}, ErrInvalidUTF8},
	} {
		cols := Columns([]Record{ok, ok, tc.bad, ok}, memory.DefaultAllocator)
		err := ValidateColumns(cols, now, lim)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "record 2") {
			t.Errorf("%s: %v, want record 2: %v", tc.name, err, tc.want)
		}
		cols.Release()
	}
	// A character split across two values is two invalid values.
	cols := Columns([]Record{{Body: "é"[:1]}, {Body: "é"[1:]}}, memory.DefaultAllocator)
	if err := ValidateColumns(cols, now, lim); !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), "record 0") {
		t.Errorf("split character: %v", err)
	}
	cols.Release()
	// An old observed time under a timestamp inside the window, and a
	// record with neither (it gets the time it reaches the sink), are
	// valid; both ways of validating agree.
	inside := []Record{ok, {Timestamp: now.Add(-23 * time.Hour).UnixNano(), ObservedTimestamp: now.Add(-48 * time.Hour).UnixNano()}, {}}
	cols = Columns(inside, memory.DefaultAllocator)
	if err := ValidateColumns(cols, now, lim); err != nil {
		t.Errorf("valid rows: %v", err)
	}
	cols.Release()
	for i := range inside {
		if err := inside[i].Validate(i, now, lim); err != nil {
			t.Errorf("valid record: %v", err)
		}
	}
	if err := (&Record{Timestamp: now.Add(-25 * time.Hour).UnixNano()}).Validate(0, now, lim); !errors.Is(err, ErrInvalidTimestamp) || !strings.Contains(err.Error(), "in the past") {
		t.Errorf("old record: %v", err)
	}
	if err := (&Record{Timestamp: 1}).Validate(0, now, Limits{MaxFuture: time.Hour}); err != nil {
		t.Errorf("without MaxPast, 1970: %v", err)
	}
	cols = Columns([]Record{ok, ok}, memory.DefaultAllocator)
	if err := ValidateColumns(cols, now, lim); err != nil {
		t.Errorf("valid rows: %v", err)
	}
	if !AttributesWithin(cols, 1, 1, 1) || AttributesWithin(cols, 0, 1, 1) {
		t.Error("AttributesWithin")
	}
	cols.Release()
}

// columnarSeeds returns encodings of columnar batches for the fuzzer.
func columnarSeeds(tb testing.TB) [][]byte {
	recs := realisticBatch(tb, 20).Records
	cols := Columns(recs, memory.DefaultAllocator)
	defer cols.Release()
	b := NewColumnarBatch("t", "s", cols)
	out := [][]byte{AppendBatch(nil, b)}
	b.Cols = cols.NewSlice(3, 5)
	out = append(out, AppendBatch(nil, b))
	b.Cols.Release()
	return out
}

// checkDecodedColumnar checks what the fuzzer decoded into a columnar
// batch: the rows convert, and encoding them again decodes to the same.
func checkDecodedColumnar(t *testing.T, b *Batch) {
	t.Helper()
	defer b.Release()
	if b.Bytes != ColumnsSize(b.Cols) {
		t.Fatalf("Bytes = %d, columns add up to %d", b.Bytes, ColumnsSize(b.Cols))
	}
	rows := Rows(b.Cols)
	_ = ValidateColumns(b.Cols, time.Now(), Limits{})
	b.IPC = nil
	b2, err := DecodeBatch(AppendBatch(nil, b))
	if err != nil {
		t.Fatalf("re-encoding of a decoded batch does not decode: %v", err)
	}
	defer b2.Release()
	if !reflect.DeepEqual(rows, Rows(b2.Cols)) {
		t.Fatal("re-encoding changed the rows")
	}
}

package arrowbatch

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// lakeRows returns what w was given as one row of text per record, with
// its partition, so that two writers can be compared.
func lakeRows(t *testing.T, w *memWriter) []string {
	t.Helper()
	var out []string
	for i, rec := range w.recs {
		if !rec.Schema().Equal(schema) {
			t.Fatalf("batch %d has schema %s", i, rec.Schema())
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			row := fmt.Sprintf("%s/%d/%s:", w.parts[i].Stream, w.parts[i].Part, w.parts[i].Hour.Format(time.RFC3339))
			for c := 0; c < int(rec.NumCols()); c++ {
				row += " " + rec.Column(c).ValueStr(r)
			}
			out = append(out, row)
		}
	}
	return out
}

// TestConsumeColumnsAsRows checks that a columnar batch becomes the same
// lake rows as the same records consumed as rows: normalised timestamps
// and severities, hex ids, _partition and _offset, split by hour (in runs
// and out of order), and that small batches share one Write and Arrow
// memory is released.
func TestConsumeColumnsAsRows(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	h0 := time.Date(2026, 3, 1, 10, 5, 0, 0, time.UTC).UnixNano()
	h1 := h0 + int64(time.Hour)
	mk := func() [][]record.Record {
		return [][]record.Record{
			{ // one hour: handed through whole
				{Timestamp: h0, ObservedTimestamp: h0 + 1, SeverityNumber: 9, SeverityText: "INFO", Body: "a",
					Resource: []record.KV{{Key: "service.name", Value: "api"}}, TraceID: [16]byte{1, 2}, SpanID: [8]byte{3}},
				{Timestamp: h0 + 2, ObservedTimestamp: h0 + 3, SeverityText: "warn", Body: "b", Attributes: []record.KV{{Key: "k", Value: "v"}}},
			},
			{ // two hours in runs, a zero timestamp and observed time (now's hour)
				{Timestamp: h0 + 5, ObservedTimestamp: h0 + 5, SeverityNumber: 17, Body: "c"},
				{Timestamp: h1, ObservedTimestamp: h1, Body: "d", Flags: 1},
				{Body: "e"},
			},
			{ // two hours interleaved: selections
				{Timestamp: h1 + 1, ObservedTimestamp: h1, Body: "f"},
				{Timestamp: h0 + 9, ObservedTimestamp: h1, Body: "g"},
				{Timestamp: h1 + 2, ObservedTimestamp: h1, Body: "h", TraceID: [16]byte{15: 9}},
			},
			{ // either side of 1970: hours before it are floored, not rounded to 0
				{Timestamp: int64(10 * time.Minute), ObservedTimestamp: h1, Body: "i"},
				{Timestamp: -int64(30 * time.Minute), ObservedTimestamp: h1, Body: "j"},
				{Timestamp: -int64(90 * time.Minute), ObservedTimestamp: h1, Body: "k"},
			},
		}
	}
	consume := func(columnar bool) *memWriter {
		w := &memWriter{}
		bt := newTestBatcher(t, DefaultConfig(), w, mem)
		bt.now = func() time.Time { return now }
		off := int64(100)
		for _, recs := range mk() {
			var b *record.Batch
			if columnar {
				b = record.NewColumnarBatch(record.DefaultTenant, "app", record.Columns(recs, mem))
			} else {
				b = record.NewBatch(record.DefaultTenant, "app", recs)
			}
			b.Partition, b.Offset = 2, off
			off += int64(len(recs))
			if err := bt.Consume(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		if err := bt.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		return w
	}
	rows, cols := consume(false), consume(true)
	defer rows.release()
	defer cols.release()
	want, got := lakeRows(t, rows), lakeRows(t, cols)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("columnar batches became\n%q\nrows became\n%q", got, want)
	}
	if len(cols.recs) != len(rows.recs) {
		t.Errorf("%d batches written from columns, %d from rows", len(cols.recs), len(rows.recs))
	}
}

// TestConsumeColumnsHandsThrough checks that a batch of one hour larger
// than MaxRows is written as it came, with no copy of its columns.
func TestConsumeColumnsHandsThrough(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cfg := DefaultConfig()
	cfg.MaxRows = 4
	w := &memWriter{}
	defer w.release()
	bt := newTestBatcher(t, cfg, w, mem)
	ts := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano()
	var recs []record.Record
	for i := range 10 {
		recs = append(recs, record.Record{Timestamp: ts + int64(i), ObservedTimestamp: ts, SeverityNumber: 9, SeverityText: "INFO", Body: fmt.Sprint(i)})
	}
	cols := record.Columns(recs, mem)
	body := cols.Column(record.ColBody).(*array.String)
	b := record.NewColumnarBatch(record.DefaultTenant, "app", cols)
	b.Partition = 2
	if err := bt.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 1 || w.recs[0].NumRows() != 10 {
		t.Fatalf("wrote %d batches, want the one batch of 10 rows", len(w.recs))
	}
	if got := w.recs[0].Column(idxBody).(*array.String); got.Data().Buffers()[2] != body.Data().Buffers()[2] {
		t.Error("the body column was copied")
	}
}

// partsWriter keeps the parts of each Write as they were given.
type partsWriter struct{ writes [][]arrow.RecordBatch }

func (w *partsWriter) Write(_ context.Context, _ sink.Partition, recs ...arrow.RecordBatch) error {
	for _, r := range recs {
		r.Retain()
	}
	w.writes = append(w.writes, append([]arrow.RecordBatch(nil), recs...))
	return nil
}

// TestColumnarPartsHandedThrough checks that the columnar batches of one
// hour reach the Writer as the parts of one Write, in arrival order, and
// that their text columns are the pushed arrays' own memory: the stream's
// goroutine copies no rows to build the batch.
func TestColumnarPartsHandedThrough(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	ts := time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC).UnixNano()
	w := &partsWriter{}
	bt := newTestBatcher(t, DefaultConfig(), w, mem)
	bt.now = func() time.Time { return now }
	var bodies []*array.String
	for i, n := range []int{3, 5, 2} {
		recs := make([]record.Record, n)
		for j := range recs {
			recs[j] = record.Record{Timestamp: ts + int64(j), ObservedTimestamp: ts, SeverityNumber: 9, Body: fmt.Sprintf("%d-%d", i, j)}
		}
		b := record.NewColumnarBatch(record.DefaultTenant, "app", record.Columns(recs, mem))
		b.Offset = int64(10 * i)
		bodies = append(bodies, b.Cols.Column(record.ColBody).(*array.String))
		if err := bt.Consume(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := bt.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 1 || len(w.writes[0]) != 3 {
		t.Fatalf("writes of %v parts, want one Write of 3 parts", partCounts(w.writes))
	}
	for i, part := range w.writes[0] {
		got := part.Column(idxBody).(*array.String)
		if got.Len() != bodies[i].Len() || got.ValueStr(0) != fmt.Sprintf("%d-0", i) {
			t.Errorf("part %d: bodies %v, want the rows of push %d", i, got, i)
		}
		if &got.ValueBytes()[0] != &bodies[i].ValueBytes()[0] {
			t.Errorf("part %d: the body column was copied", i)
		}
		if off := part.Column(idxOffset).(*array.Int64).Value(0); off != int64(10*i) {
			t.Errorf("part %d: first _offset %d, want %d", i, off, 10*i)
		}
	}
	for _, parts := range w.writes {
		releaseAll(parts)
	}
}

func partCounts(writes [][]arrow.RecordBatch) []int {
	n := make([]int, len(writes))
	for i, w := range writes {
		n[i] = len(w)
	}
	return n
}

package arrowbatch

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
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
// and out of order), and that small batches are concatenated and Arrow
// memory released.
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

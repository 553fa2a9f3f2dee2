package arrowbatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/arrowmem"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// memWriter keeps what it is given, retained, and can be told to fail.
type memWriter struct {
	mu    sync.Mutex
	fail  error
	parts []sink.Partition
	recs  []arrow.RecordBatch
}

// Write keeps the parts of one Write as one batch, concatenated, as the
// segment the lake would encode from them.
func (w *memWriter) Write(_ context.Context, p sink.Partition, recs ...arrow.RecordBatch) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return w.fail
	}
	w.parts = append(w.parts, p)
	w.recs = append(w.recs, concatParts(recs))
	return nil
}

// concatParts returns the rows of recs as one batch.
func concatParts(recs []arrow.RecordBatch) arrow.RecordBatch {
	if len(recs) == 1 {
		recs[0].Retain()
		return recs[0]
	}
	sc := recs[0].Schema()
	cols := make([]arrow.Array, sc.NumFields())
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	for c := range cols {
		arrs := make([]arrow.Array, len(recs))
		for i, r := range recs {
			arrs[i] = r.Column(c)
		}
		a, err := array.Concatenate(arrs, memory.DefaultAllocator)
		if err != nil {
			panic(err)
		}
		defer a.Release()
		cols[c] = a
	}
	return array.NewRecordBatch(sc, cols, rows)
}

func (w *memWriter) release() {
	for _, r := range w.recs {
		r.Release()
	}
	w.recs = nil
}

func (w *memWriter) rows() int64 {
	var n int64
	for _, r := range w.recs {
		n += r.NumRows()
	}
	return n
}

func newTestBatcher(t *testing.T, cfg Config, w Writer, mem memory.Allocator) *Batcher {
	t.Helper()
	b, err := NewBatcher(cfg, record.DefaultTenant, "app", 2, w, mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func batchOf(offset int64, recs ...record.Record) *record.Batch {
	b := record.NewBatch(record.DefaultTenant, "app", recs)
	b.Partition = 2
	b.Offset = offset
	return b
}

func TestBatcherBuildsSchema(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	w := &memWriter{}
	defer w.release()
	bt := newTestBatcher(t, DefaultConfig(), w, mem)
	ts := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC).UnixNano()
	recs := []record.Record{
		{Timestamp: ts, ObservedTimestamp: ts + 1, SeverityText: "warning", Body: "disk low",
			Attributes: []record.KV{{Key: "disk", Value: "sda"}}, Resource: []record.KV{{Key: "service.name", Value: "api"}},
			TraceID: [16]byte{0xab, 15: 1}, SpanID: [8]byte{1}, Flags: 1},
		{ObservedTimestamp: ts, SeverityNumber: record.SeverityError + 1, Body: "boom"},
	}
	if err := bt.Consume(context.Background(), batchOf(40, recs...)); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 0 {
		t.Fatal("flushed before MaxRows or MaxAge")
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 1 {
		t.Fatalf("%d batches written, want 1", len(w.recs))
	}
	rec := w.recs[0]
	if !rec.Schema().Equal(logschema.Arrow()) {
		t.Fatalf("schema %s", rec.Schema())
	}
	wantHour := time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)
	if p := w.parts[0]; p.Tenant != "default" || p.Stream != "app" || p.Part != 2 || !p.Hour.Equal(wantHour) {
		t.Errorf("partition %+v", p)
	}
	col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
	if got := col(logschema.Timestamp).(*array.Timestamp).Value(1); int64(got) != ts {
		t.Errorf("missing timestamp became %d, want the observed time %d", got, ts)
	}
	sevNum, sevText := col(logschema.SeverityNumber).(*array.Int32), col(logschema.SeverityText).(*array.String)
	if sevNum.Value(0) != record.SeverityWarn || sevText.Value(0) != "warning" {
		t.Errorf("row 0 severity %d %q", sevNum.Value(0), sevText.Value(0))
	}
	if sevNum.Value(1) != record.SeverityError+1 || sevText.Value(1) != "ERROR2" {
		t.Errorf("row 1 severity %d %q", sevNum.Value(1), sevText.Value(1))
	}
	trace, span := col(logschema.TraceID).(*array.String), col(logschema.SpanID).(*array.String)
	if trace.Value(0) != "ab000000000000000000000000000001" || span.Value(0) != "0100000000000000" || !trace.IsNull(1) || !span.IsNull(1) {
		t.Errorf("ids %q %q null %t %t", trace.Value(0), span.Value(0), trace.IsNull(1), span.IsNull(1))
	}
	if svc := col(logschema.ServiceName).(*array.String); svc.Value(0) != "api" || svc.Value(1) != "" {
		t.Errorf("service %q %q", svc.Value(0), svc.Value(1))
	}
	attrs := col(logschema.Attributes).(*array.Map)
	if s, e := attrs.ValueOffsets(0); e-s != 1 || attrs.Keys().(*array.String).Value(int(s)) != "disk" || attrs.Items().(*array.String).Value(int(s)) != "sda" {
		t.Errorf("attributes of row 0: %v", attrs)
	}
	if off := col(logschema.Offset).(*array.Int64); off.Value(0) != 40 || off.Value(1) != 41 {
		t.Errorf("offsets %d %d", off.Value(0), off.Value(1))
	}
	if part := col(logschema.Partition).(*array.Int32); part.Value(0) != 2 {
		t.Errorf("partition column %d", part.Value(0))
	}
}

func TestBatcherFlushRules(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	w := &memWriter{}
	defer w.release()
	cfg := DefaultConfig()
	cfg.MaxRows = 10
	cfg.MaxAge = time.Second
	bt := newTestBatcher(t, cfg, w, mem)
	now := time.Unix(1_700_000_000, 0)
	bt.now = func() time.Time { return now }
	hour := now.Truncate(time.Hour).UnixNano()
	mk := func(n int, ts int64) []record.Record {
		out := make([]record.Record, n)
		for i := range out {
			out[i] = record.Record{Timestamp: ts, ObservedTimestamp: ts, Body: fmt.Sprint(i)}
		}
		return out
	}
	// 25 rows in one hour: two full batches by rows, five left open.
	if err := bt.Consume(context.Background(), batchOf(0, mk(25, hour)...)); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 2 || w.rows() != 20 {
		t.Fatalf("after 25 rows: %d batches, %d rows", len(w.recs), w.rows())
	}
	if off, ok := bt.OldestUnwritten(); !ok || off != 20 {
		t.Errorf("OldestUnwritten with 5 rows open: %d %t, want 20", off, ok)
	}
	// Rows of another hour go to a batch of their own.
	if err := bt.Consume(context.Background(), batchOf(25, mk(3, hour-int64(time.Hour))...)); err != nil {
		t.Fatal(err)
	}
	// Not yet old enough.
	if err := bt.Tick(context.Background(), now.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 2 {
		t.Fatalf("flushed before MaxAge: %d batches", len(w.recs))
	}
	if err := bt.Tick(context.Background(), now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 4 || w.rows() != 28 {
		t.Fatalf("after MaxAge: %d batches, %d rows", len(w.recs), w.rows())
	}
	if !w.parts[3].Hour.Equal(time.Unix(0, hour-int64(time.Hour)).UTC()) {
		t.Errorf("second hour partition %v", w.parts[3].Hour)
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBatcherRetriesFailedWrites(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	w := &memWriter{fail: errors.New("disk on fire")}
	defer w.release()
	cfg := DefaultConfig()
	cfg.MaxRows = 5
	cfg.MaxPending = 2
	bt := newTestBatcher(t, cfg, w, mem)
	recs := make([]record.Record, 5)
	if err := bt.Consume(context.Background(), batchOf(0, recs...)); err != nil {
		t.Fatalf("first failure should be kept for retry: %v", err)
	}
	if off, ok := bt.OldestUnwritten(); !ok || off != 0 {
		t.Errorf("OldestUnwritten with a pending batch: %d %t", off, ok)
	}
	// The pending set is full: Consume blocks, retrying, until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := bt.Consume(ctx, batchOf(5, recs...)); err == nil {
		t.Fatal("Consume with a full pending set and a failing writer succeeded")
	}
	// The writer recovers: a Tick writes everything, in order.
	w.mu.Lock()
	w.fail = nil
	w.mu.Unlock()
	if err := bt.Tick(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.rows() != 10 {
		t.Fatalf("%d rows written after recovery, want 10", w.rows())
	}
	if _, ok := bt.OldestUnwritten(); ok {
		t.Error("OldestUnwritten after everything was written")
	}
	var last int64 = -1
	for _, r := range w.recs {
		off := r.Column(idxOffset).(*array.Int64)
		for i := 0; i < off.Len(); i++ {
			if off.Value(i) != last+1 {
				t.Fatalf("offset %d after %d: out of order", off.Value(i), last)
			}
			last = off.Value(i)
		}
	}
}

func TestBatcherCloseReportsLoss(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	w := &memWriter{fail: errors.New("gone")}
	bt := newTestBatcher(t, DefaultConfig(), w, mem)
	if err := bt.Consume(context.Background(), batchOf(0, make([]record.Record, 3)...)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := bt.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 records not written") {
		t.Fatalf("Close with a failing writer: %v", err)
	}
}

// dayWriter is a memWriter that, like sink.Lake, puts the rows of hours
// before cut into day files.
type dayWriter struct {
	memWriter
	cut time.Time
}

func (w *dayWriter) FilePartition(p sink.Partition, _ time.Time) sink.Partition {
	if p.Hour.Before(w.cut) {
		y, m, d := p.Hour.Date()
		p.Hour, p.Day = time.Date(y, m, d, 0, 0, 0, 0, time.UTC), true
	}
	return p
}

// TestBatcherDayFiles: with a Writer that is a FilePartitioner, the rows
// of several hours of a day file share one batch, in their order, while
// the rows of other hours keep a batch per hour.
func TestBatcherDayFiles(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	day := time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)
	w := &dayWriter{cut: day.Add(24 * time.Hour)}
	defer w.release()
	bt := newTestBatcher(t, DefaultConfig(), w, mem)
	var recs []record.Record
	for i, h := range []int{7, 3, 23, 7, 24 + 1, 24 + 2} { // 24+: the next day, not a day file
		ts := day.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second).UnixNano()
		recs = append(recs, record.Record{Timestamp: ts, ObservedTimestamp: ts, Body: fmt.Sprint(i)})
	}
	if err := bt.Consume(context.Background(), batchOf(0, recs...)); err != nil {
		t.Fatal(err)
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 3 {
		t.Fatalf("%d batches written (%+v), want the day file's and one for each hour of the next day", len(w.recs), w.parts)
	}
	for i, want := range []sink.Partition{
		{Tenant: "default", Stream: "app", Part: 2, Hour: day, Day: true},
		{Tenant: "default", Stream: "app", Part: 2, Hour: day.Add(25 * time.Hour)},
		{Tenant: "default", Stream: "app", Part: 2, Hour: day.Add(26 * time.Hour)},
	} {
		if got := w.parts[i]; got != want {
			t.Errorf("batch %d: partition %+v, want %+v", i, got, want)
		}
	}
	offs := w.recs[0].Column(w.recs[0].Schema().FieldIndices(logschema.Offset)[0]).(*array.Int64)
	if got := fmt.Sprint(offs.Int64Values()); got != "[0 1 2 3]" {
		t.Errorf("the day file's batch holds offsets %s, want [0 1 2 3]", got)
	}
}

// countingAllocator counts the reallocations that grow a buffer (builders
// also shrink theirs to fit when they finish).
type countingAllocator struct {
	memory.Allocator
	reallocs int
}

func (a *countingAllocator) Reallocate(size int, b []byte) []byte {
	if size > len(b) {
		a.reallocs++
	}
	return a.Allocator.Reallocate(size, b)
}

// TestBatcherReservesForSteadyStreams: a batch of a stream flowing into
// one file reserves the size of the batch before it, so that building an
// equal batch grows no buffer, and holds exactly the rows it was given;
// batches of a backfill (several open at once) reserve nothing.
func TestBatcherReservesForSteadyStreams(t *testing.T) {
	checked := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer checked.AssertSize(t, 0)
	mem := &countingAllocator{Allocator: checked}
	w := &memWriter{}
	defer w.release()
	cfg := DefaultConfig()
	cfg.MaxRows = 500
	cfg.MaxAge = time.Hour
	bt := newTestBatcher(t, cfg, w, mem)
	hour := time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)
	recsAt := func(from int, hours int) []record.Record {
		recs := make([]record.Record, cfg.MaxRows)
		for i := range recs {
			n := from + i
			recs[i] = record.Record{
				Timestamp:    hour.Add(time.Duration(n%hours) * time.Hour).UnixNano(),
				SeverityText: "INFO", Body: fmt.Sprintf("line %06d of the steady stream", n),
				Attributes: []record.KV{{Key: "thread", Value: fmt.Sprint(n % 16)}},
				Resource:   []record.KV{{Key: "service.name", Value: "api"}},
				TraceID:    [16]byte{byte(n), 1},
			}
		}
		return recs
	}
	growth := func(from, hours int) int {
		t.Helper()
		before := mem.reallocs
		if err := bt.Consume(context.Background(), batchOf(int64(from), recsAt(from, hours)...)); err != nil {
			t.Fatal(err)
		}
		return mem.reallocs - before
	}
	first := growth(0, 1)
	if first == 0 {
		t.Fatal("the first batch grew no buffer: the allocator counts nothing")
	}
	// The first batch was full and alone: the next ones reserve its size.
	for b := 1; b <= 3; b++ {
		if n := growth(b*cfg.MaxRows, 1); n != 0 {
			t.Errorf("batch %d of a steady stream grew buffers %d times, want none (the first grew %d)", b, n, first)
		}
	}
	// Rows of three hours at once: the first of the three batches open
	// reserves (the stream was steady until now), the other two do not.
	if n := growth(4*cfg.MaxRows, 3); n == 0 {
		t.Error("a backfill's batches grew no buffer: they reserved")
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every row is there once, as given.
	seen := map[string]bool{}
	for _, rec := range w.recs {
		body := rec.Column(rec.Schema().FieldIndices(logschema.Body)[0]).(*array.String)
		for i := range body.Len() {
			seen[body.Value(i)] = true
		}
	}
	if total := 5 * cfg.MaxRows; len(seen) != total || w.rows() != int64(total) {
		t.Errorf("%d rows written, %d distinct bodies, want %d of each", w.rows(), len(seen), total)
	}
}

// releasingWriter checks that each batch's bodies continue the sequence
// "line N of the stream" and releases the batch at once, so the next
// batches are built into the buffers it freed.
type releasingWriter struct {
	next    int
	batches int
	err     error
}

func (w *releasingWriter) Write(_ context.Context, _ sink.Partition, recs ...arrow.RecordBatch) error {
	for _, rec := range recs {
		body := rec.Column(rec.Schema().FieldIndices(logschema.Body)[0]).(*array.String)
		for i := range body.Len() {
			if want := fmt.Sprintf("line %06d of the stream", w.next); body.Value(i) != want && w.err == nil {
				w.err = fmt.Errorf("batch %d row %d: body %q, want %q", w.batches, i, body.Value(i), want)
			}
			w.next++
		}
		rec.Release()
	}
	w.batches++
	return nil
}

// TestBatcherRecycledBuffers builds batches into an arrowmem.Pool whose
// buffers the writer frees as soon as each batch is written, as the
// lake does once a segment is encoded: every row must read back as it
// was appended, in buffers another batch used before.
func TestBatcherRecycledBuffers(t *testing.T) {
	pool := arrowmem.NewPool(4<<10, 8<<20)
	checked := memory.NewCheckedAllocator(pool)
	defer checked.AssertSize(t, 0)
	w := &releasingWriter{}
	cfg := DefaultConfig()
	cfg.MaxRows = 1000
	bt := newTestBatcher(t, cfg, w, checked)
	hour := time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)
	for n := 0; n < 20*cfg.MaxRows; n += 250 {
		recs := make([]record.Record, 250)
		for i := range recs {
			recs[i] = record.Record{
				Timestamp: hour.Add(time.Duration(n+i) * time.Millisecond).UnixNano(),
				Body:      fmt.Sprintf("line %06d of the stream", n+i),
				// Lengths vary, so some batches outgrow their reserve.
				Attributes: []record.KV{{Key: "k", Value: strings.Repeat("v", (n+i)%50)}},
			}
		}
		if err := bt.Consume(context.Background(), batchOf(int64(n), recs...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
	if w.next != 20*cfg.MaxRows {
		t.Fatalf("%d rows written, want %d", w.next, 20*cfg.MaxRows)
	}
	if reused, _, _ := pool.Stats(); reused == 0 {
		t.Fatalf("no buffer reused over %d batches", w.batches)
	}
}

// TestBatcherInterleavedHours: records of three hours interleaved within
// pushes, with batches filling (MaxRows) and pushed out by a new hour
// (MaxOpen) between records of one hour, each land in a batch of their
// own hour, in offset order, none lost or doubled; timestamps at the
// ends of the int64 range go to batches of their hour too.
func TestBatcherInterleavedHours(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	w := &memWriter{}
	defer w.release()
	cfg := DefaultConfig()
	cfg.MaxRows = 4
	cfg.MaxOpen = 2
	bt := newTestBatcher(t, cfg, w, mem)
	now := time.Unix(1_700_000_000, 0)
	bt.now = func() time.Time { return now }
	h0 := now.Truncate(time.Hour).UnixNano()
	hours := []int64{h0, h0 + int64(time.Hour), h0 - int64(time.Hour)}
	// Runs of 1 to 5 records of one hour, then another hour: every kind
	// of switch, within the batch's hour and across its end.
	var recs []record.Record
	var hourOfOffset []int64
	for i := 0; len(recs) < 200; i++ {
		h := hours[i%3]
		for j := range i%5 + 1 {
			ts := h + int64(j)*int64(time.Minute) + int64(len(recs))
			switch {
			case j == 0 && i%2 == 0:
				ts = h // the hour's first nanosecond: the previous run's hour's end
			case j == 0:
				ts = h + int64(time.Hour) - 1 // the hour's last nanosecond
			}
			recs = append(recs, record.Record{Timestamp: ts, ObservedTimestamp: ts, Body: fmt.Sprint(len(recs))})
			hourOfOffset = append(hourOfOffset, h)
		}
	}
	recs = append(recs, record.Record{Timestamp: math.MinInt64 + 1, Body: "min"}, record.Record{Timestamp: math.MaxInt64, Body: "max"})
	hourOfOffset = append(hourOfOffset, time.Unix(0, math.MinInt64+1).UTC().Truncate(time.Hour).UnixNano(), time.Unix(0, math.MaxInt64).UTC().Truncate(time.Hour).UnixNano())
	for off := 0; off < len(recs); off += 37 { // pushes of 37 records
		end := min(off+37, len(recs))
		if err := bt.Consume(context.Background(), batchOf(int64(off), recs[off:end]...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, len(recs))
	for i, rec := range w.recs {
		offs := rec.Column(rec.Schema().FieldIndices(logschema.Offset)[0]).(*array.Int64)
		last := int64(-1)
		for r := range offs.Len() {
			off := offs.Value(r)
			if seen[off] {
				t.Fatalf("offset %d written twice", off)
			}
			seen[off] = true
			if got := w.parts[i].Hour.UnixNano(); got != hourOfOffset[off] && !w.parts[i].Day {
				t.Errorf("offset %d (hour %d) in the batch of hour %d", off, hourOfOffset[off], got)
			}
			if off <= last {
				t.Errorf("batch %d: offset %d after %d", i, off, last)
			}
			last = off
		}
	}
	for off, ok := range seen {
		if !ok {
			t.Errorf("offset %d lost", off)
		}
	}
}

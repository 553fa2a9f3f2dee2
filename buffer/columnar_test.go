package buffer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
)

// columnarOf returns recs as a columnar batch of stream s whose IPC is
// the Arrow IPC stream of its columns, as ingest makes them.
func columnarOf(t *testing.T, mem memory.Allocator, s string, recs []record.Record) *record.Batch {
	t.Helper()
	cols := record.Columns(recs, mem)
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(cols.Schema()))
	if err := w.Write(cols); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := record.NewColumnarBatch("acme", s, cols)
	b.IPC = buf.Bytes()
	return b
}

// placed is a record with where the buffer put it.
type placed struct {
	part   int32
	offset int64
}

// consumedRows returns the body of every consumed record by partition and
// offset, and how many consumed batches were columnar. It releases the
// columnar batches.
func consumedRows(t *testing.T, cs map[int32]*holdingConsumer) (map[placed]string, int) {
	t.Helper()
	out := map[placed]string{}
	columnar := 0
	for part, c := range cs {
		c.mu.Lock()
		for _, b := range c.got {
			if b.Partition != part {
				t.Errorf("batch of partition %d consumed by partition %d", b.Partition, part)
			}
			if b.Cols != nil {
				columnar++
				if b.Bytes != record.ColumnsSize(b.Cols) {
					t.Errorf("columnar batch accounts %d bytes, its columns %d", b.Bytes, record.ColumnsSize(b.Cols))
				}
			}
			b.Materialize()
			for i, r := range b.Records {
				k := placed{part, b.Offset + int64(i)}
				if _, dup := out[k]; dup {
					t.Errorf("offset %d of partition %d consumed twice", k.offset, part)
				}
				out[k] = r.Body
			}
		}
		c.mu.Unlock()
	}
	return out, columnar
}

// TestColumnarPushAndRecovery pushes columnar batches (one going whole to
// one lane, one spread over both partitions and both lanes) between
// batches of records, and replays the log: the records come back at the
// offsets they were first given, columnar batches as columnar batches, and
// the log holds the whole batch's IPC stream as it came.
func TestColumnarPushAndRecovery(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cfg := walConfig(t)
	cfg.Partitions = 2
	svcs := servicesOnDistinctPartitions(t, 2, 2)
	run := func() (map[int32]*holdingConsumer, *Buffer) {
		cs := map[int32]*holdingConsumer{0: {oldest: -1}, 1: {oldest: -1}}
		b := mustNew(t, cfg, Deps{NewConsumer: func(k Key) Consumer { return cs[k.Partition] }})
		return cs, b
	}
	cs, b := run()
	whole := recsOf(svcs[0], 0, 50)
	wholeBatch := columnarOf(t, mem, "s", whole)
	wholeIPC := bytes.Clone(wholeBatch.IPC)
	if err := b.Push(context.Background(), wholeBatch, Durable); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(context.Background(), batchOf("s", recsOf(svcs[1], 100, 10)...), Durable); err != nil {
		t.Fatal(err)
	}
	var mixed []record.Record
	for i := range 40 {
		r := rec(svcs[i%2], 200+i)
		if i%3 == 0 {
			r.SeverityNumber = record.SeverityError
		}
		mixed = append(mixed, r)
	}
	if err := b.Push(context.Background(), columnarOf(t, mem, "s", mixed), Durable); err != nil {
		t.Fatal(err)
	}
	mustShutdown(t, b)
	first, columnar := consumedRows(t, cs)
	if len(first) != 100 {
		t.Fatalf("consumed %d records, want 100", len(first))
	}
	// The whole batch and the mixed one's four lanes.
	if columnar != 5 {
		t.Errorf("%d columnar batches consumed, want 5", columnar)
	}
	// The log of the whole batch's partition holds its bytes as they came.
	part := partitionOf(svcs[0], 2)
	segs, err := filepath.Glob(filepath.Join(walDir(cfg.WALDir, Key{Tenant: "acme", Stream: "s", Partition: part}), "*"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("log segments: %v %v", segs, err)
	}
	found := false
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err == nil && bytes.Contains(data, wholeIPC) {
			found = true
		}
	}
	if !found {
		t.Error("the log does not hold the pushed Arrow IPC stream as it came")
	}

	cs2, b2 := run()
	mustShutdown(t, b2)
	replayed, columnar := consumedRows(t, cs2)
	if !reflect.DeepEqual(first, replayed) {
		t.Errorf("replay differs from the first run:\n first %v\nreplay %v", first, replayed)
	}
	if columnar != 3 { // one per partition and columnar push: the whole batch and the mixed one's two parts
		t.Errorf("%d columnar batches replayed, want 3", columnar)
	}
	want := map[string]bool{}
	for _, r := range append(append(whole, mixed...), recsOf(svcs[1], 100, 10)...) {
		want[r.Body] = true
	}
	for k, body := range first {
		if !want[body] {
			t.Errorf("%v: unexpected record %q", k, body)
		}
		delete(want, body)
	}
	if len(want) != 0 {
		t.Errorf("records not consumed: %v", fmt.Sprint(want))
	}
}

// TestColumnarPriorityLanes checks that a columnar batch's priority rows
// are delivered ahead of its normal ones, like a batch of records'.
func TestColumnarPriorityLanes(t *testing.T) {
	h := newHarness()
	h.gate(0)
	cfg := testConfig()
	b := mustNew(t, cfg, h.deps())
	recs := recsOf("svc", 0, 6)
	recs[2].SeverityNumber = record.SeverityFatal
	recs[4].SeverityText = "ERROR"
	bt := columnarOf(t, memory.DefaultAllocator, "s", recs)
	if err := b.Push(context.Background(), bt, Accepted); err != nil {
		t.Fatal(err)
	}
	h.open(0)
	mustShutdown(t, b)
	h.check(t)
	got := h.batches(Key{Tenant: "acme", Stream: "s", Partition: 0})
	if len(got) != 2 {
		t.Fatalf("%d batches, want a normal and a priority one", len(got))
	}
	var order []string
	var cols []arrow.RecordBatch
	for _, g := range got {
		if g.Cols == nil {
			t.Fatal("a lane's batch is not columnar")
		}
		cols = append(cols, g.Cols)
		for _, r := range record.Rows(g.Cols) {
			order = append(order, r.Body)
		}
	}
	// Offsets follow lane order in the log: normal rows first.
	if got[0].Offset != 4 || got[1].Offset != 0 {
		t.Errorf("offsets %d and %d, want the priority batch at 4 and the normal at 0", got[0].Offset, got[1].Offset)
	}
	if want := []string{recs[2].Body, recs[4].Body, recs[0].Body, recs[1].Body, recs[3].Body, recs[5].Body}; !reflect.DeepEqual(order, want) {
		t.Errorf("delivered %v, want %v", order, want)
	}
	for _, c := range cols {
		c.Release()
	}
}

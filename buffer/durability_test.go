package buffer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

// holdingConsumer keeps everything it consumes unpublished until publish
// is called: a stand-in for the transform and sink stages.
type holdingConsumer struct {
	mu        sync.Mutex
	got       []*record.Batch
	published int64 // every offset below is published
	oldest    int64 // lowest consumed offset not yet published, -1 if none
}

func (c *holdingConsumer) Consume(_ context.Context, b *record.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, b)
	if c.oldest < 0 || b.Offset < c.oldest {
		c.oldest = max(b.Offset, c.published)
	}
	return nil
}
func (c *holdingConsumer) Tick(context.Context, time.Time) error { return nil }
func (c *holdingConsumer) Close(context.Context) error           { return nil }

func (c *holdingConsumer) Oldest() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.oldest, c.oldest >= 0
}

// publish marks every consumed offset below end as published.
func (c *holdingConsumer) publish(end int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.published = end
	c.oldest = -1
	for _, b := range c.got {
		if e := b.Offset + int64(len(b.Records)); e > end && (c.oldest < 0 || max(b.Offset, end) < c.oldest) {
			c.oldest = max(b.Offset, end)
		}
	}
}

func (c *holdingConsumer) offsets() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int64
	for _, b := range c.got {
		for i := range b.Records {
			out = append(out, b.Offset+int64(i))
		}
	}
	return out
}

func walConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.WALDir = t.TempDir()
	cfg.TickInterval = 10 * time.Millisecond
	return cfg
}

// TestDurableRecovery pushes DURABLE batches, stops without publishing
// them, and starts a new buffer on the same log: it must replay exactly
// the records no published file holds, with their offsets, and continue
// the offsets after them.
func TestDurableRecovery(t *testing.T) {
	cfg := walConfig(t)
	first := &holdingConsumer{oldest: -1}
	b, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return first }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := b.Push(context.Background(), batchOf("s", recsOf("svc", 10*i, 10)...), Durable); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(first.offsets()); got != 100 {
		t.Fatalf("first run consumed %d records", got)
	}

	// Say offsets 20..49 reached published files.
	second := &holdingConsumer{oldest: -1}
	var asked atomic.Int64
	b2, err := New(cfg, Deps{
		NewConsumer: func(Key) Consumer { return second },
		FirstOffset: func(Key) int64 { return 50 },
		Published: func(_ context.Context, k Key, from int64) (func(int64) bool, error) {
			asked.Add(1)
			return func(o int64) bool { return o >= 20 && o < 50 }, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 1 {
		t.Errorf("Published asked %d times, want once", asked.Load())
	}
	if err := b2.Push(context.Background(), batchOf("s", recsOf("svc", 100, 5)...), Durable); err != nil {
		t.Fatal(err)
	}
	if err := b2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []int64
	for o := int64(0); o < 105; o++ {
		if o < 20 || o >= 50 {
			want = append(want, o)
		}
	}
	got := second.offsets()
	if len(got) != len(want) {
		t.Fatalf("second run consumed offsets %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("second run consumed offsets %v, want %v", got, want)
		}
	}
	// The replayed records are the ones logged: bodies match offsets.
	for _, bt := range second.got {
		for i, r := range bt.Records {
			if o := bt.Offset + int64(i); o < 100 && r.Body != first.got[o/10].Records[o%10].Body {
				t.Fatalf("offset %d replayed as %q", o, r.Body)
			}
		}
	}
}

// TestCommittedAndLogTrimming checks that COMMITTED pushes return once the
// consumer publishes, and that log segments below the commit watermark
// are deleted.
func TestCommittedAndLogTrimming(t *testing.T) {
	cfg := walConfig(t)
	cfg.WAL.SegmentBytes = 1024
	c := &holdingConsumer{oldest: -1}
	b, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return c }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	for i := 0; i < 50; i++ {
		if err := b.Push(context.Background(), batchOf("s", recsOf("svc", 10*i, 10)...), Durable); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := b.stream("acme", "s")
	p := s.parts[0]
	segs := len(p.wal.Segments())
	if segs < 3 {
		t.Fatalf("%d segments; want several for the test", segs)
	}
	done := make(chan error, 1)
	go func() { done <- b.Push(context.Background(), batchOf("s", recsOf("svc", 500, 10)...), Committed) }()
	select {
	case err := <-done:
		t.Fatalf("COMMITTED push returned %v before anything was published", err)
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Push(ctx, batchOf("s", recsOf("svc", 510, 1)...), Committed); !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("COMMITTED push past its deadline: %v, want ErrUnconfirmed", err)
	}
	c.publish(510)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("COMMITTED push did not return after its records were published")
	}
	waitUntil(t, "log segments below the watermark are deleted", func() bool { return len(p.wal.Segments()) == 1 })
}

func TestDurableNeedsWAL(t *testing.T) {
	b, err := New(DefaultConfig(), newHarness().deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	if err := b.Push(context.Background(), batchOf("s", rec("x", 0)), Durable); !errors.Is(err, ErrNoWAL) {
		t.Fatalf("Durable without a log: %v", err)
	}
}

// TestPriority fills the buffer with normal records while the consumer is
// stalled: a batch of ERROR records is still admitted into the reserved
// share, a normal batch is not, and the consumer gets the ERROR records
// before the normal ones queued earlier.
func TestPriority(t *testing.T) {
	h := newHarness()
	h.gate(0)
	cfg := DefaultConfig()
	cfg.MaxRecords = 100
	cfg.PriorityShare = 0.2
	b, err := New(cfg, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	normal := func(n int) *record.Batch {
		rs := recsOf("svc", 0, n)
		for i := range rs {
			rs[i].SeverityText = "INFO"
		}
		return batchOf("s", rs...)
	}
	errs := func(n int) *record.Batch {
		rs := recsOf("svc", 0, n)
		for i := range rs {
			rs[i].SeverityNumber = record.SeverityError
		}
		return batchOf("s", rs...)
	}
	ctx := context.Background()
	// The consumer takes the first batch and stalls; 80 more fill the
	// normal share.
	for i := 0; i < 9; i++ {
		if err := b.Push(ctx, normal(10), Accepted); err != nil {
			t.Fatalf("normal batch %d: %v", i, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Push(short, normal(10), Accepted); !errors.Is(err, ErrFull) {
		t.Fatalf("normal batch past the normal share: %v, want ErrFull", err)
	}
	if err := b.Push(ctx, errs(10), Accepted); err != nil {
		t.Fatalf("priority batch into the reserved share: %v", err)
	}
	h.open(0)
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	got := h.got[Key{Tenant: "acme", Stream: "s"}]
	if len(got) != 10 {
		t.Fatalf("%d batches consumed, want 10", len(got))
	}
	// got[0] was taken before the stall; the priority batch comes next.
	if got[1].Records[0].SeverityNumber != record.SeverityError {
		t.Errorf("second batch consumed is not the priority one: %+v", got[1].Records[0])
	}
	if got[1].Offset != 90 {
		t.Errorf("priority batch offset %d, want 90 (offsets follow push order)", got[1].Offset)
	}
}

// TestMixedBatchRecovery checks that batches of normal and priority
// records are logged as one record each and replayed in offset order, with
// the offsets they were given, also when the backlog is larger than the
// buffer (so that replay waits for the consumer), and that records pushed
// after the restart come after every replayed one, priority or not.
func TestMixedBatchRecovery(t *testing.T) {
	cfg := walConfig(t)
	first := &holdingConsumer{oldest: -1}
	b, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return first }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const batches, size = 6, 10
	for k := 0; k < batches; k++ {
		rs := recsOf("svc", k*size, size)
		for i := range rs {
			if i%3 == 0 {
				rs[i].SeverityText = "ERROR"
			}
		}
		if err := b.Push(context.Background(), batchOf("s", rs...), Durable); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(first.offsets()); n != batches*size {
		t.Fatalf("first run consumed %d records", n)
	}
	byOffset := map[int64]string{}
	for _, bt := range first.got {
		for i, r := range bt.Records {
			byOffset[bt.Offset+int64(i)] = r.Body
		}
	}

	cfg.MaxRecords = 8 // the backlog of 60 records needs the consumer to drain
	second := &holdingConsumer{oldest: -1}
	b2, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return second }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := recsOf("late", 0, 1)
	after[0].SeverityText = "FATAL"
	if err := b2.Push(context.Background(), batchOf("s", after...), Accepted); err != nil {
		t.Fatal(err)
	}
	if err := b2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := second.offsets()
	if len(got) != batches*size+1 {
		t.Fatalf("replay and one push delivered %d records, want %d", len(got), batches*size+1)
	}
	for i, o := range got {
		if o != int64(i) {
			t.Fatalf("delivered offsets %v, want 0 to %d in order", got, batches*size)
		}
	}
	for _, bt := range second.got {
		if len(bt.Records) > cfg.MaxRecords {
			t.Errorf("replayed batch of %d records in a buffer of %d", len(bt.Records), cfg.MaxRecords)
		}
		for i, r := range bt.Records {
			if o := bt.Offset + int64(i); o < batches*size && r.Body != byOffset[o] {
				t.Errorf("offset %d replayed as %q, logged as %q", o, r.Body, byOffset[o])
			}
		}
	}
	if last := second.got[len(second.got)-1]; last.Records[0].Body != after[0].Body {
		t.Errorf("last delivered record %q, want the one pushed after the restart", last.Records[0].Body)
	}
}

// TestCommittedWithoutWAL: COMMITTED needs no log; it waits for publish.
func TestCommittedWithoutWAL(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TickInterval = 10 * time.Millisecond
	c := &holdingConsumer{oldest: -1}
	b, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return c }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Push(context.Background(), batchOf("s", recsOf("svc", 0, 3)...), Committed) }()
	waitUntil(t, "the batch is consumed", func() bool { return len(c.offsets()) == 3 })
	select {
	case err := <-done:
		t.Fatalf("COMMITTED push returned %v before its records were published", err)
	default:
	}
	c.publish(3)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("COMMITTED push without a log did not return after publish")
	}
}

package buffer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

// flushingConsumer holds what it consumes until Flush, like a batcher
// waiting for its batches to age.
type flushingConsumer struct {
	mu      sync.Mutex
	held    []string
	flushed []string
	err     error // returned by Flush
	// onConsume, if set, is called at the end of every Consume.
	onConsume func()
}

func (c *flushingConsumer) Consume(_ context.Context, b *record.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range b.Records {
		c.held = append(c.held, b.Records[i].Body)
	}
	if c.onConsume != nil {
		c.mu.Unlock()
		c.onConsume()
		c.mu.Lock()
	}
	return nil
}
func (c *flushingConsumer) Tick(context.Context, time.Time) error { return nil }
func (c *flushingConsumer) Close(context.Context) error           { return nil }

func (c *flushingConsumer) Flush(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.flushed = append(c.flushed, c.held...)
	c.held = c.held[:0]
	return nil
}

type flushingConsumers struct {
	mu        sync.Mutex
	all       []*flushingConsumer
	err       error
	onConsume func()
}

func (f *flushingConsumers) deps() Deps {
	return Deps{NewConsumer: func(Key) Consumer {
		f.mu.Lock()
		defer f.mu.Unlock()
		c := &flushingConsumer{err: f.err, onConsume: f.onConsume}
		f.all = append(f.all, c)
		return c
	}}
}

func (f *flushingConsumers) flushed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.all {
		c.mu.Lock()
		out = append(out, c.flushed...)
		c.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// TestFlush pushes batches of normal and priority records to several
// streams from several goroutines, with consumers that hold everything
// until flushed and no tick to hurry them: once Flush returns, every
// record pushed before it was called has been handed to a consumer and
// flushed.
func TestFlush(t *testing.T) {
	cfg := testConfig()
	cfg.TickInterval = time.Hour
	cfg.Partitions = 4
	var f flushingConsumers
	b := mustNew(t, cfg, f.deps())
	defer mustShutdown(t, b)

	var want []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				recs := recsOf(fmt.Sprintf("svc%d-%d", g, i%7), i*10, 10)
				if i%3 == 0 {
					for k := range recs {
						recs[k].SeverityNumber = record.SeverityError
					}
				}
				pushed := ids(recs)
				if err := b.Push(context.Background(), batchOf(fmt.Sprintf("s%d", g%2), recs...), Accepted); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want = append(want, pushed...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := b.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	slices.Sort(want)
	if got := f.flushed(); !slices.Equal(got, want) {
		t.Fatalf("flushed %d records, want the %d pushed", len(got), len(want))
	}
}

// TestFlushErrors: a consumer's Flush error is reported with its
// partition, a buffer with no stream flushes at once, and Flush after
// Shutdown fails with ErrClosed instead of waiting.
func TestFlushErrors(t *testing.T) {
	cfg := testConfig()
	cfg.Partitions = 1
	boom := errors.New("sink refuses")
	f := flushingConsumers{err: boom}
	b := mustNew(t, cfg, f.deps())
	if err := b.Flush(context.Background()); err != nil {
		t.Fatalf("Flush without streams: %v", err)
	}
	if err := b.Push(context.Background(), batchOf("s", recsOf("svc", 0, 3)...), Accepted); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want the consumer's error", err)
	}
	mustShutdown(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Flush(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Shutdown = %v, want ErrClosed", err)
	}
}

// TestFlushUnderLoad: Flush is bounded by what was queued when it was
// called, not by the rings running empty. Here every delivery pushes
// another batch, so the partition's ring is never empty; Flush must
// still return, with every record pushed before it flushed.
func TestFlushUnderLoad(t *testing.T) {
	cfg := testConfig()
	cfg.TickInterval = time.Hour
	cfg.Partitions = 1
	var (
		b       *Buffer
		stop    atomic.Bool
		refills atomic.Int64
	)
	f := flushingConsumers{onConsume: func() {
		if stop.Load() {
			return
		}
		n := int(refills.Add(1))
		// A refill racing Shutdown (after stop was read) is refused.
		if err := b.Push(context.Background(), batchOf("s", rec("refill", n)), Accepted); err != nil && !errors.Is(err, ErrClosed) {
			t.Error(err)
		}
	}}
	b = mustNew(t, cfg, f.deps())
	defer mustShutdown(t, b)
	defer stop.Store(true)

	var want []string
	for i := range 20 {
		recs := recsOf("svc", i*5, 5)
		want = append(want, ids(recs)...)
		if err := b.Push(context.Background(), batchOf("s", recs...), Accepted); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush with a ring that never empties: %v", err)
	}
	got := map[string]bool{}
	for _, id := range f.flushed() {
		got[id] = true
	}
	for _, id := range want {
		if !got[id] {
			t.Fatalf("record %s pushed before Flush was not flushed", id)
		}
	}
	if refills.Load() == 0 {
		t.Fatal("no delivery pushed a refill: the ring was not kept busy")
	}
}

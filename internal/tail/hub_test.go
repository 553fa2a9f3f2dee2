package tail_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/tail"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func batch(stream string, part int32, offset int64, recs ...record.Record) *record.Batch {
	return &record.Batch{Tenant: "t", Stream: stream, Partition: part, Offset: offset, Records: recs}
}

func rec(sev int32, service, body string) record.Record {
	r := record.Record{SeverityNumber: sev, Body: body}
	if service != "" {
		r.Resource = []record.KV{{Key: "service.name", Value: service}}
	}
	return r
}

func next(t *testing.T, s *tail.Subscription) ([]tail.Item, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	items, missed, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return items, missed
}

func TestFilter(t *testing.T) {
	t.Parallel()
	r := rec(record.SeverityWarn, "api", "disk is full")
	for _, tc := range []struct {
		f    tail.Filter
		want bool
	}{
		{tail.Filter{}, true},
		{tail.Filter{Streams: []string{"a", "app"}}, true},
		{tail.Filter{Streams: []string{"other"}}, false},
		{tail.Filter{Service: "api"}, true},
		{tail.Filter{Service: "web"}, false},
		{tail.Filter{MinSeverity: record.SeverityWarn}, true},
		{tail.Filter{MinSeverity: record.SeverityError}, false},
		{tail.Filter{Contains: "is full"}, true},
		{tail.Filter{Contains: "Disk"}, false},
		{tail.Filter{Streams: []string{"app"}, Service: "api", MinSeverity: 9, Contains: "disk"}, true},
	} {
		if got := tc.f.Match("app", &r); got != tc.want {
			t.Errorf("%+v: Match = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestPublishDeliversMatchingRecords(t *testing.T) {
	t.Parallel()
	h := tail.NewHub(tail.DefaultConfig())
	h.Publish(batch("app", 0, 0, rec(record.SeverityError, "api", "before subscribe")))
	s, err := h.Subscribe(tail.Filter{Streams: []string{"app"}, MinSeverity: record.SeverityWarn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h.Publish(batch("other", 0, 0, rec(record.SeverityError, "api", "other stream")))
	h.Publish(batch("app", 1, 10,
		rec(record.SeverityInfo, "api", "too low"),
		rec(record.SeverityError, "api", "first"),
		rec(record.SeverityWarn, "web", "second"),
	))
	items, missed := next(t, s)
	if missed != 0 || len(items) != 2 {
		t.Fatalf("got %d items, %d missed; want 2, 0", len(items), missed)
	}
	for i, want := range []struct {
		body   string
		offset int64
	}{{"first", 11}, {"second", 12}} {
		it := items[i]
		if it.Record.Body != want.body || it.Offset != want.offset || it.Stream != "app" || it.Partition != 1 || it.Tenant != "t" {
			t.Errorf("item %d = %+v, want body %q offset %d", i, it, want.body, want.offset)
		}
	}
}

func TestSubscribeLimit(t *testing.T) {
	t.Parallel()
	h := tail.NewHub(tail.Config{QueueBatches: 1, MaxSubscribers: 2})
	a, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Subscribe(tail.Filter{}); !errors.Is(err, tail.ErrTooManySubscribers) {
		t.Fatalf("third Subscribe: %v, want ErrTooManySubscribers", err)
	}
	a.Close()
	a.Close()
	c, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	b.Close()
	c.Close()
}

func TestNextEndsOnCloseAndContext(t *testing.T) {
	t.Parallel()
	h := tail.NewHub(tail.DefaultConfig())
	s, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with expired ctx: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := s.Next(context.Background())
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	if err := <-done; !errors.Is(err, tail.ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
	h.Publish(batch("app", 0, 0, rec(0, "", "after close"))) // must not panic or block
}

// A subscriber that never reads must not slow Publish, and what it
// misses is counted exactly.
func TestSlowSubscriberMissesExactly(t *testing.T) {
	t.Parallel()
	const (
		queue      = 8
		publishers = 4
		batches    = 500 // per publisher
		perBatch   = 5   // records per batch, of which 3 match
	)
	h := tail.NewHub(tail.Config{QueueBatches: queue, MaxSubscribers: 4})
	slow, err := h.Subscribe(tail.Filter{MinSeverity: record.SeverityWarn})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range batches {
				recs := make([]record.Record, perBatch)
				for j := range recs {
					sev := record.SeverityInfo
					if j%2 == 0 {
						sev = record.SeverityError
					}
					recs[j] = rec(sev, "api", fmt.Sprintf("p%d b%d r%d", p, i, j))
				}
				h.Publish(batch("app", int32(p), int64(i*perBatch), recs...))
			}
		})
	}
	published := make(chan struct{})
	go func() { wg.Wait(); close(published) }()
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	const matching = publishers * batches * 3
	var got, missed uint64
	for got+missed < matching {
		items, m := next(t, slow)
		got += uint64(len(items))
		missed += m
	}
	if got != queue*3 || missed != matching-queue*3 {
		t.Fatalf("got %d records and %d missed; want %d and %d", got, missed, queue*3, matching-queue*3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if items, m, err := slow.Next(ctx); err == nil {
		t.Fatalf("Next after draining: %d items, %d missed; want nothing", len(items), m)
	}
}

// Subscriptions come and go while batches are published and read.
func TestConcurrentSubscribePublishRead(t *testing.T) {
	t.Parallel()
	h := tail.NewHub(tail.Config{QueueBatches: 4, MaxSubscribers: 8})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				s, err := h.Subscribe(tail.Filter{Contains: "x"})
				if err != nil {
					t.Error(err)
					return
				}
				rctx, rcancel := context.WithTimeout(ctx, time.Millisecond)
				_, _, _ = s.Next(rctx)
				rcancel()
				s.Close()
			}
		})
	}
	for i := range 2000 {
		h.Publish(batch("app", 0, int64(i), rec(0, "", "x"), rec(0, "", "y")))
	}
	cancel()
	wg.Wait()
}

func BenchmarkPublishNoSubscribers(b *testing.B) {
	h := tail.NewHub(tail.DefaultConfig())
	bt := batch("app", 0, 0, rec(record.SeverityInfo, "api", "hello"))
	b.ReportAllocs()
	for b.Loop() {
		h.Publish(bt)
	}
}

func TestPublishKeepsTenantsApart(t *testing.T) {
	t.Parallel()
	h := tail.NewHub(tail.DefaultConfig())
	mine, err := h.Subscribe(tail.Filter{Tenant: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	other, err := h.Subscribe(tail.Filter{Tenant: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	h.Publish(batch("app", 0, 0, rec(record.SeverityInfo, "api", "tenant t only")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	items, _, err := mine.Next(ctx)
	if err != nil || len(items) != 1 {
		t.Fatalf("own tenant: %v %v", items, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if items, _, err := other.Next(short); err == nil || len(items) != 0 {
		t.Fatalf("another tenant's viewer got %v", items)
	}
}

func TestQueueBytesBound(t *testing.T) {
	t.Parallel()
	h := tail.NewHub(tail.Config{QueueBatches: 100, QueueBytes: 1000, MaxSubscribers: 1})
	s, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := strings.Repeat("x", 600)
	for i := 0; i < 3; i++ {
		h.Publish(batch("app", 0, int64(i), rec(record.SeverityInfo, "api", big)))
	}
	items, missed, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The first batch fits an empty queue; the next two would pass 1000 bytes.
	if len(items) != 1 || missed != 2 {
		t.Fatalf("got %d items and %d missed, want 1 and 2", len(items), missed)
	}
	h.Publish(batch("app", 0, 3, rec(record.SeverityInfo, "api", big)))
	if items, _, err := s.Next(context.Background()); err != nil || len(items) != 1 {
		t.Fatalf("after draining, the queue takes batches again: %d items, %v", len(items), err)
	}
}

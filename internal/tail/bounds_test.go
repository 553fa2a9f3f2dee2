package tail_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/tail"
)

// drain reads s until it has accounted for want records (received or
// missed) and returns the received ones and the missed count.
func drain(t *testing.T, s *tail.Subscription, want uint64) ([]tail.Item, uint64) {
	t.Helper()
	var got []tail.Item
	var missed uint64
	for uint64(len(got))+missed < want {
		items, m := next(t, s)
		got = append(got, items...)
		missed += m
	}
	return got, missed
}

func itemBytes(items []tail.Item) int {
	n := 0
	for i := range items {
		n += items[i].Record.Size()
	}
	return n
}

// Viewers that never read hold no more than TotalBytes between them, and
// a viewer that reads keeps receiving every batch while they do.
func TestTotalBytesBound(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("x", 900)
	one := rec(record.SeverityInfo, "api", body)
	size := one.Size()
	const total, idle, batches = 10_000, 5, 200
	h := tail.NewHub(tail.Config{QueueBatches: 1000, QueueBytes: 1 << 20, TotalBytes: total, MaxSubscribers: idle + 1})
	var stalled []*tail.Subscription
	for range idle {
		s, err := h.Subscribe(tail.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stalled = append(stalled, s)
	}
	reader, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range batches {
		h.Publish(batch("app", 0, int64(i), one))
		if q := h.Stats().QueuedBytes; q > total {
			t.Fatalf("after batch %d: %d bytes queued, above TotalBytes %d", i, q, total)
		}
		items, missed := next(t, reader)
		if len(items) != 1 || missed != 0 || items[0].Offset != int64(i) {
			t.Fatalf("batch %d: the reading viewer got %d items (missed %d)", i, len(items), missed)
		}
	}
	reader.Close()
	// The last publish filled the budget, the reader's batch included;
	// the reader took its own.
	queued := h.Stats().QueuedBytes
	if want := (total/size - 1) * size; queued != want {
		t.Errorf("%d bytes queued; want the budget full but for the reader's batch: %d", queued, want)
	}
	sum := 0
	for i, s := range stalled {
		got, missed := drain(t, s, batches)
		sum += itemBytes(got)
		if uint64(len(got))+missed != batches {
			t.Errorf("stalled viewer %d: %d received + %d missed, want %d", i, len(got), missed, batches)
		}
		for j := 1; j < len(got); j++ {
			if got[j].Offset <= got[j-1].Offset {
				t.Fatalf("stalled viewer %d: offsets %d then %d", i, got[j-1].Offset, got[j].Offset)
			}
		}
	}
	if sum != queued {
		t.Errorf("the stalled viewers received %d bytes; the hub accounted %d", sum, queued)
	}
	if q := h.Stats().QueuedBytes; q != 0 {
		t.Errorf("%d bytes queued after draining, want 0", q)
	}
}

// A batch larger than TotalBytes is missed; closing a viewer returns
// its bytes to the budget.
func TestTotalBytesOversizedAndClose(t *testing.T) {
	t.Parallel()
	h := tail.NewHub(tail.Config{TotalBytes: 2000, MaxSubscribers: 2})
	a, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h.Publish(batch("app", 0, 0, rec(0, "", strings.Repeat("x", 3000))))
	if items, missed := next(t, a); len(items) != 0 || missed != 1 {
		t.Fatalf("oversized batch: %d items, %d missed; want 0 and 1", len(items), missed)
	}
	b, err := h.Subscribe(tail.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	small := rec(0, "", strings.Repeat("y", 500))
	h.Publish(batch("app", 0, 1, small))
	if q := h.Stats().QueuedBytes; q != 2*small.Size() {
		t.Fatalf("%d bytes queued, want %d", q, 2*small.Size())
	}
	b.Close()
	if q := h.Stats().QueuedBytes; q != small.Size() {
		t.Fatalf("after Close: %d bytes queued, want %d", q, small.Size())
	}
}

// Publishers, readers and viewers that never read run at once: the
// budget holds throughout and every viewer accounts for every matching
// record, received or missed.
func TestTotalBytesConcurrent(t *testing.T) {
	t.Parallel()
	const total, publishers, batches = 20_000, 3, 300
	h := tail.NewHub(tail.Config{QueueBatches: 64, QueueBytes: 8000, TotalBytes: total, MaxSubscribers: 8})
	subs := make([]*tail.Subscription, 6)
	for i := range subs {
		s, err := h.Subscribe(tail.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		subs[i] = s
	}
	const want = publishers * batches * 2
	var readers sync.WaitGroup
	results := make([]uint64, 3)
	for i, s := range subs[:3] { // the readers; the others never read until the end
		readers.Go(func() {
			got, missed := drain(t, s, want)
			results[i] = uint64(len(got)) + missed
		})
	}
	var pubs sync.WaitGroup
	for p := range publishers {
		pubs.Go(func() {
			for i := range batches {
				h.Publish(batch("app", int32(p), int64(2*i), rec(0, "", strings.Repeat("z", 200+i%300)), rec(0, "", "short")))
			}
		})
	}
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			if q := h.Stats().QueuedBytes; q > total || q < 0 {
				t.Errorf("%d bytes queued, TotalBytes %d", q, total)
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	pubs.Wait()
	readers.Wait()
	close(stop)
	watch.Wait()
	for i, n := range results {
		if n != want {
			t.Errorf("reader %d accounted for %d records, want %d", i, n, want)
		}
	}
	for i, s := range subs[3:] {
		if got, missed := drain(t, s, want); uint64(len(got))+missed != want {
			t.Errorf("stalled viewer %d: %d + %d, want %d", i, len(got), missed, want)
		}
	}
	if q := h.Stats().QueuedBytes; q != 0 {
		t.Errorf("%d bytes queued after every viewer drained, want 0", q)
	}
}

// A viewer that does not read for IdleTimeout is closed and frees its
// slot; one waiting in Next is not idle however long it waits.
func TestIdleViewerFreesSlot(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := tail.NewHub(tail.Config{MaxSubscribers: 2, IdleTimeout: time.Minute})
		stalled, err := h.Subscribe(tail.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Close()
		waiting, err := h.Subscribe(tail.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer waiting.Close()
		got := make(chan []tail.Item, 1)
		go func() {
			items, _, err := waiting.Next(context.Background())
			if err != nil {
				t.Error(err)
			}
			got <- items
		}()
		h.Publish(batch("app", 0, 0, rec(0, "", "queued for the stalled viewer")))
		<-got // the waiting viewer read that one; now it waits again
		go func() {
			items, _, err := waiting.Next(context.Background())
			if err != nil {
				t.Error(err)
			}
			got <- items
		}()
		synctest.Wait()
		if _, err := h.Subscribe(tail.Filter{}); !errors.Is(err, tail.ErrTooManySubscribers) {
			t.Fatalf("Subscribe at the limit: %v", err)
		}
		time.Sleep(time.Minute - time.Nanosecond)
		if _, err := h.Subscribe(tail.Filter{}); !errors.Is(err, tail.ErrTooManySubscribers) {
			t.Fatalf("Subscribe before the idle timeout: %v", err)
		}
		if q := h.Stats().QueuedBytes; q == 0 {
			t.Fatal("nothing queued for the stalled viewer")
		}
		time.Sleep(time.Nanosecond)
		fresh, err := h.Subscribe(tail.Filter{})
		if err != nil {
			t.Fatalf("Subscribe once the stalled viewer is idle: %v", err)
		}
		defer fresh.Close()
		if _, _, err := stalled.Next(context.Background()); !errors.Is(err, tail.ErrIdle) || !errors.Is(err, tail.ErrClosed) {
			t.Fatalf("the idle viewer's Next: %v, want ErrIdle", err)
		}
		if st := h.Stats(); st.Subscribers != 2 || st.QueuedBytes != 0 {
			t.Fatalf("stats %+v, want 2 subscribers and nothing queued", st)
		}
		h.Publish(batch("app", 0, 1, rec(0, "", "for the waiting viewer")))
		if items := <-got; len(items) != 1 || items[0].Offset != 1 {
			t.Fatalf("the waiting viewer got %v", items)
		}
	})
}

// Publish, too, closes idle viewers, so their queues are freed even when
// nobody subscribes.
func TestPublishClosesIdleViewers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := tail.NewHub(tail.Config{IdleTimeout: time.Second})
		s, err := h.Subscribe(tail.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		h.Publish(batch("app", 0, 0, rec(0, "", "one")))
		if _, _, err := s.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.Publish(batch("app", 0, 1, rec(0, "", "two")))
		time.Sleep(time.Second)
		h.Publish(batch("other", 0, 0, rec(0, "", "three")))
		if st := h.Stats(); st.Subscribers != 0 || st.QueuedBytes != 0 {
			t.Fatalf("stats %+v after the idle timeout, want none", st)
		}
		if _, _, err := s.Next(context.Background()); !errors.Is(err, tail.ErrIdle) {
			t.Fatalf("Next: %v, want ErrIdle", err)
		}
	})
}

func TestSubscribersPerTenant(t *testing.T) {
	t.Parallel()
	if got := tail.NewHub(tail.Config{MaxSubscribers: 3, MaxSubscribersPerTenant: 10}).Config().MaxSubscribersPerTenant; got != 3 {
		t.Errorf("MaxSubscribersPerTenant above MaxSubscribers: %d, want it capped at 3", got)
	}
	h := tail.NewHub(tail.Config{MaxSubscribers: 4, MaxSubscribersPerTenant: 2})
	var open []*tail.Subscription
	defer func() {
		for _, s := range open {
			s.Close()
		}
	}()
	sub := func(tenant string) error {
		s, err := h.Subscribe(tail.Filter{Tenant: tenant})
		if err == nil {
			open = append(open, s)
		}
		return err
	}
	for _, tenant := range []string{"a", "a", "b"} {
		if err := sub(tenant); err != nil {
			t.Fatalf("tenant %s: %v", tenant, err)
		}
	}
	if err := sub("a"); !errors.Is(err, tail.ErrTooManySubscribers) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("third viewer of tenant a: %v, want ErrTooManySubscribers naming the tenant", err)
	}
	if err := sub("b"); err != nil {
		t.Fatalf("second viewer of tenant b: %v", err)
	}
	if err := sub("c"); !errors.Is(err, tail.ErrTooManySubscribers) {
		t.Fatalf("fifth viewer: %v, want ErrTooManySubscribers", err)
	}
	open[0].Close()
	if err := sub("a"); err != nil {
		t.Fatalf("tenant a after one closed: %v", err)
	}
}

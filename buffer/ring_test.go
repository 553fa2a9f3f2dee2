package buffer

import (
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

func TestRingCap(t *testing.T) {
	for _, tc := range []struct{ in, want int }{
		{1, 2}, {2, 2}, {3, 4}, {5, 8}, {1024, 1024}, {1025, 2048},
	} {
		if got := NewRing[int](tc.in).Cap(); got != tc.want {
			t.Errorf("NewRing(%d).Cap() = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, bad := range []int{0, -1, maxRingCap + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewRing(%d) did not panic", bad)
				}
			}()
			NewRing[int](bad)
		}()
	}
}

func TestRingLayout(t *testing.T) {
	var r Ring[*int]
	head, tail := unsafe.Offsetof(r.head), unsafe.Offsetof(r.tail)
	if head-tail < cacheLine || tail < cacheLine/2 || unsafe.Sizeof(r)-head < cacheLine {
		t.Errorf("tail at %d, head at %d, size %d: hot counters share a %d-byte line", tail, head, unsafe.Sizeof(r), cacheLine)
	}
}

func TestRingFIFO(t *testing.T) {
	r := NewRing[int](8)
	if _, ok := r.TryPop(); ok {
		t.Fatal("TryPop on a new ring succeeded")
	}
	for i := range 8 {
		if !r.TryPush(i) {
			t.Fatalf("TryPush(%d) failed with Len %d", i, r.Len())
		}
	}
	if r.TryPush(8) {
		t.Fatal("TryPush on a full ring succeeded")
	}
	if r.Len() != 8 {
		t.Fatalf("Len = %d, want 8", r.Len())
	}
	for i := range 8 {
		v, ok := r.TryPop()
		if !ok || v != i {
			t.Fatalf("TryPop = %d, %v; want %d, true", v, ok, i)
		}
	}
	if _, ok := r.TryPop(); ok {
		t.Fatal("TryPop on an emptied ring succeeded")
	}
	if r.Len() != 0 {
		t.Fatalf("Len = %d, want 0", r.Len())
	}
}

func TestRingWraparound(t *testing.T) {
	r := NewRing[int](4)
	next, want := 0, 0
	// Push and pop in uneven steps so positions wrap many times with the
	// ring at every fill level.
	for round := range 1000 {
		for range round%4 + 1 {
			if !r.TryPush(next) {
				break
			}
			next++
		}
		if r.Len() != next-want {
			t.Fatalf("round %d: Len = %d, want %d", round, r.Len(), next-want)
		}
		for range (round+1)%3 + 1 {
			v, ok := r.TryPop()
			if !ok {
				if next != want {
					t.Fatalf("round %d: TryPop failed with %d queued", round, next-want)
				}
				break
			}
			if v != want {
				t.Fatalf("round %d: TryPop = %d, want %d", round, v, want)
			}
			want++
		}
	}
	if want < 1000 {
		t.Fatalf("only %d values went through", want)
	}
}

func TestRingZeroesPoppedSlot(t *testing.T) {
	r := NewRing[*int](2)
	v := new(int)
	r.TryPush(v)
	r.TryPop()
	if r.slots[0].val != nil {
		t.Fatal("popped slot still references its value")
	}
}

// TestRingConcurrent has producers and consumers hammer a small ring and
// checks that every value comes out exactly once and, per producer, in
// order when there is one consumer.
func TestRingConcurrent(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		producers, consumers int
	}{
		{"1p1c", 1, 1},
		{"4p1c", 4, 1},
		{"4p4c", 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const perProducer = 20000
			r := NewRing[uint64](16)
			seen := make([]atomic.Int32, tc.producers*perProducer)
			var remaining atomic.Int64
			remaining.Store(int64(len(seen)))
			var wg sync.WaitGroup
			for p := range tc.producers {
				wg.Go(func() {
					for i := range perProducer {
						v := uint64(p)<<32 | uint64(i)
						for !r.TryPush(v) {
							yield()
						}
					}
				})
			}
			errs := make(chan string, tc.consumers)
			for range tc.consumers {
				wg.Go(func() {
					last := make([]int64, tc.producers)
					for i := range last {
						last[i] = -1
					}
					for remaining.Load() > 0 {
						v, ok := r.TryPop()
						if !ok {
							yield()
							continue
						}
						remaining.Add(-1)
						p, i := int(v>>32), int64(uint32(v))
						seen[p*perProducer+int(i)].Add(1)
						if tc.consumers == 1 && i <= last[p] {
							errs <- "values of one producer out of order"
							return
						}
						last[p] = i
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
			for i := range seen {
				if n := seen[i].Load(); n != 1 {
					t.Fatalf("value %d of producer %d seen %d times", i%perProducer, i/perProducer, n)
				}
			}
			if r.Len() != 0 {
				t.Fatalf("Len = %d after draining", r.Len())
			}
		})
	}
}

package buffer

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

// The queue benchmarks compare Ring with the two plain alternatives, a
// mutex with a circular slice and a buffered channel, at the same capacity,
// moving *record.Batch from P producers to one consumer. One op is one value
// through the queue, so ns/op is per push. Producers reuse a few
// preallocated batches; nothing allocates per op.
//
// Two ways of waiting are measured, because the winner depends on it:
//
//   - try: non-blocking TryPush/TryPop (a select with default for the
//     channel); a side that finds the queue full or empty yields
//     (runtime.Gosched) and retries. This is the raw cost of the queue.
//   - park: a side that finds the queue full or empty parks until the
//     other side signals, the way Buffer uses its rings (a cap-1 data
//     signal for the consumer, a waitList for producers). The channel
//     parks natively.
//
// BenchmarkQueueUncontended pushes and pops on one goroutine.

const benchCap = 1024

// tryQueue is what the queues under test provide.
type tryQueue interface {
	TryPush(*record.Batch) bool
	TryPop() (*record.Batch, bool)
}

// mutexQueue is the plain alternative: a mutex and a circular slice.
type mutexQueue struct {
	mu   sync.Mutex
	buf  []*record.Batch
	head int // index of the oldest value
	n    int
}

func newMutexQueue(capacity int) *mutexQueue {
	return &mutexQueue{buf: make([]*record.Batch, capacity)}
}

func (q *mutexQueue) TryPush(v *record.Batch) bool {
	q.mu.Lock()
	if q.n == len(q.buf) {
		q.mu.Unlock()
		return false
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
	q.mu.Unlock()
	return true
}

func (q *mutexQueue) TryPop() (*record.Batch, bool) {
	q.mu.Lock()
	if q.n == 0 {
		q.mu.Unlock()
		return nil, false
	}
	v := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.mu.Unlock()
	return v, true
}

// chanQueue is a buffered channel used without blocking.
type chanQueue chan *record.Batch

func (q chanQueue) TryPush(v *record.Batch) bool {
	select {
	case q <- v:
		return true
	default:
		return false
	}
}

func (q chanQueue) TryPop() (*record.Batch, bool) {
	select {
	case v := <-q:
		return v, true
	default:
		return nil, false
	}
}

var benchQueues = []struct {
	name string
	new  func() tryQueue
}{
	{"ring", func() tryQueue { return NewRing[*record.Batch](benchCap) }},
	{"mutex", func() tryQueue { return newMutexQueue(benchCap) }},
	{"chan", func() tryQueue { return make(chanQueue, benchCap) }},
}

func benchBatches() []*record.Batch {
	out := make([]*record.Batch, 64)
	for i := range out {
		out[i] = record.NewBatch("acme", "logs", []record.Record{rec("svc", i)})
	}
	return out
}

// shares splits n ops over p producers.
func shares(n, p int) []int {
	out := make([]int, p)
	for i := range out {
		out[i] = n / p
		if i < n%p {
			out[i]++
		}
	}
	return out
}

// runQueue moves b.N batches from producers goroutines, each calling push,
// to the benchmark goroutine calling pop.
func runQueue(b *testing.B, producers int, push func(*record.Batch), pop func() *record.Batch) {
	batches := benchBatches()
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, n := range shares(b.N, producers) {
		wg.Go(func() {
			for i := range n {
				push(batches[i%len(batches)])
			}
		})
	}
	for range b.N {
		if pop() == nil {
			b.Fatal("nil batch")
		}
	}
	wg.Wait()
}

// parked wraps a tryQueue with the wake-ups Buffer uses.
type parked struct {
	q    tryQueue
	data chan struct{}
	room waitList
}

func (p *parked) push(v *record.Batch) {
	for !p.q.TryPush(v) {
		wake := p.room.arm()
		if p.q.TryPush(v) {
			break
		}
		<-wake
	}
	select {
	case p.data <- struct{}{}:
	default:
	}
}

func (p *parked) pop() *record.Batch {
	for {
		if v, ok := p.q.TryPop(); ok {
			p.room.broadcast()
			return v
		}
		<-p.data
	}
}

func BenchmarkQueue(b *testing.B) {
	for _, producers := range []int{1, 2, 8} {
		for _, q := range benchQueues {
			b.Run(fmt.Sprintf("try/%s/producers=%d", q.name, producers), func(b *testing.B) {
				tq := q.new()
				runQueue(b, producers,
					func(v *record.Batch) {
						for !tq.TryPush(v) {
							runtime.Gosched()
						}
					},
					func() *record.Batch {
						for {
							if v, ok := tq.TryPop(); ok {
								return v
							}
							runtime.Gosched()
						}
					})
			})
		}
		for _, q := range benchQueues {
			b.Run(fmt.Sprintf("park/%s/producers=%d", q.name, producers), func(b *testing.B) {
				if q.name == "chan" {
					ch := make(chan *record.Batch, benchCap)
					runQueue(b, producers,
						func(v *record.Batch) { ch <- v },
						func() *record.Batch { return <-ch })
					return
				}
				p := &parked{q: q.new(), data: make(chan struct{}, 1), room: waitList{ch: make(chan struct{})}}
				runQueue(b, producers, p.push, p.pop)
			})
		}
	}
}

func BenchmarkQueueUncontended(b *testing.B) {
	for _, q := range benchQueues {
		b.Run(q.name, func(b *testing.B) {
			tq := q.new()
			v := benchBatches()[0]
			b.ReportAllocs()
			for b.Loop() {
				tq.TryPush(v)
				tq.TryPop()
			}
		})
	}
}

// discard is a consumer that hands batches back to a pool for reuse.
type discard struct{ pool *sync.Pool }

func (d discard) Consume(_ context.Context, b *record.Batch) error {
	d.pool.Put(b)
	return nil
}
func (discard) Tick(context.Context, time.Time) error { return nil }
func (discard) Close(context.Context) error           { return nil }

// BenchmarkBufferPush measures the whole Push path with GOMAXPROCS
// producers (b.RunParallel) and consumers that discard; the consumer
// goroutines share the same cores. Batches are 16 records, and their
// headers are recycled through a sync.Pool by the consumers. "mixed"
// batches hold 4 services and so are split over the 4 partitions; Push
// reorders their records in place, so each producer refills its own record
// array before every push (a 16-record copy standing in for the decoder
// that would have filled a fresh batch).
func BenchmarkBufferPush(b *testing.B) {
	for _, tc := range []struct {
		name       string
		partitions int
		services   int
	}{
		{"partitions=1", 1, 1},
		{"partitions=4/one-service", 4, 1},
		{"partitions=4/mixed", 4, 4},
	} {
		b.Run(tc.name, func(b *testing.B) {
			recs := make([]record.Record, 16)
			for i := range recs {
				recs[i] = rec(fmt.Sprintf("svc%d", i%tc.services), i)
			}
			proto := record.NewBatch("acme", "logs", recs)
			refill := tc.services > 1
			pool := &sync.Pool{New: func() any { return new(record.Batch) }}
			cfg := DefaultConfig()
			cfg.Partitions = tc.partitions
			buf, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return discard{pool} }})
			if err != nil {
				b.Fatal(err)
			}
			if err := buf.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			// Create the stream outside the timed loop.
			if err := buf.Push(ctx, record.NewBatch("acme", "logs", slices.Clone(recs)), Accepted); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(proto.Bytes))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				// Records are only read by Push, never by the discarding
				// consumers, so a producer may refill its array while
				// earlier sub-batches of it are still queued.
				own := slices.Clone(recs)
				for pb.Next() {
					bt := pool.Get().(*record.Batch)
					*bt = *proto
					if refill {
						copy(own, recs)
						bt.Records = own
					}
					if err := buf.Push(ctx, bt, Accepted); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if err := buf.Shutdown(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

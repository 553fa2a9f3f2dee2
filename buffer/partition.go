package buffer

import (
	"context"
	"log/slog"
	"math"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/wal"
)

// errLogEvery throttles the logging of consumer errors per partition: at
// most one line per kind per interval, carrying the count of the errors
// not logged since the last line.
const errLogEvery = 10 * time.Second

// partition is one ring of a stream and the consumer that drains it.
type partition struct {
	key    Key
	cons   Consumer
	lanes  [2]*lane      // normal and priority records; the goroutine drains priority first
	signal chan struct{} // cap 1; producers send without blocking after a push
	// flushes carries Buffer.Flush requests to the goroutine; each
	// channel has room for the reply.
	flushes chan chan<- error

	// mu orders appends: offsets, the write-ahead log and the ring get
	// batches in the same order. The partition's goroutine takes it
	// briefly to trim marks.
	mu      sync.Mutex
	next    int64      // offset of the next record appended
	wal     *wal.Log   // nil without Config.WALDir
	enc     []byte     // encoding buffer for the log
	marks   []segMark  // end offset of each live log segment, oldest first
	lastPos wal.Pos    // position of the last record appended
	prods   *producers // the stream's idempotent producers

	committed atomic.Int64 // every record below it is in a published file
	commits   waitList     // COMMITTED pushes waiting for committed to grow
	stopped   atomic.Bool  // the goroutine exited: committed no longer grows
	// floor is the lowest offset recovery has yet to queue (MaxInt64 when
	// done): the commit watermark must not pass it.
	floor atomic.Int64
	// replaying counts the recovered batches queued on the normal lane and
	// not yet delivered. They were queued before any push (New returns
	// only once recovery has queued them all), so they are the head of
	// that lane, and while any is left the goroutine drains the normal
	// lane first: replay goes in offset order.
	replaying atomic.Int64
}

// lane is one ring of a partition with its slot accounting.
type lane struct {
	ring *Ring[*record.Batch]
	_    [cacheLine]byte
	// slots counts reserved plus queued slots; it never exceeds ring.Cap(),
	// so a push that reserved a slot always finds one.
	slots atomic.Int64
	_     [cacheLine - 8]byte
}

// laneIndex is the lane of a class of records.
func laneIndex(prio bool) int {
	if prio {
		return 1
	}
	return 0
}

func newPartition(key Key, c Consumer, slots int) *partition {
	p := &partition{
		key:     key,
		cons:    c,
		lanes:   [2]*lane{{ring: NewRing[*record.Batch](slots)}, {ring: NewRing[*record.Batch](slots)}},
		signal:  make(chan struct{}, 1),
		flushes: make(chan chan<- error),
		commits: waitList{ch: make(chan struct{})},
	}
	p.floor.Store(math.MaxInt64)
	return p
}

// worker is the state of a partition's goroutine.
type worker struct {
	b        *Buffer
	p        *partition
	ctx      context.Context
	ticker   *time.Ticker
	consumeT throttle
	tickT    throttle
	// held is a priority batch popped while a recovered batch was being
	// queued; it is delivered once replay is over (see drain).
	held *record.Batch
	// popped counts the batches taken from each lane; flushes are the
	// Flush requests waiting for the batches queued at their arrival.
	popped  [2]int64
	flushes []flushWait
	// trim deletes the log segments advance finds committed; nil
	// without a write-ahead log.
	trim *trimmer
}

// run is the goroutine of partition p. It delivers batches in ring order
// and ticks every TickInterval; after stopCh is closed it empties the ring,
// closes the consumer and exits.
func (b *Buffer) run(p *partition) {
	defer b.wg.Done()
	defer b.exited()
	// Profiles break down by stage: this goroutine runs the stream's
	// consumer (transform and sink).
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "pipeline")))

	w := &worker{b: b, p: p, ctx: b.runCtx}
	if p.wal != nil {
		w.trim = startTrimmer(b, p)
	}
	defer func() {
		p.stopped.Store(true)
		p.commits.broadcast()
		if p.wal != nil {
			w.trim.close()
			if err := p.wal.Close(); err != nil {
				b.log.Warn("buffer: close write-ahead log", keyAttrs(p.key, err)...)
			}
		}
	}()
	w.ticker = time.NewTicker(b.cfg.TickInterval)
	defer w.ticker.Stop()

	for {
		if w.drain() {
			continue // a tick interrupted the drain
		}
		select {
		case <-p.signal:
		case now := <-w.ticker.C:
			w.tick(now)
		case reply := <-p.flushes:
			w.requestFlush(reply)
		case <-b.stopCh:
			// Every push has finished: what is in the ring is all there is.
			for w.drain() {
			}
			if err := p.cons.Close(w.ctx); err != nil {
				b.closeErrors.Add(1)
				b.log.Warn("buffer: consumer close failed", keyAttrs(p.key, err)...)
			}
			w.advance()
			return
		}
	}
}

// drain delivers batches, priority lane first (normal lane only while
// recovered batches are left, see partition.replaying), until both lanes
// are empty and reports false, or until a tick is due, which it runs and
// reports true.
//
// Recovered batches are queued before any push that must follow them,
// but the goroutine may read replaying just before the last of them is
// counted and then pop a priority batch pushed right after: such a batch
// is held back (w.held) and delivered once replay is over, so that it
// never overtakes a recovered record.
func (w *worker) drain() bool {
	for {
		if w.p.replaying.Load() > 0 {
			batch, ok := w.p.lanes[0].ring.TryPop()
			if !ok {
				// The recovered batch being queued is counted but not
				// yet in the ring; it signals once it is.
				return false
			}
			w.popped[0]++
			w.p.replaying.Add(-1)
			w.deliver(0, batch)
		} else if w.held != nil {
			batch := w.held
			w.held = nil
			w.deliver(1, batch)
		} else {
			l := 1
			batch, ok := w.p.lanes[l].ring.TryPop()
			if !ok {
				l = 0
				if batch, ok = w.p.lanes[l].ring.TryPop(); !ok {
					return false
				}
			}
			w.popped[l]++
			if w.p.replaying.Load() > 0 {
				// Recovery queued a batch since the check above: it
				// was logged first. A recovered batch popped here is
				// the head of its lane and counts as delivered.
				if l == 1 {
					w.held = batch
					continue
				}
				w.p.replaying.Add(-1)
			}
			w.deliver(l, batch)
		}
		select {
		case now := <-w.ticker.C:
			w.tick(now)
			return true
		case reply := <-w.p.flushes:
			w.requestFlush(reply)
		default:
		}
	}
}

func (w *worker) deliver(l int, batch *record.Batch) {
	n := int64(batch.Len())
	w.b.release(w.p.lanes[l], n, int64(batch.Bytes))
	if err := w.p.cons.Consume(w.ctx, batch); err != nil {
		w.b.consumeErrors.Add(1)
		w.consumeT.log(w.b.log, "buffer: consume failed", w.p.key, err)
	}
	w.advance()
	w.answerFlushes()
}

func (w *worker) tick(now time.Time) {
	if err := w.p.cons.Tick(w.ctx, now); err != nil {
		w.b.tickErrors.Add(1)
		w.tickT.log(w.b.log, "buffer: tick failed", w.p.key, err)
	}
	w.advance()
}

// throttle limits a kind of log line to one per errLogEvery.
type throttle struct {
	last       time.Time
	suppressed int
}

func (t *throttle) log(l *slog.Logger, msg string, key Key, err error) {
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < errLogEvery {
		t.suppressed++
		return
	}
	l.Warn(msg, append(keyAttrs(key, err), "suppressed", t.suppressed)...)
	t.last, t.suppressed = now, 0
}

func keyAttrs(k Key, err error) []any {
	return []any{"tenant", k.Tenant, "stream", k.Stream, "partition", k.Partition, "err", err}
}

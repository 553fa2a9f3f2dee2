package buffer

import (
	"context"
	"errors"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/wal"
)

// trimmer deletes a partition's log segments once every record in them is
// committed, on a goroutine of its own. The partition's worker decides
// what may go (worker.advance) and hands it over without waiting: the
// worker is the stream's sequencer, which ingest waits on, and deleting
// can be slow. On ext4 mounted with online discard, a 64 MiB segment
// takes 25–40 ms to unlink, and a busy stream frees tens of segments at
// once each time it publishes a file (bench/RESULTS.md, "Log segments
// deleted off the sequencer").
//
// Before it deletes, the trimmer saves the stream's idempotent-producers
// table: the table must outlive the log records that carry it. When
// either step fails (a full disk, say) the segments stay due and the
// trimmer tries again every Config.TickInterval, as nothing else may free
// the space.
type trimmer struct {
	b *Buffer
	p *partition
	// want is the first segment to keep: those below it may go. Only
	// request raises it.
	want atomic.Uint64
	wake chan struct{} // cap 1
	stop chan struct{} // closed by close
	done chan struct{} // closed when run returns
	logT throttle      // only run's goroutine logs
}

// Deletions are spread out: after deleting a segment, the trimmer waits
// trimPace times as long as that took (at most maxTrimPause) before the
// next. Where deleting is slow, it holds the file system's journal, which
// the log's appends and fsyncs (the acks) need too: one segment at a time
// with room between them, the acks are never held for long; deleting all
// at once held them for a second (bench/RESULTS.md).
const (
	trimPace     = 2
	maxTrimPause = time.Second
)

// startTrimmer starts the trimmer of p, which has a write-ahead log.
func startTrimmer(b *Buffer, p *partition) *trimmer {
	t := &trimmer{b: b, p: p, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go t.run()
	return t
}

// request makes the segments below seg due for deletion. It never blocks.
func (t *trimmer) request(seg uint64) {
	for {
		cur := t.want.Load()
		if seg <= cur || t.want.CompareAndSwap(cur, seg) {
			break
		}
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// close makes one last attempt at what is due, stops the goroutine and
// waits for it. The log must stay open until close returns.
func (t *trimmer) close() {
	close(t.stop)
	<-t.done
}

func (t *trimmer) run() {
	defer close(t.done)
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "wal")))
	var (
		kept  uint64 // segments below it are deleted
		retry *time.Timer
		again <-chan time.Time // set while a failed attempt waits to be retried
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		final := false
		select {
		case <-t.wake:
		case <-again:
			again = nil
		case <-t.stop:
			final = true
		}
		if want := t.want.Load(); want > kept && (again == nil || final) {
			if t.trim(want) {
				kept = want
			} else if !final {
				if retry == nil {
					retry = time.NewTimer(t.b.cfg.TickInterval)
				} else {
					retry.Reset(t.b.cfg.TickInterval)
				}
				again = retry.C
			}
		}
		if final {
			return
		}
	}
}

// trim saves the producers table and deletes the segments below seg, one
// at a time, oldest first. It reports whether both succeeded.
func (t *trimmer) trim(seg uint64) bool {
	p := t.p
	if err := p.prods.save(time.Now()); err != nil {
		t.logT.log(t.b.log, "buffer: save idempotent producers; keeping log segments", p.key, err)
		return false
	}
	remove := p.wal.Remove
	if t.b.removeHook != nil {
		remove = func(before uint64) error { return t.b.removeHook(p.wal, before) }
	}
	for _, s := range p.wal.Segments() {
		if s.Index >= seg {
			break
		}
		start := time.Now()
		if err := remove(s.Index + 1); err != nil {
			if errors.Is(err, wal.ErrClosed) {
				return true
			}
			t.logT.log(t.b.log, "buffer: remove write-ahead log segments", p.key, err)
			return false
		}
		pace := time.NewTimer(min(trimPace*time.Since(start), maxTrimPause))
		select {
		case <-pace.C:
		case <-t.stop:
			pace.Stop()
		}
	}
	return true
}

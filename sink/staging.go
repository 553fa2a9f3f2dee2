package sink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/apache/arrow-go/v18/arrow"
)

// Staging: how a Write's rows become a segment of their open file.
//
// The caller of Write (a stream partition's goroutine) is the sequencer:
// under the file's lock it reserves the file's next segment (its name,
// its place in the file, the offsets it covers) and queues the batch.
// The encoders, a pool of Config.Encoders goroutines started by Start,
// turn queued batches into segments in parallel, so one busy stream
// partition keeps every core encoding. Finished segments are committed
// to their file strictly in reservation order, by whichever goroutine
// holds the file's lock when the oldest one is ready (see settle): the
// file's segment list, row count and size, Observer.Staged and the
// publish-by-size decision all see segments in the order of the Writes.
//
// Slots in flight are bounded: the queue holds Config.Encoders batches
// and each encoder one, so a saturated pool blocks Write (which holds
// the stream partition's goroutine, and so backs pressure up into the
// buffer's ring and RESOURCE_EXHAUSTED). A queued batch's offsets count
// as unpublished from the moment Write returns (OldestUnpublished), so
// the buffer's commit watermark covers rows still being encoded.
//
// Without Start, Write encodes on the calling goroutine, as a pool of
// one would.

// pendingSeg is a batch queued for encoding into its file's next segment.
type pendingSeg struct {
	f    *openFile
	recs []arrow.RecordBatch // the segment's rows in order, retained while queued; nil once encoded
	seg  Segment             // Path and Rows set when reserved, Bytes when encoded
	err  error               // set before done is closed

	done      chan struct{} // closed once encoded or failed
	committed chan struct{} // closed once committed: staged, or dropped with its broken file
}

func (s *pendingSeg) finished() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// startEncoders starts n encoders. l.mu must be held.
func (l *Lake) startEncoders(n int) {
	l.encq = make(chan *pendingSeg, n)
	l.encStop = make(chan struct{})
	l.encWG.Add(n)
	for range n {
		go l.encoder(l.encq, l.encStop)
	}
}

// stopEncoders stops the encoders and waits for them. Batches still
// queued (only when Shutdown gave up waiting for files) fail with
// ErrClosed.
func (l *Lake) stopEncoders() {
	l.mu.Lock()
	stop := l.encStop
	l.encStop = nil
	l.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	l.encWG.Wait()
}

func (l *Lake) encoder(q <-chan *pendingSeg, stop <-chan struct{}) {
	defer l.encWG.Done()
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "sink-encode")))
	for {
		select {
		case s := <-q:
			l.encode(s)
			l.settle(s.f)
		case <-stop:
			for {
				select {
				case s := <-q:
					releaseAll(s.recs)
					s.recs, s.err = nil, ErrClosed
					close(s.done)
					l.settle(s.f)
				default:
					return
				}
			}
		}
	}
}

// encode writes s's rows to its segment file and marks s done.
func (l *Lake) encode(s *pendingSeg) {
	n, err := writeSegment(l.cfg, l.mem, s.seg.Path, s.recs...)
	releaseAll(s.recs)
	s.recs = nil
	s.seg.Bytes, s.err = n, err
	close(s.done)
}

// queueLocked reserves f's next segment for recs, of rows rows in all,
// and queues them for encoding; f's lock must be held. done is false
// when f takes no more rows (published, abandoned, full, or of another
// schema, which queueLocked publishes) and the caller must retry with a
// fresh file. err is a *FileError only when the rows are not in the
// lake.
func (l *Lake) queueLocked(ctx context.Context, f *openFile, recs []arrow.RecordBatch, rows int64) (done bool, err error) {
	rec := recs[0]
	if f.sealed || f.broken != nil || f.full {
		return false, nil
	}
	if f.schema != nil && !f.schema.Equal(rec.Schema()) {
		l.detach(f)
		if err := l.sealLocked(f); err != nil {
			var fe *FileError
			if errors.As(err, &fe) {
				return true, err
			}
			l.log.Error("sink: publish on schema change", "file", f.id, "err", err)
		}
		return false, nil
	}
	if f.schema == nil {
		if err := f.create(rec); err != nil {
			l.detach(f)
			f.sealed = true
			f.discard(l.log)
			l.retire(f)
			return true, fmt.Errorf("sink: open file for %s/%s: %w", f.part.Tenant, f.part.Stream, err)
		}
	}
	s := &pendingSeg{f: f, seg: Segment{Path: f.segmentPath(), Rows: rows}, done: make(chan struct{}), committed: make(chan struct{})}
	s.recs = make([]arrow.RecordBatch, len(recs))
	for i, r := range recs {
		r.Retain()
		s.recs[i] = r
	}
	if q := l.encQueue(); q != nil {
		select {
		case q <- s:
		case <-ctx.Done():
			releaseAll(s.recs)
			return true, context.Cause(ctx)
		}
	} else {
		l.encode(s)
	}
	for _, r := range recs {
		f.reserve(r)
	}
	f.queued = append(f.queued, s)
	f.head.Store(f.queued[0])
	f.tail.Store(s)
	return true, l.commitLocked(f, false)
}

// encQueue returns the encoders' queue, nil when they do not run.
func (l *Lake) encQueue() chan<- *pendingSeg {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.encStop == nil {
		return nil
	}
	return l.encq
}

// settle commits f's encoded segments on behalf of their Writes when no
// one holds f's lock; whoever holds it commits them before releasing it
// and calls settle after. An oldest segment finished while the lock was
// held is thus committed by the holder or by the encoder that finished
// it. FileErrors are kept for the next Write to f's stream partition.
func (l *Lake) settle(f *openFile) {
	for {
		h := f.head.Load()
		if h == nil || !h.finished() || !f.tryLock() {
			return
		}
		err := l.commitLocked(f, false)
		f.unlock()
		l.keepFailed(f, err)
	}
}

// keepFailed keeps err, if it is a *FileError, for the next Write to f's
// stream partition. Errors are logged where they happen (abandonLocked,
// sealLocked).
func (l *Lake) keepFailed(f *openFile, err error) {
	var fe *FileError
	if !errors.As(err, &fe) {
		return
	}
	l.mu.Lock()
	sk := streamOf(f.part)
	l.failed[sk] = append(l.failed[sk], err)
	l.mu.Unlock()
}

// commitSeg adds s, finished, to f (or drops it if f is broken). f's
// lock must be held.
func (l *Lake) commitSeg(f *openFile, s *pendingSeg) {
	if s.err != nil && f.broken == nil {
		f.broken = fmt.Errorf("encode batch: %w", s.err)
		l.detach(f)
	}
	if f.broken != nil {
		if s.err == nil {
			if err := os.Remove(s.seg.Path); err != nil {
				l.log.Error("sink: remove segment", "path", s.seg.Path, "err", err)
			}
		}
		return
	}
	f.segs = append(f.segs, s.seg)
	f.bytes += s.seg.Bytes
	f.rows += s.seg.Rows
	if l.obs != nil {
		if err := l.obs.Staged(f.info(), s.seg); err != nil {
			l.stagedFailed(f, err)
		}
	}
}

// WaitStaged returns once the rows of every Write that returned before
// the call are staged (Observer.Staged was called for their segment) or
// their file was abandoned, or when ctx is done. Encoding is
// asynchronous (see Staging above), so a Write's rows may still be on
// their way to a segment when it returns.
func (l *Lake) WaitStaged(ctx context.Context) error {
	l.mu.Lock()
	var last []*pendingSeg
	for _, f := range l.open {
		if s := f.tail.Load(); s != nil {
			last = append(last, s)
		}
	}
	for f := range l.sealing {
		if s := f.tail.Load(); s != nil {
			last = append(last, s)
		}
	}
	l.mu.Unlock()
	for _, s := range last {
		select {
		case <-s.committed:
		case <-ctx.Done():
			return fmt.Errorf("sink: waiting for batches being staged: %w", context.Cause(ctx))
		}
	}
	return nil
}

// commitLocked adds f's finished segments, oldest first, to the file,
// waiting for each in turn if wait is set, and stops at the first
// unfinished one otherwise. f's lock must be held. A segment that failed
// to encode breaks the file: it is detached, later segments are deleted
// as they finish, and once none is left in flight the file is abandoned
// (the returned *FileError). A file full by size is published once none
// is left in flight: by the age publisher if it takes it, else here.
func (l *Lake) commitLocked(f *openFile, wait bool) error {
	for len(f.queued) > 0 {
		s := f.queued[0]
		if !wait && !s.finished() {
			return nil
		}
		<-s.done
		f.queued[0] = nil
		f.queued = f.queued[1:]
		if len(f.queued) > 0 {
			f.head.Store(f.queued[0])
		} else {
			f.head.Store(nil)
		}
		l.commitSeg(f, s)
		close(s.committed)
		if f.bytes >= l.cfg.TargetFileBytes && !f.full {
			f.full = true
			l.detach(f)
		}
	}
	switch {
	case f.sealed:
		return nil
	case f.broken != nil:
		return l.abandonLocked(f, f.broken)
	case f.full && !f.sealQueued:
		f.sealQueued = true
		if l.queueSeal(f) {
			return nil
		}
		return l.sealLocked(f)
	}
	return nil
}

// releaseAll releases every batch of recs.
func releaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

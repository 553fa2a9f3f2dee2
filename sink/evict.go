package sink

import (
	"context"
	"runtime/pprof"
)

// Evictions: publishing the files that Config.MaxOpenFiles pushes out.
//
// A backfill spread over many hours (records of years, a few per hour,
// in no particular order) opens a file per hour and, past MaxOpenFiles,
// evicts the oldest for each new one. Publishing a file costs a footer,
// two fsyncs (the file and its directory) and a rename: milliseconds
// spent waiting on the disk, not the CPU. Published by the Write that
// evicts them, one after the other, those waits add up on the one
// goroutine of the stream partition, and its later records are not even
// staged (visible to queries) until they are done.
//
// So, once Start has run, evicted files go to a queue that
// evictPublishers goroutines publish from, several at once: the Write
// goes on with its own rows at once, and concurrent fsyncs share the
// file system's journal commits instead of waiting for one each. The
// queue holds at most MaxOpenFiles files; past it, the Write publishes
// its victims itself, which holds up its stream partition (backpressure)
// rather than letting unpublished files pile up. Queued files are
// detached (Lake.sealing): OldestUnpublished counts their rows and Flush
// and Shutdown wait for them.

// evictPublishers is how many evicted files are published at once.
const evictPublishers = 8

// startEvictPublishers starts the publishers of evicted files. l.mu must
// be held.
func (l *Lake) startEvictPublishers() {
	l.evictq = make(chan *openFile, l.cfg.MaxOpenFiles)
	l.evicting = true
	l.evictDone = make(chan struct{})
	done := make(chan struct{}, evictPublishers)
	for range evictPublishers {
		go l.evictPublisher(done)
	}
	go func() {
		for range evictPublishers {
			<-done
		}
		close(l.evictDone)
	}()
}

// evictPublisher publishes evicted files until Shutdown, then those
// still queued.
func (l *Lake) evictPublisher(done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "sink")))
	for {
		select {
		case f := <-l.evictq:
			l.publishDetached(f, nil)
		case <-l.stop:
			l.mu.Lock()
			l.evicting = false // queueEvicted takes no more files
			l.mu.Unlock()
			for {
				select {
				case f := <-l.evictq:
					l.publishDetached(f, nil)
				default:
					return
				}
			}
		}
	}
}

// publishEvicted publishes victims, detached by acquire: queued for the
// evict publishers while there is room, by the caller otherwise.
func (l *Lake) publishEvicted(victims []*openFile) {
	for _, v := range victims {
		if !l.queueEvicted(v) {
			l.publishDetached(v, nil)
		}
	}
}

// queueEvicted hands f to the evict publishers. It reports false when
// they do not run or their queue is full.
func (l *Lake) queueEvicted(f *openFile) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.evicting {
		return false
	}
	select {
	case l.evictq <- f:
		return true
	default:
		return false
	}
}

package sink

import (
	"context"
	"runtime/pprof"
)

// Displaced files: publishing the files that Config.MaxOpenFiles pushes
// out (not to be confused with evicting a remote lake's local copies).
//
// A backfill spread over many hours (records of years, a few per hour,
// in no particular order) opens a file per hour and, past MaxOpenFiles,
// displaces the oldest for each new one. Publishing a file costs a footer,
// two fsyncs (the file and its directory) and a rename: milliseconds
// spent waiting on the disk, not the CPU. Published by the Write that
// displaces them, one after the other, those waits add up on the one
// goroutine of the stream partition, and its later records are not even
// staged (visible to queries) until they are done.
//
// So, once Start has run, displaced files go to a queue that
// displacedPublishers goroutines publish from, several at once: the Write
// goes on with its own rows at once, and concurrent fsyncs share the
// file system's journal commits instead of waiting for one each. The
// queue holds at most MaxOpenFiles files; past it, the Write publishes
// its victims itself, which holds up its stream partition (backpressure)
// rather than letting unpublished files pile up. Queued files are
// detached (Lake.sealing): OldestUnpublished counts their rows and Flush
// and Shutdown wait for them.

// displacedPublishers is how many displaced files are published at once.
const displacedPublishers = 8

// startDisplacedPublishers starts the publishers of displaced files. l.mu must
// be held.
func (l *Lake) startDisplacedPublishers() {
	l.displacedq = make(chan *openFile, l.cfg.MaxOpenFiles)
	l.displacing = true
	l.displacedDone = make(chan struct{})
	done := make(chan struct{}, displacedPublishers)
	for range displacedPublishers {
		go l.displacedPublisher(done)
	}
	go func() {
		for range displacedPublishers {
			<-done
		}
		close(l.displacedDone)
	}()
}

// displacedPublisher publishes displaced files until Shutdown, then those
// still queued.
func (l *Lake) displacedPublisher(done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "sink")))
	for {
		select {
		case f := <-l.displacedq:
			l.publishDetached(f, nil)
		case <-l.stop:
			l.mu.Lock()
			l.displacing = false // queueDisplaced takes no more files
			l.mu.Unlock()
			for {
				select {
				case f := <-l.displacedq:
					l.publishDetached(f, nil)
				default:
					return
				}
			}
		}
	}
}

// publishDisplaced publishes victims, detached by acquire: queued for the
// displaced publishers while there is room, by the caller otherwise.
func (l *Lake) publishDisplaced(victims []*openFile) {
	for _, v := range victims {
		if !l.queueDisplaced(v) {
			l.publishDetached(v, nil)
		}
	}
}

// queueDisplaced hands f to the displaced publishers. It reports false when
// they do not run or their queue is full.
func (l *Lake) queueDisplaced(f *openFile) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.displacing {
		return false
	}
	select {
	case l.displacedq <- f:
		return true
	default:
		return false
	}
}

package buffer

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Flusher is implemented by consumers that hold records back to batch
// them (arrowbatch.Batcher). Flush hands on everything the consumer holds,
// whatever its age; it is called from the partition's goroutine, like the
// Consumer's methods, and returns an error if some of it could not be
// handed on (it stays with the consumer, to be retried as usual).
type Flusher interface {
	Flush(ctx context.Context) error
}

// Flush returns once every partition of every stream that exists at the
// call has passed each batch queued before the call to its Consumer and,
// if the Consumer is a Flusher, called its Flush. Batches pushed during
// the call may or may not be included. It fails with the Flushers'
// errors, with ErrClosed once Shutdown has begun, or when ctx is done.
//
// Readiness after a restart uses it: once it returns, every recovered
// record has reached the sink.
func (b *Buffer) Flush(ctx context.Context) error {
	var parts []*partition
	b.streams.Range(func(_, v any) bool {
		parts = append(parts, v.(*stream).parts...)
		return true
	})
	replies := make([]chan error, len(parts))
	// Every request is sent before any reply is awaited, so the
	// partitions flush in parallel.
	for i, p := range parts {
		replies[i] = make(chan error, 1)
		select {
		case p.flushes <- replies[i]:
		case <-b.stopCh:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("buffer: flush: %w", context.Cause(ctx))
		}
	}
	var errs []error
	for i, p := range parts {
		select {
		case err := <-replies[i]:
			if err != nil {
				errs = append(errs, fmt.Errorf("buffer: flush %s/%s partition %d: %w", p.key.Tenant, p.key.Stream, p.key.Partition, err))
			}
		case <-b.stopCh:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("buffer: flush: %w", context.Cause(ctx))
		}
	}
	return errors.Join(errs...)
}

// flushWait is a Flush request the partition's goroutine has received:
// it is answered once the batches that were in the rings at its arrival
// are delivered.
type flushWait struct {
	want  [2]int64 // worker.popped values that cover them
	reply chan<- error
}

// requestFlush takes a Flush request. The rings are FIFO, so the batches
// queued at its arrival are the next pops of each lane; pushes that
// follow may be delivered before it is answered, but it never waits for
// the rings to run empty, which under steady load they may never do.
func (w *worker) requestFlush(reply chan<- error) {
	w.flushes = append(w.flushes, flushWait{
		want: [2]int64{
			w.popped[0] + int64(w.p.lanes[0].ring.Len()),
			w.popped[1] + int64(w.p.lanes[1].ring.Len()),
		},
		reply: reply,
	})
	w.answerFlushes()
}

// answerFlushes answers the Flush requests whose batches are delivered:
// it flushes the consumer once for all of them and replies with the
// result.
func (w *worker) answerFlushes() {
	if len(w.flushes) == 0 || w.held != nil {
		return // a held batch is popped but not delivered
	}
	ready := func(f flushWait) bool { return w.popped[0] >= f.want[0] && w.popped[1] >= f.want[1] }
	if !slices.ContainsFunc(w.flushes, ready) {
		return
	}
	var err error
	if f, ok := w.p.cons.(Flusher); ok {
		err = f.Flush(w.ctx)
	}
	w.advance()
	w.flushes = slices.DeleteFunc(w.flushes, func(f flushWait) bool {
		if ready(f) {
			f.reply <- err
			return true
		}
		return false
	})
}

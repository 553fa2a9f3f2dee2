package buffer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/wal"
)

// Push queues batch on its stream, creating the stream on first use.
//
// If Push returns nil it has taken ownership of batch; otherwise batch is
// untouched and still the caller's. A push is all-or-nothing: with several
// partitions the batch is split by service name, and either every part is
// queued or none is.
//
// When there is no room, Push waits for it until ctx is done and then
// returns an error wrapping ErrFull (and ctx's error); ctx bounds only this
// wait, so a push that fits succeeds even with ctx done. A batch with more
// records or bytes than the whole buffer holds is rejected at once with an
// error wrapping ErrFull. Once Shutdown has begun, Push returns ErrClosed,
// also to pushes already waiting for room. An empty batch is an error
// wrapping record.ErrEmptyBatch.
//
// A batch with a ProducerID is written at most once per (ProducerID,
// Sequence): its sequence must be 1 for a producer the stream does not
// know (or has forgotten, see Config.MaxProducers and ProducerTTL) and
// the last accepted one plus 1 otherwise (else an error wrapping
// ErrSequence); a producer the tenant does not know is refused with an
// error wrapping ErrTooManyProducers and ErrFull when the tenant has
// Config.MaxProducers producers none of which has been idle for
// Config.ProducerTTL. A sequence at or below the last accepted one is a retry:
// Push writes nothing, confirms level for what was written before, and
// returns an error wrapping ErrDuplicate, which callers treat as success.
//
// level says when Push returns nil: Accepted once the batch is queued (and
// handed to the write-ahead log, if any); Durable once the log has synced
// it; Committed once every record of it is in a published file. Durable
// needs Config.WALDir (else ErrNoWAL). When the batch is queued but the
// level is not reached before ctx is done (or Shutdown, for Committed),
// Push returns an error wrapping ErrUnconfirmed: the batch is the buffer's
// and will be processed, but the caller cannot know whether it survives a
// crash.
func (b *Buffer) Push(ctx context.Context, batch *record.Batch, level Level) error {
	var r Receipt
	r.parts = r.buf[:0]
	err := b.enqueue(ctx, batch, level, &r)
	if err != nil && !errors.Is(err, ErrDuplicate) {
		return err
	}
	if level == Committed {
		// Outside enqueue: Shutdown waits for enqueues only, and commits
		// can need the rest of the pipeline to shut down.
		if err := r.Wait(ctx, Committed); err != nil {
			return err
		}
	}
	return err
}

// Enqueue is Push at the Accepted level that also returns a Receipt, with
// which the caller can wait for the batch to become Durable and then
// Committed, to tell its client at each level. A retry of an idempotent
// producer's batch returns a Receipt whose Duplicate is true and a nil
// error. Other errors are Push's.
func (b *Buffer) Enqueue(ctx context.Context, batch *record.Batch) (*Receipt, error) {
	r := &Receipt{}
	r.parts = r.buf[:0]
	err := b.enqueue(ctx, batch, Accepted, r)
	switch {
	case errors.Is(err, ErrDuplicate):
		r.dup = true
		batch.Release() // taken, and dropped: it was written before
	case err != nil:
		return nil, err
	}
	return r, nil
}

// Receipt locates an enqueued batch in its partitions' logs and offsets.
type Receipt struct {
	parts []receiptPart
	buf   [2]receiptPart
	dup   bool
}

// receiptPart is where a batch's records of one partition went: the log
// position to sync and the offset the commit watermark must pass.
type receiptPart struct {
	p   *partition
	pos wal.Pos
	end int64
}

// Duplicate reports whether the batch was a retry of one accepted before,
// for which nothing was written.
func (r *Receipt) Duplicate() bool { return r.dup }

// Join returns a receipt that waits for the batches of both r and o: a
// caller that split one request into batches for several streams waits on
// the joined receipt. Duplicate reports r's. Either may be nil.
func (r *Receipt) Join(o *Receipt) *Receipt {
	switch {
	case r == nil:
		return o
	case o == nil:
		return r
	}
	j := &Receipt{dup: r.dup}
	j.parts = append(append(j.buf[:0], r.parts...), o.parts...)
	return j
}

// Wait returns nil once the batch has reached level, at once for
// Accepted. It fails with an error wrapping ErrNoWAL for Durable without a
// write-ahead log, and with one wrapping ErrUnconfirmed when ctx is done
// or the buffer shuts down first. Safe for concurrent use.
func (r *Receipt) Wait(ctx context.Context, level Level) error {
	if level >= Durable {
		for _, rp := range r.parts {
			if rp.p.wal == nil {
				if level == Durable {
					return ErrNoWAL
				}
				continue
			}
			if err := rp.p.wal.Sync(ctx, rp.pos); err != nil {
				return fmt.Errorf("%w: write-ahead log sync: %w", ErrUnconfirmed, err)
			}
		}
	}
	if level == Committed {
		for _, rp := range r.parts {
			if err := rp.p.waitCommitted(ctx, rp.end); err != nil {
				return err
			}
		}
	}
	return nil
}

// enqueue is Push up to the Durable level; it records in r where the
// batch went.
func (b *Buffer) enqueue(ctx context.Context, batch *record.Batch, level Level, r *Receipt) error {
	if batch == nil || batch.Len() == 0 {
		return fmt.Errorf("buffer: push: %w", record.ErrEmptyBatch)
	}
	if level < Accepted || level > Committed {
		return fmt.Errorf("buffer: push: unknown acknowledgement level %d", level)
	}
	if level == Durable && b.cfg.WALDir == "" {
		return ErrNoWAL
	}
	if batch.Bytes < 0 {
		return fmt.Errorf("buffer: push: batch has negative Bytes %d", batch.Bytes)
	}
	// Announce the push before checking closing; Shutdown sets closing
	// before reading active, so one of the two sees the other.
	b.hot.active.Add(1)
	defer b.leave()
	if b.closing.Load() {
		return ErrClosed
	}

	var subsBuf [8]sub
	var destBuf [64]int32
	subs, dest := plan(batch, b.cfg.Partitions, subsBuf[:0], destBuf[:0])
	nrec := int64(batch.Len())
	var nbytes int64
	for _, s := range subs {
		nbytes += int64(s.bytes)
	}
	if nrec > int64(b.cfg.MaxRecords) || nbytes > b.cfg.MaxBytes {
		b.rejectedFull.Add(1)
		return fmt.Errorf("%w (%w): batch of %d records and %d bytes can never fit in a buffer of %d records and %d bytes; send smaller batches",
			ErrFull, ErrTooLarge, nrec, nbytes, b.cfg.MaxRecords, b.cfg.MaxBytes)
	}

	s, err := b.stream(batch.Tenant, batch.Stream)
	if err != nil {
		return err
	}
	queued := 0 // sub-batches appended
	if id, seq := batch.ProducerID, batch.Sequence; id != "" {
		dup, err := s.prods.begin(id, seq, batch.SequenceGaps, time.Now())
		if err != nil {
			return err
		}
		if dup {
			return b.confirmDuplicate(ctx, s, level, r)
		}
		// A batch counts as accepted once any part is in the log: a retry
		// is then a duplicate, not a second copy.
		defer func() { s.prods.end(id, seq, queued > 0) }()
	}
	if !b.tryReserve(s, subs, nrec, nbytes) {
		if err := b.waitReserve(ctx, s, subs, nrec, nbytes); err != nil {
			return err
		}
	}
	// Everything is reserved: from here only the write-ahead log can fail
	// the push, and the batch is ours to take apart.
	all, tenant, name, producer, seq := batch.Records, batch.Tenant, batch.Stream, batch.ProducerID, batch.Sequence
	ipcData, ipcNow := batch.IPC, batch.IPCNow
	cols := arrange(batch, subs, dest) // all (or cols) now holds the records in lane order
	if cols != nil && dest != nil {
		defer cols.Release() // the sub-batches hold slices of it
	}
	var posBuf [8]wal.Pos
	pos := posBuf[:0]
	for i := 0; i < len(subs); {
		// The subs of one partition (its normal and priority lanes) are
		// adjacent and go to its log as one record, so that a crash
		// keeps all of them or none.
		j := i + 1
		for j < len(subs) && subs[j].part == subs[i].part {
			j++
		}
		group := subs[i:j]
		p := s.parts[subs[i].part]
		lo, hi := group[0].start, group[len(group)-1].start+group[len(group)-1].count
		entry := record.Batch{Tenant: tenant, Stream: name, ProducerID: producer, Sequence: seq}
		switch {
		case cols == nil:
			entry.Records = all[lo:hi]
		case dest == nil:
			// The batch goes whole to one lane: the log takes the
			// Arrow IPC stream it came as, when it came as one.
			entry.Cols, entry.IPC, entry.IPCNow = cols, ipcData, ipcNow
		default:
			entry.Cols = cols.NewSlice(int64(lo), int64(hi))
		}
		p.mu.Lock()
		at, err := p.appendLocked(group, &entry)
		p.mu.Unlock()
		if cols != nil && dest != nil {
			entry.Cols.Release()
		}
		if err != nil {
			// Give back the room of these parts and those after them;
			// parts before them are queued and stay (only with several
			// partitions).
			for _, u := range subs[i:] {
				b.release(s.parts[u.part].lanes[laneIndex(u.prio)], int64(u.count), int64(u.bytes))
				if u.batch != batch {
					u.batch.Release() // a slice of cols; batch stays the caller's
				}
			}
			return err
		}
		for range group {
			pos = append(pos, at)
		}
		queued++
		select {
		case p.signal <- struct{}{}:
		default:
		}
		i = j
	}
	b.hot.pushedBatches.Add(1)
	b.hot.pushedRecords.Add(nrec)
	if level >= Durable && b.cfg.WALDir != "" {
		for i, sb := range subs {
			if err := s.parts[sb.part].wal.Sync(ctx, pos[i]); err != nil {
				return fmt.Errorf("%w: write-ahead log sync: %w", ErrUnconfirmed, err)
			}
		}
	}
	for i, sb := range subs {
		r.parts = append(r.parts, receiptPart{p: s.parts[sb.part], pos: pos[i], end: sb.end})
	}
	return nil
}

// confirmDuplicate confirms level for a batch accepted before: everything
// appended to the stream's logs so far, which includes it, is synced, and
// for Committed, waited for. It returns ErrDuplicate on success.
func (b *Buffer) confirmDuplicate(ctx context.Context, s *stream, level Level, r *Receipt) error {
	for _, p := range s.parts {
		p.mu.Lock()
		pos, end := p.lastPos, p.next
		p.mu.Unlock()
		if level >= Durable && p.wal != nil {
			if err := p.wal.Sync(ctx, pos); err != nil {
				return fmt.Errorf("%w: write-ahead log sync: %w", ErrUnconfirmed, err)
			}
		}
		r.parts = append(r.parts, receiptPart{p: p, pos: pos, end: end})
	}
	return ErrDuplicate
}

// leave ends a Push. The last Push to leave after Shutdown has begun wakes
// Shutdown.
func (b *Buffer) leave() {
	if b.hot.active.Add(-1) == 0 && b.closing.Load() {
		select {
		case b.idle <- struct{}{}:
		default:
		}
	}
}

// tryReserve reserves the records and bytes of a push and one slot on the
// lane of every sub-batch, all or none. Normal records may fill the
// buffer only up to the part not reserved for priority records
// (Config.PriorityShare); priority records may fill all of it.
//
// It looks before it reserves, so that a push that plainly does not fit
// takes nothing. The look-first matters: reserve wakes waiters when it
// gives back, and without it a waiter's own give-back would wake it, and
// two waiters would wake each other, in a loop.
func (b *Buffer) tryReserve(s *stream, subs []sub, nrec, nbytes int64) bool {
	nrecN, nbytesN := normalPart(subs)
	if !fits(b.hot.records.Load(), nrec, b.maxRecords, nrecN, b.maxRecordsNormal) ||
		!fits(b.hot.bytes.Load(), nbytes, b.cfg.MaxBytes, nbytesN, b.maxBytesNormal) {
		return false
	}
	for _, sb := range subs {
		if s.parts[sb.part].lanes[laneIndex(sb.prio)].slots.Load() >= b.ringCap {
			return false
		}
	}
	return b.reserve(s, subs, nrec, nbytes, nrecN, nbytesN)
}

// normalPart sums the records and bytes of the normal sub-batches.
func normalPart(subs []sub) (nrec, nbytes int64) {
	for _, sb := range subs {
		if !sb.prio {
			nrec += int64(sb.count)
			nbytes += int64(sb.bytes)
		}
	}
	return nrec, nbytes
}

// fits reports whether n more fit under limit with cur taken, and the
// normal part nN of them also under limitN.
func fits(cur, n, limit, nN, limitN int64) bool {
	return cur+n <= limit && (nN == 0 || cur+nN <= limitN)
}

// reserve takes the room in one fixed order (records, bytes, slots by
// partition). On losing a race for the last of some room, it gives back
// what it took and wakes waiters, since its share may have made them fail.
func (b *Buffer) reserve(s *stream, subs []sub, nrec, nbytes, nrecN, nbytesN int64) bool {
	if !casAdd(&b.hot.records, nrec, b.maxRecords, nrecN, b.maxRecordsNormal) {
		return false
	}
	if !casAdd(&b.hot.bytes, nbytes, b.cfg.MaxBytes, nbytesN, b.maxBytesNormal) {
		b.hot.records.Add(-nrec)
		b.room.broadcast()
		return false
	}
	for i, sb := range subs {
		if !casAdd(&s.parts[sb.part].lanes[laneIndex(sb.prio)].slots, 1, b.ringCap, 0, 0) {
			for _, u := range subs[:i] {
				s.parts[u.part].lanes[laneIndex(u.prio)].slots.Add(-1)
			}
			b.hot.records.Add(-nrec)
			b.hot.bytes.Add(-nbytes)
			b.room.broadcast()
			return false
		}
	}
	return true
}

// waitReserve retries tryReserve whenever room is released, until it
// succeeds, ctx is done or Shutdown begins.
func (b *Buffer) waitReserve(ctx context.Context, s *stream, subs []sub, nrec, nbytes int64) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		wake := b.room.arm()
		if b.tryReserve(s, subs, nrec, nbytes) {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(roomPoll)
		} else {
			timer.Reset(roomPoll)
		}
		select {
		case <-wake:
		case <-timer.C:
		case <-b.closingCh:
			return ErrClosed
		case <-ctx.Done():
			b.rejectedFull.Add(1)
			return fmt.Errorf("%w: no room for %d records and %d bytes before the push context was done: %w",
				ErrFull, nrec, nbytes, context.Cause(ctx))
		}
	}
}

// release returns the room of a dequeued batch and wakes waiting Pushes.
func (b *Buffer) release(l *lane, nrec, nbytes int64) {
	b.hot.records.Add(-nrec)
	b.hot.bytes.Add(-nbytes)
	l.slots.Add(-1)
	b.room.broadcast()
}

// casAdd adds n to c unless that would take it past limit, or the normal
// part nN of n past limitN (see fits).
func casAdd(c *atomic.Int64, n, limit, nN, limitN int64) bool {
	for {
		cur := c.Load()
		if !fits(cur, n, limit, nN, limitN) {
			return false
		}
		if c.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// waitList wakes Pushes waiting for room. A waiter arms it, re-checks for
// room, and then waits on the channel arm returned; broadcast closes that
// channel if anyone armed since the last broadcast. Because a waiter arms
// before it re-checks and a releaser frees room before it broadcasts, a
// release is never missed: either the waiter's check sees the room, or the
// broadcast sees the arm.
type waitList struct {
	_     [cacheLine]byte
	armed atomic.Bool // read on every release; written only by waiters
	_     [cacheLine - 1]byte
	mu    sync.Mutex
	ch    chan struct{}
}

func (w *waitList) arm() <-chan struct{} {
	w.mu.Lock()
	ch := w.ch
	w.armed.Store(true)
	w.mu.Unlock()
	return ch
}

func (w *waitList) broadcast() {
	if !w.armed.Load() || !w.armed.Swap(false) {
		return
	}
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

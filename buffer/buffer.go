package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/wal"
)

// Errors returned by Push. Callers match them with errors.Is; ingest maps
// ErrFull to a resource-exhausted status and ErrClosed to unavailable.
var (
	// ErrFull means there was no room for the batch: it can never fit, or
	// room did not free up before the push context was done.
	ErrFull = errors.New("buffer full")
	// ErrClosed means Shutdown has begun.
	ErrClosed = errors.New("buffer closed")
	// ErrTooManyStreams means the batch names a new stream and
	// Config.MaxStreams streams exist already.
	ErrTooManyStreams = errors.New("too many streams")
)

// roomPoll is how often a Push waiting for room re-checks on its own. Wake-
// ups normally come from consumers releasing room; the poll is a fallback.
const roomPoll = 10 * time.Millisecond

// Key names one partition of one stream of one tenant.
type Key struct {
	Tenant, Stream string
	Partition      int32
}

// Consumer receives the batches of one partition of one stream. The buffer
// calls its methods from a single goroutine, never concurrently, so a
// Consumer needs no locks of its own.
//
// The ctx passed to every method is canceled only if a Shutdown context is
// done before the buffer has drained; a Consumer that blocks (to retry, or
// to push back on the buffer) must return when it is.
type Consumer interface {
	// Consume takes ownership of b. b.Partition and b.Offset are set;
	// offsets of a partition increase across batches, contiguous except
	// in what recovery replays: it skips the offsets already in published
	// files and those of damaged log records (Stats.WALDamage). An error is
	// counted and logged (throttled) and the batch is not offered again:
	// retrying is the consumer's job.
	Consume(ctx context.Context, b *record.Batch) error
	// Tick is called about every Config.TickInterval whether batches are
	// flowing or not; now is the current time. Errors are counted and
	// logged like Consume's.
	Tick(ctx context.Context, now time.Time) error
	// Close is called once, during Shutdown, after every batch queued on
	// the partition has been passed to Consume.
	Close(ctx context.Context) error
}

// Deps are the buffer's dependencies.
type Deps struct {
	// NewConsumer returns the consumer of a partition. Required. It is
	// called once per partition when a stream is first pushed to, from the
	// pushing goroutine, and must not return nil.
	NewConsumer func(Key) Consumer
	// FirstOffset returns the offset of the next record of a partition, for
	// resuming after a restart (the write-ahead log may take it further).
	// It is called once per partition when the stream is created.
	// Optional; nil means 0.
	FirstOffset func(Key) int64
	// Published tells recovery which offsets, from `from` on, of a
	// partition are already in published files, so that replaying the
	// write-ahead log queues each record exactly once. Optional; nil means
	// none are (every logged record is replayed).
	Published func(ctx context.Context, k Key, from int64) (contains func(offset int64) bool, err error)
	// Logger receives consumer errors, throttled. Optional; nil discards.
	Logger *slog.Logger
}

// Stats is a snapshot of the buffer's state and counters.
type Stats struct {
	// QueuedRecords and QueuedBytes are reserved or queued and not yet
	// taken by a consumer. They never exceed Config.MaxRecords and
	// Config.MaxBytes.
	QueuedRecords int64
	QueuedBytes   int64
	// Streams is the number of streams created so far.
	Streams int

	// Cumulative counters.
	PushedBatches int64 // Push calls that returned nil
	PushedRecords int64 // records in those batches
	RejectedFull  int64 // Push calls that returned an ErrFull error
	ConsumeErrors int64 // Consumer.Consume calls that returned an error
	TickErrors    int64 // Consumer.Tick calls that returned an error
	CloseErrors   int64 // Consumer.Close calls that returned an error

	// Uncommitted is the number of records pushed but not yet in a
	// published file, over all partitions: what COMMITTED acks wait for
	// and what the write-ahead logs must keep.
	Uncommitted int64
	// Replaying is the number of batches recovered from the write-ahead
	// logs that consumers have not taken yet; recovery is delivered when
	// it is zero.
	Replaying int64

	// Damage that recovery (in New) found in the write-ahead logs and
	// skipped, each also logged at error level with its segment and byte
	// offset. A damaged segment is kept until its records are published,
	// so a restart before then finds and counts the same damage again.
	WALDamage int64 // damaged spans skipped (a bad record, several bad records in a row, a missing segment)
	// WALLostRecords counts the unpublished records known to be in
	// damaged spans and not salvaged. Damage with no intact record on
	// one side has an unknown number of records and adds none.
	WALLostRecords int64
	// WALSalvagedRecords counts records decoded from damaged log records
	// and written to their tenant's _dead_letter stream (stage "wal").
	WALSalvagedRecords int64
	// RecoveryFailures counts streams whose logs could not be recovered
	// at all (for example a segment of another format version): they are
	// left untouched on disk, logged at error level, and a push to such
	// a stream fails with the same error until the log is repaired.
	RecoveryFailures int64
}

// Buffer holds batches between ingest and transform in bounded lock-free
// rings: per stream, Config.Partitions rings, each drained by its own
// goroutine into its own Consumer.
//
// Push may be called from any number of goroutines. Batches pushed by one
// goroutine, one after the other, reach each partition's consumer in push
// order; concurrent pushes are ordered arbitrarily.
//
// A stream lives until Shutdown and costs Config.Partitions goroutines and
// rings of Config.RingSlots slots; the caller bounds the number of streams
// (ingest accepts only valid tenant and stream names).
type Buffer struct {
	cfg         Config
	newConsumer func(Key) Consumer
	firstOffset func(Key) int64
	published   func(ctx context.Context, k Key, from int64) (func(int64) bool, error)
	log         *slog.Logger
	ringCap     int64 // slots per ring after rounding

	// Room limits: all records, and normal (not priority) records.
	maxRecords, maxRecordsNormal int64
	maxBytesNormal               int64

	// hot holds what every Push and every dequeue touches, on one line of
	// its own so a push moves one cache line, not several.
	hot hotCounters

	closing   atomic.Bool   // set once Shutdown begins; read by every Push
	closingCh chan struct{} // closed when Shutdown begins
	idle      chan struct{} // cap 1; signalled when active drops to 0 after closing

	room waitList // Pushes waiting for room

	streams  sync.Map   // streamKey -> *stream; read lock-free on the hot path
	createMu sync.Mutex // serialises stream creation
	nstreams atomic.Int64
	// tenants and counted are guarded by createMu. counted is the sum over
	// tenants of their streams, each capped at Config.MaxTenantStreams:
	// what Config.MaxStreams bounds.
	tenants map[string]*tenantState
	counted int

	runCtx    context.Context // passed to consumers
	cancelRun context.CancelFunc
	stopCh    chan struct{} // closed when consumers are to drain and exit
	live      atomic.Int64  // running consumer goroutines, +1 until stopCh is closed
	allDone   chan struct{} // closed when live reaches 0
	wg        sync.WaitGroup
	started   atomic.Bool
	closeOnce sync.Once
	stopOnce  sync.Once

	rejectedFull  atomic.Int64
	consumeErrors atomic.Int64
	tickErrors    atomic.Int64
	closeErrors   atomic.Int64

	// Recovery's account of damaged logs; see Stats.
	walDamage        atomic.Int64
	walLost          atomic.Int64
	walSalvaged      atomic.Int64
	recoveryFailures atomic.Int64
	// salvaged holds the dead letters recovery decoded from damaged log
	// records until New writes them (pushSalvaged). Only New touches it.
	salvaged []*record.Batch
}

type hotCounters struct {
	_             [cacheLine]byte
	records       atomic.Int64 // reserved + queued
	bytes         atomic.Int64 // reserved + queued
	active        atomic.Int64 // Push calls in progress
	pushedBatches atomic.Int64
	pushedRecords atomic.Int64
	_             [cacheLine - 5*8]byte
}

type streamKey struct{ tenant, stream string }

// tenantState is what the buffer keeps per tenant.
type tenantState struct {
	quota   *producerQuota // the idempotent producers of all its streams
	streams int            // streams created, recovered ones included
}

type stream struct {
	parts []*partition
	prods *producers
}

// New returns a buffer with no streams; streams and their goroutines are
// created by Push, and by Start for the streams whose write-ahead logs
// hold records. Call Shutdown to drain and stop it.
func New(cfg Config, deps Deps) (*Buffer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NewConsumer == nil {
		return nil, errors.New("buffer: Deps.NewConsumer is required")
	}
	if cfg.MaxTenantStreams == 0 {
		cfg.MaxTenantStreams = min(DefaultMaxTenantStreams, cfg.MaxStreams)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Buffer{
		cfg:              cfg,
		newConsumer:      deps.NewConsumer,
		firstOffset:      deps.FirstOffset,
		published:        deps.Published,
		log:              log,
		ringCap:          int64(ringCap(cfg.RingSlots)),
		maxRecords:       int64(cfg.MaxRecords),
		maxRecordsNormal: int64(cfg.MaxRecords) - int64(float64(cfg.MaxRecords)*cfg.PriorityShare),
		maxBytesNormal:   cfg.MaxBytes - int64(float64(cfg.MaxBytes)*cfg.PriorityShare),
		closingCh:        make(chan struct{}),
		idle:             make(chan struct{}, 1),
		room:             waitList{ch: make(chan struct{})},
		runCtx:           ctx,
		cancelRun:        cancel,
		stopCh:           make(chan struct{}),
		allDone:          make(chan struct{}),
		tenants:          map[string]*tenantState{},
	}
	b.live.Store(1)
	return b, nil
}

// Start recovers every stream that has a write-ahead log under
// Config.WALDir: it creates the stream and its goroutines and queues the
// logged records not yet published (docs/durability.md, "Recovery"), so
// that they reach the consumers without waiting for a push. A stream
// pushed to before Start is recovered the same way when Push creates it.
// ctx bounds start-up only. Without WALDir Start does nothing. Start may
// be called once; after an error, call Shutdown.
func (b *Buffer) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("buffer: Start called twice")
	}
	if b.closing.Load() {
		return ErrClosed
	}
	if b.cfg.WALDir == "" {
		return nil
	}
	if err := b.recoverStreams(); err != nil {
		return err
	}
	b.pushSalvaged()
	return nil
}

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
	if batch == nil || len(batch.Records) == 0 {
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
	nrec := int64(len(batch.Records))
	var nbytes int64
	for _, s := range subs {
		nbytes += int64(s.bytes)
	}
	if nrec > int64(b.cfg.MaxRecords) || nbytes > b.cfg.MaxBytes {
		b.rejectedFull.Add(1)
		return fmt.Errorf("%w: batch of %d records and %d bytes can never fit in a buffer of %d records and %d bytes",
			ErrFull, nrec, nbytes, b.cfg.MaxRecords, b.cfg.MaxBytes)
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
	arrange(batch, subs, dest) // all now holds the records in lane order
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
		entry := record.Batch{Tenant: tenant, Stream: name, ProducerID: producer, Sequence: seq,
			Records: all[group[0].start : group[len(group)-1].start+group[len(group)-1].count]}
		p.mu.Lock()
		at, err := p.appendLocked(group, &entry)
		p.mu.Unlock()
		if err != nil {
			// Give back the room of these parts and those after them;
			// parts before them are queued and stay (only with several
			// partitions).
			for _, u := range subs[i:] {
				b.release(s.parts[u.part].lanes[laneIndex(u.prio)], int64(u.count), int64(u.bytes))
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
		r.parts = append(r.parts, receiptPart{p: s.parts[sb.part], pos: pos[i], end: sb.batch.Offset + int64(len(sb.batch.Records))})
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

// stream returns the stream, creating it and starting its consumers on
// first use. Lookups of existing streams take no lock.
func (b *Buffer) stream(tenant, name string) (*stream, error) {
	k := streamKey{tenant, name}
	if v, ok := b.streams.Load(k); ok {
		return v.(*stream), nil
	}
	return b.createStream(k, false)
}

// tenantLocked returns the state of a tenant, creating it. b.createMu
// must be held.
func (b *Buffer) tenantLocked(name string) *tenantState {
	t := b.tenants[name]
	if t == nil {
		t = &tenantState{quota: newProducerQuota(b.cfg.MaxProducers)}
		b.tenants[name] = t
	}
	return t
}

// createStream creates a stream and starts its consumers. A stream that
// recovery brings back (recovering) is created whatever the limits, since
// its log holds acknowledged records, and counts towards its tenant's
// limit; towards Config.MaxStreams a tenant counts with at most
// Config.MaxTenantStreams streams, so that one tenant's recovered streams
// leave room for the others.
func (b *Buffer) createStream(k streamKey, recovering bool) (*stream, error) {
	b.createMu.Lock()
	defer b.createMu.Unlock()
	if v, ok := b.streams.Load(k); ok {
		return v.(*stream), nil
	}
	t := b.tenantLocked(k.tenant)
	if !recovering {
		if t.streams >= b.cfg.MaxTenantStreams {
			return nil, fmt.Errorf("%w: tenant %q has %d streams, its limit (max_tenant_streams); stream %q is not created", ErrTooManyStreams, k.tenant, t.streams, k.stream)
		}
		if b.counted >= b.cfg.MaxStreams {
			return nil, fmt.Errorf("%w: %d streams exist, the limit (max_streams); stream %q of tenant %q is not created", ErrTooManyStreams, b.counted, k.stream, k.tenant)
		}
	}
	s := &stream{parts: make([]*partition, b.cfg.Partitions)}
	var prodPath string
	if b.cfg.WALDir != "" {
		prodPath = filepath.Join(b.cfg.WALDir, "tenant="+k.tenant, "stream="+k.stream, "producers.json")
	}
	s.prods = newProducers(prodPath, t.quota, b.cfg.ProducerTTL)
	if err := s.prods.load(); err != nil {
		s.prods.release()
		return nil, err
	}
	closeAll := func(n int) {
		s.prods.release()
		for _, p := range s.parts[:n] {
			if err := p.cons.Close(b.runCtx); err != nil {
				b.closeErrors.Add(1)
			}
			if p.wal != nil {
				p.wal.Close()
			}
		}
	}
	recovered := make([][]*record.Batch, len(s.parts))
	for i := range s.parts {
		key := Key{Tenant: k.tenant, Stream: k.stream, Partition: int32(i)}
		c := b.newConsumer(key)
		if c == nil {
			closeAll(i)
			return nil, fmt.Errorf("buffer: NewConsumer returned nil for %s/%s partition %d", k.tenant, k.stream, i)
		}
		p := newPartition(key, c, b.cfg.RingSlots)
		p.prods = s.prods
		s.parts[i] = p
		if b.firstOffset != nil {
			p.next = b.firstOffset(key)
		}
		start := p.next
		if b.cfg.WALDir != "" {
			batches, err := b.openWAL(p)
			if err != nil {
				closeAll(i + 1)
				return nil, err
			}
			recovered[i] = batches
			if len(batches) > 0 {
				start = min(start, batches[0].Offset)
				n := 0
				for _, rb := range batches {
					n += len(rb.Records)
				}
				b.log.Info("buffer: replaying write-ahead log", "tenant", k.tenant, "stream", k.stream, "partition", i, "records", n, "from_offset", batches[0].Offset)
			}
		}
		// Nothing below start can be unpublished: the commit watermark
		// starts there.
		p.committed.Store(start)
	}
	// Start the goroutines only once every consumer exists. Shutdown waits
	// for this Push to leave before it stops consumers, so these Adds
	// happen before it waits.
	for _, p := range s.parts {
		b.live.Add(1)
		b.wg.Add(1)
		go b.run(p)
	}
	for i, p := range s.parts {
		if err := b.enqueueRecovered(s, p, recovered[i]); err != nil {
			return nil, err
		}
	}
	b.streams.Store(k, s)
	b.nstreams.Add(1)
	if t.streams++; t.streams <= b.cfg.MaxTenantStreams {
		b.counted++
	}
	return s, nil
}

// Shutdown stops the buffer: new Pushes, and Pushes waiting for room, fail
// with ErrClosed; Pushes that already reserved room finish queueing; then
// every partition's consumer is given every queued batch, its Close is
// called, and its goroutine exits.
//
// If ctx is done first, Shutdown cancels the context the consumers were
// given and returns an error wrapping ctx's error; the goroutines then exit
// as soon as their consumers return, and a later Shutdown call waits for
// them. Shutdown is safe to call more than once, concurrently, and on a
// buffer that was never pushed to; once the buffer is stopped it returns
// nil.
func (b *Buffer) Shutdown(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		close(b.closingCh)
	})
	for b.hot.active.Load() != 0 {
		select {
		case <-b.idle:
		case <-ctx.Done():
			return b.abandon(ctx)
		}
	}
	// Pass the wake-up on to any concurrent Shutdown.
	select {
	case b.idle <- struct{}{}:
	default:
	}
	// No Push is in flight and none can start: the rings hold all there
	// will ever be.
	b.stopOnce.Do(func() {
		close(b.stopCh)
		b.exited()
	})
	select {
	case <-b.allDone:
	case <-ctx.Done():
		return b.abandon(ctx)
	}
	b.wg.Wait()
	b.cancelRun()
	return nil
}

func (b *Buffer) abandon(ctx context.Context) error {
	b.cancelRun()
	return fmt.Errorf("buffer: shutdown: drain not finished: %w", ctx.Err())
}

// exited counts down live and closes allDone at zero.
func (b *Buffer) exited() {
	if b.live.Add(-1) == 0 {
		close(b.allDone)
	}
}

// Stats returns a snapshot of the buffer's state and counters. It is safe
// to call concurrently with everything else.
func (b *Buffer) Stats() Stats {
	var uncommitted, replaying int64
	b.streams.Range(func(_, v any) bool {
		for _, p := range v.(*stream).parts {
			replaying += p.replaying.Load()
			p.mu.Lock()
			next := p.next
			p.mu.Unlock()
			uncommitted += max(0, next-p.committed.Load())
		}
		return true
	})
	return Stats{
		Uncommitted:   uncommitted,
		Replaying:     replaying,
		QueuedRecords: b.hot.records.Load(),
		QueuedBytes:   b.hot.bytes.Load(),
		Streams:       int(b.nstreams.Load()),
		PushedBatches: b.hot.pushedBatches.Load(),
		PushedRecords: b.hot.pushedRecords.Load(),
		RejectedFull:  b.rejectedFull.Load(),
		ConsumeErrors: b.consumeErrors.Load(),
		TickErrors:    b.tickErrors.Load(),
		CloseErrors:   b.closeErrors.Load(),

		WALDamage:          b.walDamage.Load(),
		WALLostRecords:     b.walLost.Load(),
		WALSalvagedRecords: b.walSalvaged.Load(),
		RecoveryFailures:   b.recoveryFailures.Load(),
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

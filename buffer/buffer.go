package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// ErrTooLarge means the batch can never fit, however much room frees
	// up: a retry fails again. It comes with ErrFull.
	ErrTooLarge = errors.New("batch larger than the buffer")
	// ErrClosed means Shutdown has begun.
	ErrClosed = errors.New("buffer closed")
	// ErrTooManyStreams means the batch names a new stream and
	// Config.MaxStreams streams exist already.
	ErrTooManyStreams = errors.New("too many streams")
	// ErrStreamUnavailable means the stream's write-ahead log could not
	// be opened or recovered (docs/durability.md, "A damaged log"): the
	// stream refuses pushes until an operator mends it. The error's
	// message names the stream, not the server's files; the cause is
	// in the error chain and in the server's log.
	ErrStreamUnavailable = errors.New("stream unavailable")
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
	// NewStream is called once per stream, after it is created by a push
	// or recovered by Start and before any push to it returns; pushes to
	// the stream wait for it. It runs outside the buffer's locks, so new
	// streams pushed to at once call it concurrently (a caller may
	// coalesce their work, such as creating their query views in one
	// change). Optional.
	NewStream func(tenant, stream string)
	// Published tells recovery which offsets, from `from` on, of a
	// partition are already in published files, so that replaying the
	// write-ahead log queues each record exactly once. Optional; nil means
	// none are (every logged record is replayed).
	Published func(ctx context.Context, k Key, from int64) (contains func(offset int64) bool, err error)
	// Logger receives consumer errors, throttled. Optional; nil discards.
	Logger *slog.Logger
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
	newStream   func(tenant, stream string)
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
	// producersDamaged counts producer tables set aside because they did
	// not parse (createStream).
	producersDamaged atomic.Int64
	// unavailableLogged is when a push to each stream whose log cannot be
	// opened last logged why (unavailable). createMu guards it.
	unavailableLogged map[streamKey]time.Time
	// removeHook, if set, deletes log segments instead of Log.Remove
	// (tests).
	removeHook func(l *wal.Log, before uint64) error
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
		newStream:        deps.NewStream,
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

package tail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

var (
	// ErrTooManySubscribers is returned by Hub.Subscribe when
	// Config.MaxSubscribers subscriptions, or
	// Config.MaxSubscribersPerTenant of the filter's tenant, are open.
	ErrTooManySubscribers = errors.New("tail: too many subscribers")
	// ErrClosed is returned by Subscription.Next once the subscription
	// is closed.
	ErrClosed = errors.New("tail: subscription closed")
	// ErrIdle is returned by Subscription.Next once the hub has closed
	// the subscription for not reading for Config.IdleTimeout. It
	// matches ErrClosed with errors.Is.
	ErrIdle = fmt.Errorf("%w: the viewer did not read for the idle timeout", ErrClosed)
)

// maxNextItems bounds the items one Subscription.Next returns, unless a
// single queued batch holds more.
const maxNextItems = 1024

// Config sets the bounds of a Hub.
type Config struct {
	// QueueBatches bounds each subscription's queue, in published
	// batches that had at least one matching record. Records of a batch
	// that finds the queue full are dropped and counted as missed.
	QueueBatches int
	// QueueBytes bounds each subscription's queue in accounted record
	// bytes (record.Record.Size), the same way. A batch larger than the
	// bound still fits into an empty queue.
	QueueBytes int
	// TotalBytes bounds the accounted record bytes queued across all
	// subscriptions. When a batch would pass it, the subscriptions that
	// hold the most bytes drop their oldest queued batches until it
	// fits, and count those records as missed; when the subscription
	// offered the batch is itself the one holding the most, the new
	// batch is dropped and counted instead. So viewers that do not read
	// give up their records first, and one that keeps up still receives
	// batches. A batch larger than TotalBytes is missed by every
	// subscription it matches.
	TotalBytes int
	// MaxSubscribers bounds the open subscriptions.
	MaxSubscribers int
	// MaxSubscribersPerTenant bounds the open subscriptions whose
	// Filter.Tenant is the same. It is capped by MaxSubscribers.
	MaxSubscribersPerTenant int
	// IdleTimeout is how long a subscription may go without reading:
	// one that is not waiting in Next and whose last Next returned (or,
	// if it never called Next, that was subscribed) IdleTimeout ago or
	// earlier is closed by the next Publish or Subscribe, which frees
	// its slot and its queue; its Next returns ErrIdle.
	IdleTimeout time.Duration
}

// DefaultConfig returns bounds for a handful of interactive viewers:
// 256 batches and 16 MiB a viewer, 64 MiB in all, 64 viewers (of any
// one tenant too), closed after 30 s without reading.
func DefaultConfig() Config {
	return Config{
		QueueBatches:            256,
		QueueBytes:              16 << 20,
		TotalBytes:              64 << 20,
		MaxSubscribers:          64,
		MaxSubscribersPerTenant: 64,
		IdleTimeout:             30 * time.Second,
	}
}

// Filter selects records. A record matches when it matches every set
// field.
type Filter struct {
	Tenant      string   // the batch's tenant equals it; "" means any
	Streams     []string // stream is one of these; empty means all
	Service     string   // service.name resource attribute equals it; "" means any
	MinSeverity int32    // severity number is at least this; 0 means all
	Contains    string   // body contains it; "" means any
}

// Match reports whether r, a record of stream, passes f.
func (f *Filter) Match(stream string, r *record.Record) bool {
	if len(f.Streams) > 0 && !slices.Contains(f.Streams, stream) {
		return false
	}
	if f.MinSeverity > 0 && r.SeverityNumber < f.MinSeverity {
		return false
	}
	if f.Service != "" && r.ServiceName() != f.Service {
		return false
	}
	return f.Contains == "" || strings.Contains(r.Body, f.Contains)
}

// Item is one published record with its place in its stream.
type Item struct {
	Tenant    string
	Stream    string
	Partition int32
	Offset    int64
	// Record is a copy of the published record. It shares its strings
	// and attribute slices with the published batch: treat them as
	// read-only.
	Record record.Record
}

// Stats is a snapshot of a Hub's state.
type Stats struct {
	Subscribers int // open subscriptions
	QueuedBytes int // accounted record bytes queued across them
}

// Hub fans published batches out to subscriptions. Its methods are safe
// to call concurrently. A Hub starts no goroutines and needs no closing.
type Hub struct {
	cfg Config
	// mu guards changes to subs, total, and the queue and state of
	// every subscription. It is held only to move filtered items in and
	// out of queues, never while filtering or waiting.
	mu    sync.Mutex
	subs  atomic.Pointer[[]*Subscription] // copy on write under mu; read by Publish without mu
	total int                             // sum of the subscriptions' bytes, at most cfg.TotalBytes
}

// NewHub returns a Hub with no subscriptions. Non-positive bounds in cfg
// are replaced by DefaultConfig's; MaxSubscribersPerTenant is capped by
// MaxSubscribers.
func NewHub(cfg Config) *Hub {
	def := DefaultConfig()
	if cfg.QueueBatches < 1 {
		cfg.QueueBatches = def.QueueBatches
	}
	if cfg.QueueBytes < 1 {
		cfg.QueueBytes = def.QueueBytes
	}
	if cfg.TotalBytes < 1 {
		cfg.TotalBytes = def.TotalBytes
	}
	if cfg.MaxSubscribers < 1 {
		cfg.MaxSubscribers = def.MaxSubscribers
	}
	if cfg.MaxSubscribersPerTenant < 1 || cfg.MaxSubscribersPerTenant > cfg.MaxSubscribers {
		cfg.MaxSubscribersPerTenant = cfg.MaxSubscribers
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = def.IdleTimeout
	}
	h := &Hub{cfg: cfg}
	h.subs.Store(new([]*Subscription))
	return h
}

// Config returns the hub's bounds, defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Stats returns the open subscriptions and the bytes queued for them.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Subscribers: len(*h.subs.Load()), QueuedBytes: h.total}
}

// offer is the matching part of a published batch for one subscription.
type offer struct {
	s     *Subscription
	items []Item
	size  int
}

// Subscribed reports whether any subscription is open: a publisher of
// columnar batches turns them into records (record.Batch.Materialize)
// only then. It costs one atomic load.
func (h *Hub) Subscribed() bool { return len(*h.subs.Load()) > 0 }

// Publish offers the records of b to every subscription. It never blocks
// on a subscriber: records that do not fit in a subscription's queue, or
// in Config.TotalBytes, are counted as missed. It closes subscriptions
// idle for Config.IdleTimeout. With no subscriptions it costs one atomic
// load.
//
// Publish does not retain b, but the items it queues copy the Record
// values of b, sharing their strings and attribute slices: the caller
// must not modify those after Publish. b.Partition and b.Offset must be
// set (the offset of b.Records[i] is b.Offset+i). A columnar batch
// (b.Cols set) is not published: the caller materializes it first.
func (h *Hub) Publish(b *record.Batch) {
	subs := *h.subs.Load()
	if len(subs) == 0 {
		return
	}
	var offers []offer
	for _, s := range subs {
		if items, size := s.match(b); len(items) > 0 {
			offers = append(offers, offer{s: s, items: items, size: size})
		}
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, o := range offers {
		h.enqueueLocked(o.s, o.items, o.size)
	}
	h.closeIdleLocked(now)
}

// Subscribe opens a subscription that receives the matching records of
// every batch published from now on, until it is closed. The caller must
// Close it. It first closes idle subscriptions, then fails with
// ErrTooManySubscribers past Config.MaxSubscribers, or past
// Config.MaxSubscribersPerTenant subscriptions with f.Tenant.
func (h *Hub) Subscribe(f Filter) (*Subscription, error) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeIdleLocked(now)
	old := *h.subs.Load()
	if len(old) >= h.cfg.MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	n := 0
	for _, s := range old {
		if s.filter.Tenant == f.Tenant {
			n++
		}
	}
	if n >= h.cfg.MaxSubscribersPerTenant {
		return nil, fmt.Errorf("%w of tenant %q", ErrTooManySubscribers, f.Tenant)
	}
	f.Streams = slices.Clone(f.Streams)
	s := &Subscription{
		hub:      h,
		filter:   f,
		ready:    make(chan struct{}, 1),
		done:     make(chan struct{}),
		lastRead: now,
	}
	subs := append(slices.Clip(old), s)
	h.subs.Store(&subs)
	return s, nil
}

// enqueueLocked queues items, of accounted size bytes, for s, or counts
// them as missed, making room in TotalBytes as Config documents.
func (h *Hub) enqueueLocked(s *Subscription, items []Item, size int) {
	if s.closed {
		return
	}
	defer s.wake()
	if len(s.queue) > 0 && (len(s.queue) >= h.cfg.QueueBatches || s.bytes+size > h.cfg.QueueBytes) {
		s.missed += uint64(len(items))
		return
	}
	if size > h.cfg.TotalBytes {
		s.missed += uint64(len(items))
		return
	}
	for h.total+size > h.cfg.TotalBytes {
		v := h.largestLocked(s)
		if v == s {
			s.missed += uint64(len(items))
			return
		}
		h.dropOldestLocked(v)
	}
	s.queue = append(s.queue, items)
	s.sizes = append(s.sizes, size)
	s.bytes += size
	h.total += size
}

// largestLocked returns the open subscription holding the most bytes,
// s when none holds more than s.
func (h *Hub) largestLocked(s *Subscription) *Subscription {
	best := s
	for _, v := range *h.subs.Load() {
		if v.bytes > best.bytes {
			best = v
		}
	}
	return best
}

// dropOldestLocked drops v's oldest queued batch, counting its records
// as missed. v's queue must not be empty.
func (h *Hub) dropOldestLocked(v *Subscription) {
	v.missed += uint64(len(v.queue[0]))
	v.bytes -= v.sizes[0]
	h.total -= v.sizes[0]
	v.queue[0] = nil
	v.queue, v.sizes = v.queue[1:], v.sizes[1:]
	v.wake()
}

// closeIdleLocked closes the subscriptions idle at now.
func (h *Hub) closeIdleLocked(now time.Time) {
	for _, s := range *h.subs.Load() {
		if !s.reading && now.Sub(s.lastRead) >= h.cfg.IdleTimeout {
			h.closeLocked(s, ErrIdle)
		}
	}
}

// closeLocked closes s, if open, with the error its Next returns from
// now on, and frees its queue.
func (h *Hub) closeLocked(s *Subscription, err error) {
	if s.closed {
		return
	}
	s.closed, s.err = true, err
	h.total -= s.bytes
	s.queue, s.sizes, s.bytes = nil, nil, 0
	old := *h.subs.Load()
	if i := slices.Index(old, s); i >= 0 {
		subs := slices.Delete(slices.Clone(old), i, i+1)
		h.subs.Store(&subs)
	}
	close(s.done)
}

// Subscription is one viewer's filtered view of the published records.
// Next and Close may be called concurrently with each other and with
// Publish; Next must not be called from two goroutines at once.
type Subscription struct {
	hub    *Hub
	filter Filter // read-only after Subscribe

	ready chan struct{} // holds a token when queue or missed may be non-empty
	done  chan struct{} // closed when the subscription closes

	// Guarded by hub.mu.
	queue    [][]Item  // at most QueueBatches chunks and QueueBytes bytes (or one chunk), oldest first
	sizes    []int     // accounted bytes of each queued chunk
	bytes    int       // sum of sizes
	missed   uint64    // matching records dropped since the last Next
	closed   bool      // set once, with err
	err      error     // ErrClosed or ErrIdle
	reading  bool      // a Next is running
	lastRead time.Time // when the last Next returned, or Subscribe
}

// match returns the records of b that pass the filter, as items, and
// their accounted size.
func (s *Subscription) match(b *record.Batch) (items []Item, size int) {
	if s.filter.Tenant != "" && b.Tenant != s.filter.Tenant {
		return nil, 0
	}
	for i := range b.Records {
		r := &b.Records[i]
		if !s.filter.Match(b.Stream, r) {
			continue
		}
		items = append(items, Item{Tenant: b.Tenant, Stream: b.Stream, Partition: b.Partition, Offset: b.Offset + int64(i), Record: *r})
		size += r.Size()
	}
	return items, size
}

// wake leaves a token for Next, unless one is there.
func (s *Subscription) wake() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Next waits until records are queued or some were missed, and returns
// the oldest queued records (whole published batches, about 1024 records
// at most) with the number of matching records dropped since the previous
// call. It returns ctx's error when ctx is done first, ErrIdle once the
// hub closed the subscription for not reading, and ErrClosed once it is
// closed otherwise. While Next waits the subscription is not idle.
func (s *Subscription) Next(ctx context.Context) (items []Item, missed uint64, err error) {
	h := s.hub
	for {
		h.mu.Lock()
		if s.closed {
			err := s.err
			h.mu.Unlock()
			return nil, 0, err
		}
		s.reading = true
		n := 0
		for n < len(s.queue) && (n == 0 || len(items)+len(s.queue[n]) <= maxNextItems) {
			items = append(items, s.queue[n]...)
			n++
		}
		for _, sz := range s.sizes[:n] {
			s.bytes -= sz
			h.total -= sz
		}
		clear(s.queue[:n])
		s.queue = s.queue[n:]
		s.sizes = s.sizes[n:]
		if len(s.queue) == 0 {
			s.queue, s.sizes = nil, nil // let the backing arrays go
		}
		missed, s.missed = s.missed, 0
		more := len(s.queue) > 0
		done := len(items) > 0 || missed > 0
		if done {
			s.reading, s.lastRead = false, time.Now()
		}
		h.mu.Unlock()
		if more {
			s.wake()
		}
		if done {
			return items, missed, nil
		}
		select {
		case <-s.ready:
		case <-s.done:
		case <-ctx.Done():
			h.mu.Lock()
			s.reading, s.lastRead = false, time.Now()
			h.mu.Unlock()
			return nil, 0, ctx.Err()
		}
	}
}

// Close ends the subscription: it stops receiving records, a blocked Next
// returns ErrClosed and its queued records are dropped. Close is
// idempotent.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.closeLocked(s, ErrClosed)
}

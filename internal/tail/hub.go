package tail

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/weirlabs/weir/internal/record"
)

var (
	// ErrTooManySubscribers is returned by Hub.Subscribe when
	// Config.MaxSubscribers subscriptions are open.
	ErrTooManySubscribers = errors.New("tail: too many subscribers")
	// ErrClosed is returned by Subscription.Next once the subscription
	// is closed.
	ErrClosed = errors.New("tail: subscription closed")
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
	// MaxSubscribers bounds the open subscriptions.
	MaxSubscribers int
}

// DefaultConfig returns bounds for a handful of interactive viewers.
func DefaultConfig() Config {
	return Config{QueueBatches: 256, QueueBytes: 16 << 20, MaxSubscribers: 64}
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

// Hub fans published batches out to subscriptions. Its methods are safe
// to call concurrently. A Hub starts no goroutines and needs no closing.
type Hub struct {
	cfg  Config
	mu   sync.Mutex                      // serialises changes to subs
	subs atomic.Pointer[[]*Subscription] // copy on write; read by Publish without mu
}

// NewHub returns a Hub with no subscriptions. Non-positive bounds in cfg
// are replaced by DefaultConfig's.
func NewHub(cfg Config) *Hub {
	def := DefaultConfig()
	if cfg.QueueBatches < 1 {
		cfg.QueueBatches = def.QueueBatches
	}
	if cfg.MaxSubscribers < 1 {
		cfg.MaxSubscribers = def.MaxSubscribers
	}
	if cfg.QueueBytes < 1 {
		cfg.QueueBytes = def.QueueBytes
	}
	h := &Hub{cfg: cfg}
	h.subs.Store(new([]*Subscription))
	return h
}

// Publish offers the records of b to every subscription. It never blocks
// on a subscriber: records that do not fit in a subscription's queue are
// counted as its missed records. With no subscriptions it costs one
// atomic load.
//
// Publish does not retain b, but the items it queues copy the Record
// values of b, sharing their strings and attribute slices: the caller
// must not modify those after Publish. b.Partition and b.Offset must be
// set (the offset of b.Records[i] is b.Offset+i).
func (h *Hub) Publish(b *record.Batch) {
	subs := *h.subs.Load()
	if len(subs) == 0 {
		return
	}
	for _, s := range subs {
		s.offer(b)
	}
}

// Subscribe opens a subscription that receives the matching records of
// every batch published from now on, until it is closed. The caller must
// Close it. It fails with ErrTooManySubscribers past
// Config.MaxSubscribers.
func (h *Hub) Subscribe(f Filter) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.subs.Load()
	if len(old) >= h.cfg.MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	f.Streams = slices.Clone(f.Streams)
	s := &Subscription{
		hub:    h,
		filter: f,
		limit:  h.cfg.QueueBatches,
		maxB:   h.cfg.QueueBytes,
		ready:  make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	subs := append(slices.Clip(old), s)
	h.subs.Store(&subs)
	return s, nil
}

func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.subs.Load()
	i := slices.Index(old, s)
	if i < 0 {
		return
	}
	subs := slices.Delete(slices.Clone(old), i, i+1)
	h.subs.Store(&subs)
}

// Subscription is one viewer's filtered view of the published records.
// Next and Close may be called concurrently with each other and with
// Publish; Next must not be called from two goroutines at once.
type Subscription struct {
	hub    *Hub
	filter Filter
	limit  int
	maxB   int

	ready     chan struct{} // holds a token when queue or missed may be non-empty
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu     sync.Mutex
	queue  [][]Item // at most limit chunks and maxB bytes, oldest first
	sizes  []int    // accounted bytes of each queued chunk
	bytes  int      // sum of sizes
	missed uint64   // matching records dropped since the last Next
	closed bool
}

// offer queues the records of b that match, or counts them as missed when
// the queue is full.
func (s *Subscription) offer(b *record.Batch) {
	if s.filter.Tenant != "" && b.Tenant != s.filter.Tenant {
		return
	}
	var chunk []Item
	size := 0
	for i := range b.Records {
		r := &b.Records[i]
		if !s.filter.Match(b.Stream, r) {
			continue
		}
		chunk = append(chunk, Item{Tenant: b.Tenant, Stream: b.Stream, Partition: b.Partition, Offset: b.Offset + int64(i), Record: *r})
		size += r.Size()
	}
	if len(chunk) == 0 {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.queue) == 0 || (len(s.queue) < s.limit && s.bytes+size <= s.maxB) {
		s.queue = append(s.queue, chunk)
		s.sizes = append(s.sizes, size)
		s.bytes += size
	} else {
		s.missed += uint64(len(chunk))
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Next waits until records are queued or some were missed, and returns
// the oldest queued records (whole published batches, about 1024 records
// at most) with the number of matching records dropped since the previous
// call. It returns ctx's error when ctx is done first, and ErrClosed once
// the subscription is closed.
func (s *Subscription) Next(ctx context.Context) (items []Item, missed uint64, err error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, 0, ErrClosed
		}
		n := 0
		for n < len(s.queue) && (n == 0 || len(items)+len(s.queue[n]) <= maxNextItems) {
			items = append(items, s.queue[n]...)
			n++
		}
		for _, sz := range s.sizes[:n] {
			s.bytes -= sz
		}
		clear(s.queue[:n])
		s.queue = s.queue[n:]
		s.sizes = s.sizes[n:]
		if len(s.queue) == 0 {
			s.queue, s.sizes = nil, nil // let the backing arrays go
		}
		missed, s.missed = s.missed, 0
		more := len(s.queue) > 0
		s.mu.Unlock()
		if more {
			select {
			case s.ready <- struct{}{}:
			default:
			}
		}
		if len(items) > 0 || missed > 0 {
			return items, missed, nil
		}
		select {
		case <-s.ready:
		case <-s.done:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// Close ends the subscription: it stops receiving records, a blocked Next
// returns ErrClosed and its queued records are dropped. Close is
// idempotent.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.hub.remove(s)
		s.mu.Lock()
		s.closed = true
		s.queue = nil
		s.mu.Unlock()
		close(s.done)
	})
}

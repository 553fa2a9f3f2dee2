package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/aside"
	"github.com/weirlabs/weir/internal/durable"
)

// Errors of idempotent producers.
var (
	// ErrDuplicate means the batch's (ProducerID, Sequence) was accepted
	// before: nothing was written again, and the level asked of this push
	// was confirmed for the earlier one. Callers treat it as success.
	ErrDuplicate = errors.New("duplicate batch of an idempotent producer")
	// ErrSequence means the batch's sequence does not follow the
	// producer's last accepted one, or is 0.
	ErrSequence = errors.New("producer sequence out of order")
	// ErrInFlight means a batch with the same producer and sequence is
	// being pushed right now; retry once it is acknowledged.
	ErrInFlight = errors.New("the same batch of this producer is in flight")
	// ErrTooManyProducers means the batch names an idempotent producer
	// its tenant does not know and the tenant already has
	// Config.MaxProducers producers, none idle longer than
	// Config.ProducerTTL. Errors that match it also match ErrFull: the
	// producer may retry later, or push without a producer id.
	ErrTooManyProducers = errors.New("too many idempotent producers")
)

// producerQuota bounds the idempotent producers of one tenant, over all
// its streams. Lock order: a table's mu is never held while taking mu.
type producerQuota struct {
	max int64
	n   atomic.Int64 // producers remembered over the tenant's tables

	mu     sync.Mutex
	tables []*producers
	// nextExpiry is no later than the time the first remembered producer
	// becomes idle for longer than the TTL: until then reclaim finds
	// nothing and is skipped.
	nextExpiry time.Time
}

func newProducerQuota(max int) *producerQuota { return &producerQuota{max: int64(max)} }

// take counts one more producer unless the tenant has max already.
func (q *producerQuota) take() bool {
	for {
		n := q.n.Load()
		if n >= q.max {
			return false
		}
		if q.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// reclaim forgets, in every table of the tenant, the producers idle longer
// than the TTL. It reports whether it looked (it skips the look while no
// producer can have expired).
func (q *producerQuota) reclaim(now time.Time) {
	q.mu.Lock()
	if now.Before(q.nextExpiry) {
		q.mu.Unlock()
		return
	}
	tables := append([]*producers(nil), q.tables...)
	q.mu.Unlock()
	next := time.Time{}
	for _, t := range tables {
		t.mu.Lock()
		if e := t.expireLocked(now); !e.IsZero() && (next.IsZero() || e.Before(next)) {
			next = e
		}
		t.mu.Unlock()
	}
	q.mu.Lock()
	q.nextExpiry = next
	q.mu.Unlock()
}

// producerState is what the buffer remembers of an idempotent producer.
type producerState struct {
	Last uint64    `json:"last"` // highest sequence accepted
	Seen time.Time `json:"seen"` // last push
	// Gap lets the next batch skip sequence numbers: recovery found a
	// damaged log record whose producer is unknown, so this producer's
	// last accepted batch may be lost.
	Gap     bool   `json:"gap,omitempty"`
	pending uint64 // sequence being pushed, 0 if none
}

// producers is a stream's table of idempotent producers. It survives
// restarts and crashes: every logged batch carries its producer and
// sequence, and before log segments are deleted the table is saved next
// to the stream's logs (producers.json), so recovery loads the file and
// then replays the logs.
//
// A producer is remembered until it has been idle for longer than the
// TTL, and never forgotten earlier: a producer that could still retry
// keeps its state. The tenant's quota bounds how many are remembered; at
// the bound a new producer is refused (ErrTooManyProducers), not made
// room for.
type producers struct {
	mu    sync.Mutex
	path  string // "" without a write-ahead log
	ttl   time.Duration
	quota *producerQuota
	m     map[string]*producerState
	// saveMu orders saves: the partitions of the stream save the one
	// table, and an older snapshot must not replace a newer one.
	saveMu sync.Mutex
	// saved is the table as the file holds it: save writes nothing when
	// the table is unchanged, so that removing log segments needs no disk
	// space then (a full disk frees up only once they are removed).
	// Guarded by saveMu once the table is loaded.
	saved []byte
}

func newProducers(path string, quota *producerQuota, ttl time.Duration) *producers {
	ps := &producers{path: path, quota: quota, ttl: ttl, m: map[string]*producerState{}}
	quota.mu.Lock()
	quota.tables = append(quota.tables, ps)
	quota.mu.Unlock()
	return ps
}

// release takes the table out of its tenant's quota, giving back the
// places of its producers; for a stream that could not be created.
func (ps *producers) release() {
	q := ps.quota
	q.mu.Lock()
	for i, t := range q.tables {
		if t == ps {
			q.tables = append(q.tables[:i], q.tables[i+1:]...)
			break
		}
	}
	q.mu.Unlock()
	ps.mu.Lock()
	q.n.Add(-int64(len(ps.m)))
	clear(ps.m)
	ps.mu.Unlock()
}

// begin checks seq against the producer's state and marks it in flight.
// dup reports a batch accepted before. With gaps, seq may skip numbers. A
// producer the table does not know takes a place in the tenant's quota,
// or is refused with an error wrapping ErrTooManyProducers and ErrFull.
func (ps *producers) begin(id string, seq uint64, gaps bool, now time.Time) (dup bool, err error) {
	if seq == 0 {
		return false, fmt.Errorf("%w: sequence numbers start at 1", ErrSequence)
	}
	for reclaimed := false; ; reclaimed = true {
		ps.mu.Lock()
		st := ps.m[id]
		if st != nil && now.Sub(st.Seen) > ps.ttl && st.pending == 0 {
			ps.deleteLocked(id)
			st = nil
		}
		if st == nil {
			if !ps.quota.take() {
				ps.mu.Unlock()
				if reclaimed {
					return false, fmt.Errorf("%w: %w: the tenant has %d idempotent producers (max_producers), none idle for longer than %s (producer_ttl); producer %q is not accepted",
						ErrTooManyProducers, ErrFull, ps.quota.max, ps.ttl, id)
				}
				ps.quota.reclaim(now)
				continue
			}
			st = &producerState{pending: seq, Seen: now}
			ps.m[id] = st
			ps.mu.Unlock()
			return false, nil
		}
		dup, err := ps.checkLocked(st, id, seq, gaps, now)
		ps.mu.Unlock()
		return dup, err
	}
}

// checkLocked is begin for a producer the table knows.
func (ps *producers) checkLocked(st *producerState, id string, seq uint64, gaps bool, now time.Time) (dup bool, err error) {
	switch {
	case st.pending != 0:
		if seq == st.pending {
			return false, fmt.Errorf("%w: producer %q sequence %d", ErrInFlight, id, seq)
		}
		return false, fmt.Errorf("%w: producer %q has sequence %d in flight, got %d; send one batch at a time", ErrSequence, id, st.pending, seq)
	case seq <= st.Last:
		st.Seen = now
		return true, nil
	case seq != st.Last+1 && !gaps && !st.Gap:
		return false, fmt.Errorf("%w: producer %q: got sequence %d, want %d", ErrSequence, id, seq, st.Last+1)
	}
	st.pending = seq
	st.Seen = now
	return false, nil
}

// deleteLocked forgets a producer and gives back its place in the quota.
func (ps *producers) deleteLocked(id string) {
	if _, ok := ps.m[id]; ok {
		delete(ps.m, id)
		ps.quota.n.Add(-1)
	}
}

// expireLocked forgets the producers idle longer than the TTL and returns
// when the first of those left will be, or the zero time if none is left.
func (ps *producers) expireLocked(now time.Time) time.Time {
	var next time.Time
	for id, st := range ps.m {
		if st.pending != 0 {
			continue
		}
		if now.Sub(st.Seen) > ps.ttl {
			ps.deleteLocked(id)
		} else if e := st.Seen.Add(ps.ttl); next.IsZero() || e.Before(next) {
			next = e
		}
	}
	return next
}

// end finishes a push begun with begin: accepted says whether the batch
// was queued (and so will be written).
func (ps *producers) end(id string, seq uint64, accepted bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := ps.m[id]
	if st == nil || st.pending != seq {
		return
	}
	st.pending = 0
	switch {
	case accepted:
		st.Last, st.Gap = seq, false
	case st.Last == 0:
		// A new producer whose first batch failed: nothing to remember.
		ps.deleteLocked(id)
	}
}

// allowGap lets every producer known now skip sequence numbers once (see
// producerState.Gap).
func (ps *producers) allowGap() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, st := range ps.m {
		st.Gap = true
	}
}

// observe records a batch found in the log at recovery.
func (ps *producers) observe(id string, seq uint64, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := ps.m[id]
	if st == nil {
		// A producer found in the log may retry: it is remembered even
		// past the quota.
		st = &producerState{Seen: now}
		ps.m[id] = st
		ps.quota.n.Add(1)
	}
	st.Last = max(st.Last, seq)
}

// damagedProducersError is load's error for a saved table that does not
// parse, which it moved aside (to moved, beside it): the stream goes on
// with the producers its log shows.
type damagedProducersError struct {
	moved string
	err   error
}

func (e *damagedProducersError) Error() string {
	return fmt.Sprintf("buffer: the producers table does not parse (%v); moved to %s", e.err, e.moved)
}

// setAside moves the damaged saved table out of the way, to
// producers.json.damaged (aside.Move), so that the next save does not
// hide it, and returns a *damagedProducersError; the table starts empty.
func (ps *producers) setAside(parseErr error) error {
	moved, err := aside.Move(ps.path, ps.path+".damaged")
	if err != nil {
		return fmt.Errorf("buffer: the producers table does not parse (%v), and: %w", parseErr, err)
	}
	ps.saved = []byte("{}")
	return &damagedProducersError{moved: moved, err: parseErr}
}

// load reads the saved table, if any. A table that does not parse is set
// aside (setAside).
func (ps *producers) load() error {
	if ps.path == "" {
		return nil
	}
	raw, err := os.ReadFile(ps.path)
	if errors.Is(err, os.ErrNotExist) {
		ps.saved = []byte("{}") // as good as an empty table
		return nil
	}
	if err != nil {
		return fmt.Errorf("buffer: read producers: %w", err)
	}
	m := map[string]*producerState{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return ps.setAside(err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.saved = raw
	for id, st := range m {
		cur := ps.m[id]
		if cur == nil {
			ps.quota.n.Add(1) // remembered even past the quota, like observe
		}
		if cur == nil || cur.Last < st.Last {
			ps.m[id] = st
		}
	}
	return nil
}

// save writes the table atomically (temporary file, fsync, rename,
// directory fsync), dropping producers idle longer than the TTL. It
// writes nothing when the file already holds the table. It is safe for
// concurrent use.
func (ps *producers) save(now time.Time) error {
	if ps.path == "" {
		return nil
	}
	ps.saveMu.Lock()
	defer ps.saveMu.Unlock()
	ps.mu.Lock()
	ps.expireLocked(now)
	raw, err := json.Marshal(ps.m)
	ps.mu.Unlock()
	if err != nil || bytes.Equal(raw, ps.saved) {
		return err
	}
	dir := filepath.Dir(ps.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := durable.WriteFile(ps.path, raw); err != nil {
		return err
	}
	ps.saved = raw
	return nil
}

package buffer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
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
)

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
type producers struct {
	mu   sync.Mutex
	path string // "" without a write-ahead log
	max  int
	ttl  time.Duration
	m    map[string]*producerState
}

func newProducers(path string, max int, ttl time.Duration) *producers {
	return &producers{path: path, max: max, ttl: ttl, m: map[string]*producerState{}}
}

// begin checks seq against the producer's state and marks it in flight.
// dup reports a batch accepted before. With gaps, seq may skip numbers.
func (ps *producers) begin(id string, seq uint64, gaps bool, now time.Time) (dup bool, err error) {
	if seq == 0 {
		return false, fmt.Errorf("%w: sequence numbers start at 1", ErrSequence)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := ps.m[id]
	if st != nil && now.Sub(st.Seen) > ps.ttl && st.pending == 0 {
		delete(ps.m, id)
		st = nil
	}
	switch {
	case st == nil:
		if len(ps.m) >= ps.max {
			ps.evictLocked()
		}
		st = &producerState{}
		ps.m[id] = st
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
	if accepted {
		st.Last, st.Gap = seq, false
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
		st = &producerState{Seen: now}
		ps.m[id] = st
	}
	st.Last = max(st.Last, seq)
}

// evictLocked drops the least recently seen producer that is not in
// flight.
func (ps *producers) evictLocked() {
	var oldest string
	var at time.Time
	for id, st := range ps.m {
		if st.pending == 0 && (oldest == "" || st.Seen.Before(at)) {
			oldest, at = id, st.Seen
		}
	}
	if oldest != "" {
		delete(ps.m, oldest)
	}
}

// load reads the saved table, if any.
func (ps *producers) load() error {
	if ps.path == "" {
		return nil
	}
	raw, err := os.ReadFile(ps.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("buffer: read producers: %w", err)
	}
	m := map[string]*producerState{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("buffer: %s: %w", ps.path, err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for id, st := range m {
		if cur := ps.m[id]; cur == nil || cur.Last < st.Last {
			ps.m[id] = st
		}
	}
	return nil
}

// save writes the table atomically (temporary file, fsync, rename,
// directory fsync), dropping producers idle longer than the TTL.
func (ps *producers) save(now time.Time) error {
	if ps.path == "" {
		return nil
	}
	ps.mu.Lock()
	for id, st := range ps.m {
		if st.pending == 0 && now.Sub(st.Seen) > ps.ttl {
			delete(ps.m, id)
		}
	}
	raw, err := json.Marshal(ps.m)
	ps.mu.Unlock()
	if err != nil {
		return err
	}
	dir := filepath.Dir(ps.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".producers-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), ps.path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

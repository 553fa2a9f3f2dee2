package buffer

import (
	"math/bits"
	"sync/atomic"
)

// cacheLine is the padding unit for hot atomics. 128 bytes covers the
// 64-byte line plus the adjacent line that x86 prefetches in pairs, and the
// 128-byte lines of some arm64 parts.
const cacheLine = 128

// maxRingCap bounds NewRing so that a position can never lap a sequence
// number and slot indexes fit an int.
const maxRingCap = 1 << 30

// Ring is a bounded lock-free multi-producer, multi-consumer queue of T.
//
// It is Dmitry Vyukov's bounded MPMC queue: every slot carries a sequence
// number that says whether the slot is free for the producer at a given
// position or full for the consumer at that position, so producers and
// consumers only contend on their own position counter (one CAS per
// operation) and never on a lock. The two counters sit on separate cache
// lines. TryPush and TryPop do not allocate.
//
// All methods are safe to call concurrently. TryPush and TryPop never block:
// a ring that is full (or empty) at the moment of the call reports it. While
// a consumer is in the middle of popping the oldest value, TryPush may report
// full for the slot that value occupies.
//
// A popped slot is zeroed so that the ring does not keep garbage reachable.
// The zero Ring is not usable; call NewRing.
type Ring[T any] struct {
	// Read-only after NewRing.
	mask  uint64
	slots []ringSlot[T]
	_     [cacheLine - 8 - 24]byte

	// tail is the next position to push to; producers CAS it.
	tail atomic.Uint64
	_    [cacheLine - 8]byte

	// head is the next position to pop from; consumers CAS it.
	head atomic.Uint64
	_    [cacheLine - 8]byte
}

// ringSlot is one cell. seq == pos means the slot is free for the producer
// at position pos; seq == pos+1 means it holds the value pushed at pos and
// is ready for the consumer at pos. After a pop the consumer sets seq to
// pos+cap, freeing it for the producer one lap later.
type ringSlot[T any] struct {
	seq atomic.Uint64
	val T
}

// NewRing returns an empty ring that holds capacity values. capacity is
// rounded up to a power of two, and to at least 2 (the sequence scheme needs
// two slots to tell full from empty). It panics if capacity is below 1 or
// above 1<<30.
func NewRing[T any](capacity int) *Ring[T] {
	if capacity < 1 || capacity > maxRingCap {
		panic("buffer: NewRing: capacity out of range [1, 1<<30]")
	}
	n := ringCap(capacity)
	r := &Ring[T]{
		mask:  uint64(n - 1),
		slots: make([]ringSlot[T], n),
	}
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
	return r
}

// ringCap is the capacity of a ring asked for capacity values.
func ringCap(capacity int) int {
	return max(2, 1<<bits.Len(uint(capacity-1)))
}

// TryPush appends v and reports true, or reports false without waiting if
// the ring is full.
func (r *Ring[T]) TryPush(v T) bool {
	pos := r.tail.Load()
	for {
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch d := int64(seq - pos); {
		case d == 0:
			// The slot is free for pos; claim pos.
			if r.tail.CompareAndSwap(pos, pos+1) {
				s.val = v
				s.seq.Store(pos + 1) // publish to the consumer at pos
				return true
			}
			pos = r.tail.Load()
		case d < 0:
			// The slot still holds the value from one lap ago.
			return false
		default:
			// Another producer claimed pos; catch up.
			pos = r.tail.Load()
		}
	}
}

// TryPop removes and returns the oldest value and true, or the zero T and
// false without waiting if the ring is empty.
func (r *Ring[T]) TryPop() (T, bool) {
	pos := r.head.Load()
	for {
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch d := int64(seq - (pos + 1)); {
		case d == 0:
			// The slot holds the value pushed at pos; claim pos.
			if r.head.CompareAndSwap(pos, pos+1) {
				v := s.val
				var zero T
				s.val = zero
				s.seq.Store(pos + r.mask + 1) // free for the producer one lap on
				return v, true
			}
			pos = r.head.Load()
		case d < 0:
			// Nothing pushed at pos yet (or its producer has not finished).
			var zero T
			return zero, false
		default:
			// Another consumer claimed pos; catch up.
			pos = r.head.Load()
		}
	}
}

// Peek returns the oldest value without removing it, or the zero T and
// false if the ring is empty. It is only safe when no TryPop runs
// concurrently (one consumer, which is the caller).
func (r *Ring[T]) Peek() (T, bool) {
	pos := r.head.Load()
	s := &r.slots[pos&r.mask]
	if s.seq.Load() == pos+1 {
		return s.val, true
	}
	var zero T
	return zero, false
}

// Len returns the number of values in the ring, counting pushes that have
// claimed a slot but not finished. Under concurrent use it is a snapshot
// that may already be stale; it is always within [0, Cap()].
func (r *Ring[T]) Len() int {
	h := r.head.Load()
	t := r.tail.Load()
	n := int64(t - h)
	if n < 0 {
		return 0
	}
	return int(min(n, int64(r.mask+1)))
}

// Cap returns the number of values the ring holds when full.
func (r *Ring[T]) Cap() int { return int(r.mask + 1) }

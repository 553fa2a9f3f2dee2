// Package arrowmem provides an Arrow allocator that recycles large
// buffers.
//
// Batches of a steady stream are built into buffers of about the same
// size, several MiB each, a few times a second. From Go's allocator each
// of those is a fresh large object: zeroed when it is made, often on
// pages the runtime has returned to the system and must fault in again.
// Pool keeps the buffers that Arrow frees (when the last reference to an
// array is released) and hands them out again, zeroed, so the pages stay
// warm and the garbage collector sees fewer large objects.
package arrowmem

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Pool is a memory.Allocator that keeps freed buffers of at least
// NewPool's minSize bytes, up to its maxIdle bytes in all, and reuses
// them for allocations of the same power-of-two size class. Smaller requests go
// to Go's allocator. Like Go's allocator, Pool hands out zeroed memory.
// It is safe for concurrent use.
//
// A buffer is recycled when Arrow frees it, so a reference kept past its
// array's last Release (a bug with any allocator) reads another batch's
// data instead of stale data.
type Pool struct {
	min     int
	maxIdle int64
	small   memory.GoAllocator

	mu   sync.Mutex
	idle int64
	free map[int][][]byte // by capacity, a power of two

	reused, made atomic.Int64
}

// NewPool returns a Pool that recycles buffers of minSize bytes or more
// and keeps at most maxIdle bytes of them unused.
func NewPool(minSize int, maxIdle int64) *Pool {
	return &Pool{min: minSize, maxIdle: maxIdle, free: map[int][][]byte{}}
}

// class is the capacity of the buffers that serve a request of n bytes.
func class(n int) int { return 1 << bits.Len(uint(n-1)) }

// Allocate returns n zeroed bytes.
func (p *Pool) Allocate(n int) []byte {
	if n < p.min {
		return p.small.Allocate(n)
	}
	c := class(n)
	p.mu.Lock()
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		p.free[c] = l[:len(l)-1]
		p.idle -= int64(c)
		p.mu.Unlock()
		p.reused.Add(1)
		b = b[:n]
		clear(b)
		return b
	}
	p.mu.Unlock()
	p.made.Add(1)
	// Go places objects this large at the start of pages: aligned for
	// Arrow, as Go's allocator pads smaller ones to be.
	return make([]byte, n, c)
}

// Reallocate returns b grown or shrunk to n bytes; bytes past len(b) are
// zero.
func (p *Pool) Reallocate(n int, b []byte) []byte {
	if n <= len(b) {
		return b[:n]
	}
	if n <= cap(b) && cap(b) >= p.min {
		// Grows in place: past its length a recycled buffer still holds
		// what its last user wrote.
		old := len(b)
		b = b[:n]
		clear(b[old:])
		return b
	}
	nb := p.Allocate(n)
	copy(nb, b)
	p.Free(b)
	return nb
}

// Free takes back b, which Allocate or Reallocate returned.
func (p *Pool) Free(b []byte) {
	c := cap(b)
	if c < p.min || c&(c-1) != 0 {
		return // Go's allocator's, or not a size class: the collector's
	}
	p.mu.Lock()
	if p.idle+int64(c) <= p.maxIdle {
		p.free[c] = append(p.free[c], b[:0])
		p.idle += int64(c)
	}
	p.mu.Unlock()
}

// Stats reports the allocations of minSize bytes or more served from
// recycled buffers and those that made a new one, and the bytes idle.
func (p *Pool) Stats() (reused, made, idle int64) {
	p.mu.Lock()
	idle = p.idle
	p.mu.Unlock()
	return p.reused.Load(), p.made.Load(), idle
}

var _ memory.Allocator = (*Pool)(nil)

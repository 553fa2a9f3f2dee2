package arrowipc

import (
	"errors"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

var (
	// ErrTooLarge is the panic of an Allocator past its budget; the IPC
	// reader recovers from it and reports a read error.
	ErrTooLarge = errors.New("arrow_ipc: the decoded batch is too large")
	// ErrNegativeAllocation is the panic of an allocation whose size,
	// read from corrupt metadata, is negative.
	ErrNegativeAllocation = errors.New("arrow_ipc: a buffer of negative size")
	// ErrSchemaChange is returned for a schema message after the first
	// message of the stream.
	ErrSchemaChange = errors.New("arrow_ipc: a second schema message in the stream: all record batches of a request share the stream's one schema")
)

// Allocator is the allocator of one stream's IPC reader. It bounds what
// a (possibly compressed) IPC stream can make a reader allocate: once more
// than budget bytes were allocated in all, it fails allocations by
// panicking with ErrTooLarge, which the reader recovers from and reports.
// It also keeps the buffers it handed out and not yet freed, for
// FreeLeaked.
type Allocator struct {
	mem    memory.Allocator
	budget int

	mu        sync.Mutex
	left      int
	exceeded  bool
	charge    func(n int) error
	chargeErr error
	live      map[*byte][]byte
}

// NewAllocator returns an Allocator that takes at most budget bytes from
// mem.
func NewAllocator(mem memory.Allocator, budget int) *Allocator {
	return &Allocator{mem: mem, budget: budget, left: budget, live: map[*byte][]byte{}}
}

// ChargeWith makes every allocation first call charge with its size; an
// error fails the allocation as the budget does (the reader reports a
// read error) and is kept for ChargeErr. Call it before the Allocator is
// used.
func (a *Allocator) ChargeWith(charge func(n int) error) { a.charge = charge }

// ChargeErr returns the error of the charge that failed an allocation,
// or nil.
func (a *Allocator) ChargeErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.chargeErr
}

// Budget returns the budget the Allocator was made with.
func (a *Allocator) Budget() int { return a.budget }

// Exceeded reports whether an allocation failed for the budget.
func (a *Allocator) Exceeded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.exceeded
}

// Live reports whether some buffer allocated is not freed yet: record
// batches read then hold memory of the Allocator (decompressed bodies),
// not only views of the input.
func (a *Allocator) Live() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.live) > 0
}

func (a *Allocator) takeLocked(n int) {
	if n < 0 { // a size read from corrupt metadata
		panic(ErrNegativeAllocation)
	}
	if n > a.left {
		a.exceeded = true
		panic(ErrTooLarge)
	}
	if a.charge != nil {
		if err := a.charge(n); err != nil {
			a.chargeErr = err
			panic(err)
		}
	}
	a.left -= n
}

func (a *Allocator) trackLocked(b []byte) {
	if len(b) > 0 {
		a.live[unsafe.SliceData(b)] = b
	}
}

// Allocate implements memory.Allocator.
func (a *Allocator) Allocate(size int) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.takeLocked(size)
	b := a.mem.Allocate(size)
	a.trackLocked(b)
	return b
}

// Reallocate implements memory.Allocator.
func (a *Allocator) Reallocate(size int, b []byte) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case size < 0:
		a.takeLocked(size)
	case size > len(b):
		a.takeLocked(size - len(b))
	}
	if len(b) > 0 {
		delete(a.live, unsafe.SliceData(b))
	}
	nb := a.mem.Reallocate(size, b)
	a.trackLocked(nb)
	return nb
}

// Free implements memory.Allocator.
func (a *Allocator) Free(b []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(b) > 0 {
		delete(a.live, unsafe.SliceData(b))
	}
	a.mem.Free(b)
}

// FreeLeaked frees the buffers not freed yet. It is called once the
// reader and every record batch read are released, when nothing refers
// to the Allocator's memory any more: the reader leaks the buffers it was
// loading when it recovers from a panic (a corrupt stream, or an
// allocation over the budget).
func (a *Allocator) FreeLeaked() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p, b := range a.live {
		delete(a.live, p)
		a.mem.Free(b)
	}
}

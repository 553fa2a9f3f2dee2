package arrowmem

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

const kib = 1 << 10

var (
	junk  = bytes.Repeat([]byte{0xa5}, 512*kib)
	zeros = make([]byte, 512*kib)
)

// dirty fills b, up to 512 KiB, with a byte that is not zero.
func dirty(b []byte) { copy(b, junk) }

// isZero reports whether b, up to 512 KiB, is all zero bytes.
func isZero(b []byte) bool { return bytes.Equal(b, zeros[:len(b)]) }

func zero(t *testing.T, what string, b []byte) {
	t.Helper()
	if !isZero(b) {
		t.Fatalf("%s: %d bytes not all zero", what, len(b))
	}
}

func same(a, b []byte) bool { return unsafe.SliceData(a) == unsafe.SliceData(b) }

func TestPoolReusesZeroed(t *testing.T) {
	p := NewPool(64*kib, 1<<20)
	a := p.Allocate(100 * kib)
	if len(a) != 100*kib || cap(a) != 128*kib {
		t.Fatalf("len %d cap %d, want %d and the size class %d", len(a), cap(a), 100*kib, 128*kib)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(a)))%64 != 0 {
		t.Error("a large buffer is not 64-byte aligned")
	}
	dirty(a[:cap(a)])
	p.Free(a)
	b := p.Allocate(90 * kib) // the same class
	if !same(a, b) {
		t.Fatal("a freed buffer of the class was not handed out again")
	}
	zero(t, "reused buffer", b)
	if c := p.Allocate(300 * kib); same(a, c) {
		t.Fatal("a buffer of another class was handed out")
	}
	if reused, made, idle := p.Stats(); reused != 1 || made != 2 || idle != 0 {
		t.Errorf("stats: %d reused, %d made, %d idle; want 1, 2, 0", reused, made, idle)
	}
}

func TestPoolSmallAndForeign(t *testing.T) {
	p := NewPool(64*kib, 1<<20)
	s := p.Allocate(1000)
	if len(s) != 1000 || uintptr(unsafe.Pointer(unsafe.SliceData(s)))%64 != 0 {
		t.Fatalf("small buffer: len %d, aligned %v", len(s), uintptr(unsafe.Pointer(unsafe.SliceData(s)))%64 == 0)
	}
	p.Free(s)
	p.Free(make([]byte, 100*kib)) // not a size class: left to the collector
	if _, _, idle := p.Stats(); idle != 0 {
		t.Errorf("%d bytes idle after freeing a small and a foreign buffer, want 0", idle)
	}
}

func TestPoolKeepsAtMostMaxIdle(t *testing.T) {
	p := NewPool(64*kib, 256*kib)
	var bufs [][]byte
	for range 3 {
		bufs = append(bufs, p.Allocate(128*kib))
	}
	for _, b := range bufs {
		p.Free(b)
	}
	if _, _, idle := p.Stats(); idle != 256*kib {
		t.Errorf("%d bytes idle, want the bound, %d", idle, 256*kib)
	}
}

func TestPoolReallocate(t *testing.T) {
	p := NewPool(64*kib, 1<<20)
	a := p.Allocate(100 * kib)
	dirty(a[:cap(a)])
	p.Free(a)
	b := p.Allocate(70 * kib)
	for i := range b {
		b[i] = byte(i)
	}
	// Within the class: in place, the new bytes zero although the
	// buffer's tail held old data.
	c := p.Reallocate(120*kib, b)
	if !same(b, c) {
		t.Fatal("growing within the size class moved the buffer")
	}
	zero(t, "grown part", c[70*kib:])
	// Past it: a new buffer with the contents, the old one taken back.
	d := p.Reallocate(200*kib, c)
	if same(c, d) || len(d) != 200*kib {
		t.Fatalf("growing past the class: same buffer %v, len %d", same(c, d), len(d))
	}
	for i := range 70 * kib {
		if d[i] != byte(i) {
			t.Fatalf("byte %d is %d after growing, want %d", i, d[i], byte(i))
		}
	}
	zero(t, "copied buffer's new part", d[120*kib:])
	if _, _, idle := p.Stats(); idle != 128*kib {
		t.Errorf("%d bytes idle, want the outgrown buffer's %d", idle, 128*kib)
	}
	// Shrinking keeps the buffer.
	if e := p.Reallocate(10, d); !same(d, e) || len(e) != 10 {
		t.Error("shrinking moved the buffer or ignored the size")
	}
}

// TestPoolArrowArrays builds string arrays through the pool, releasing
// each before the next is built, and checks every value: recycled
// buffers must not leak one array's bytes into the next.
func TestPoolArrowArrays(t *testing.T) {
	p := NewPool(64*kib, 4<<20)
	checked := memory.NewCheckedAllocator(p)
	defer checked.AssertSize(t, 0)
	for round := range 20 {
		b := array.NewStringBuilder(checked)
		n := 5000 + round*300 // sizes vary, so buffers grow and are reused
		for i := range n {
			if i%7 == 0 {
				b.AppendNull()
				continue
			}
			b.Append(fmt.Sprintf("round %d value %d", round, i))
		}
		arr := b.NewStringArray()
		b.Release()
		for i := range n {
			if i%7 == 0 {
				if !arr.IsNull(i) {
					t.Fatalf("round %d: value %d is not null", round, i)
				}
				continue
			}
			if want := fmt.Sprintf("round %d value %d", round, i); arr.IsNull(i) || arr.Value(i) != want {
				t.Fatalf("round %d: value %d is %q (null %v), want %q", round, i, arr.Value(i), arr.IsNull(i), want)
			}
		}
		arr.Release()
	}
	if reused, _, _ := p.Stats(); reused == 0 {
		t.Error("no buffer was reused over 20 rounds")
	}
}

func TestPoolConcurrent(t *testing.T) {
	p := NewPool(64*kib, 1<<20)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				b := p.Allocate(64*kib + (g*i)%(64*kib))
				if !isZero(b) {
					t.Error("a buffer handed out is not zero")
					return
				}
				dirty(b)
				p.Free(b)
			}
		})
	}
	wg.Wait()
}

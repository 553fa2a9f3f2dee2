package rpcgzip

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	"connectrpc.com/connect"
)

// meter counts what is charged, refusing past limit.
type meter struct {
	held, peak, limit int64
}

func (m *meter) Take(_, n int64) error {
	if m.held+n > m.limit {
		return connect.NewError(connect.CodeResourceExhausted, errors.New("no room"))
	}
	m.held += n
	m.peak = max(m.peak, m.held)
	return nil
}

func (m *meter) Give(n int64) { m.held -= n }

func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// inflate decompresses src as connect-go does: up to max+1 bytes, then
// the rest to measure it.
func inflate(d *decompressor, src []byte, max int64) (int64, error) {
	if err := d.Reset(bytes.NewReader(src)); err != nil {
		return 0, err
	}
	defer d.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(d, max+1))
	if err != nil || n <= max {
		return n, err
	}
	m, err := io.Copy(io.Discard, d)
	return n + m, err
}

func TestDecompressor(t *testing.T) {
	m := &meter{limit: 1 << 30}
	d := &decompressor{m: m, max: 1 << 20}
	// Within the bound: all of it, charged while it is inflated.
	n, err := inflate(d, gz(bytes.Repeat([]byte("a"), 1<<20)), 1<<20)
	if err != nil || n != 1<<20 {
		t.Fatalf("message at the bound: %d %v", n, err)
	}
	if m.held != 0 || m.peak < 1<<20 {
		t.Errorf("held %d after, peak %d", m.held, m.peak)
	}
	// A bomb: refused a step past the bound, not inflated to its end.
	n, err = inflate(d, gz(make([]byte, 32<<20)), 1<<20)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || n > 1<<20+step {
		t.Errorf("bomb: %d bytes, %v", n, err)
	}
	// The meter's refusal fails the message.
	m.limit = 128 << 10
	if _, err := inflate(d, gz(bytes.Repeat([]byte("b"), 512<<10)), 1<<20); err == nil || err.Error() != "resource_exhausted: no room" {
		t.Errorf("message past the meter: %v", err)
	}
	if m.held != 0 {
		t.Errorf("held %d after", m.held)
	}
}

// FuzzDecompressor: whatever the input, the decompressor stops within a
// step of its bound and returns everything it charged.
func FuzzDecompressor(f *testing.F) {
	f.Add(gz([]byte("hello")))
	f.Add(gz(make([]byte, 300<<10)))
	f.Add(append(gz([]byte("one")), gz([]byte("two"))...))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, src []byte) {
		const max = 64 << 10
		m := &meter{limit: 1 << 20}
		d := &decompressor{m: m, max: max}
		n, _ := inflate(d, src, max)
		if n > max+step {
			t.Fatalf("inflated %d bytes past a bound of %d", n, max)
		}
		if m.held != 0 {
			t.Fatalf("held %d after Close", m.held)
		}
	})
}

package sink

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestWritebackFile: the writer writes every byte, in order, and starts
// the writeback of each writebackBytes written, not of less.
func TestWritebackFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newWritebackFile(f)
	var want bytes.Buffer
	chunk := make([]byte, 3<<20+17)
	for i := range 7 {
		for j := range chunk {
			chunk[j] = byte(i*31 + j)
		}
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		want.Write(chunk)
		// The start moves by whole writes, once writebackBytes have
		// gathered since the last.
		if w.off-w.started >= writebackBytes || w.started%int64(len(chunk)) != 0 {
			t.Fatalf("after %d writes: %d written, writeback started below %d", i+1, w.off, w.started)
		}
	}
	if w.started == 0 {
		t.Fatalf("%d bytes written and no writeback started", w.off)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file holds %d bytes, not the %d written", len(got), want.Len())
	}
}

package wal_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/weirlabs/weir/internal/wal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noSync is a sync hook for tests that do not need real fsyncs.
func noSync(string) error { return nil }

// testOptions returns default options with small segments, so that a few
// kilobytes of records roll several times.
func testOptions() wal.Options {
	o := wal.DefaultOptions()
	o.SegmentBytes = 4 << 10
	return o
}

func openLog(t *testing.T, dir string, o wal.Options, lg *slog.Logger) *wal.Log {
	t.Helper()
	l, err := wal.OpenWithSyncHook(dir, o, lg, noSync)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func closeLog(t *testing.T, l *wal.Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// payload returns a deterministic payload of 0 to 700 bytes for record i.
func payload(i int) []byte {
	n := (i * 37) % 701
	p := make([]byte, n)
	for j := range p {
		p[j] = byte(i + j*7)
	}
	if n >= 4 {
		binary.LittleEndian.PutUint32(p, uint32(i))
	}
	return p
}

type rec struct {
	pos     wal.Pos
	payload []byte
}

// appendN appends payload(first) .. payload(first+n-1).
func appendN(t *testing.T, l *wal.Log, first, n int) []rec {
	t.Helper()
	var out []rec
	for i := first; i < first+n; i++ {
		p := payload(i)
		pos, err := l.Append(p)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, rec{pos, p})
	}
	return out
}

func replayAll(t *testing.T, l *wal.Log, from wal.Pos) []rec {
	t.Helper()
	var out []rec
	err := l.Replay(from, func(pos wal.Pos, p []byte) error {
		out = append(out, rec{pos, bytes.Clone(p)})
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%v): %v", from, err)
	}
	return out
}

func equalRecs(t *testing.T, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].pos != want[i].pos || !bytes.Equal(got[i].payload, want[i].payload) {
			t.Fatalf("record %d: got pos %v and %d bytes, want pos %v and %d bytes",
				i, got[i].pos, len(got[i].payload), want[i].pos, len(want[i].payload))
		}
	}
}

// snapshot returns the content of every file in dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func segPath(dir string, index uint64) string {
	return filepath.Join(dir, wal.SegmentName(index))
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package wal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/weirlabs/weir/internal/wal"
)

// diskFull is a write hook that, while full, stores the first half of
// every write to a matching segment and fails it with errno, as a file
// system that runs out of space part-way through a write does.
type diskFull struct {
	mu    sync.Mutex
	full  bool
	errno syscall.Errno
	match func(path string) bool // nil: every segment
	fails int
}

func (d *diskFull) set(full bool) {
	d.mu.Lock()
	d.full = full
	d.mu.Unlock()
}

func (d *diskFull) failures() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fails
}

func (d *diskFull) hook(path string, size int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.full || d.match != nil && !d.match(path) {
		return size, nil
	}
	d.fails++
	return size / 2, d.errno
}

func checkNoSpace(t *testing.T, err error, errno syscall.Errno) {
	t.Helper()
	if !errors.Is(err, wal.ErrNoSpace) || !errors.Is(err, errno) {
		t.Fatalf("error %v: want it to match wal.ErrNoSpace and %v", err, errno)
	}
}

// TestAppendNoSpace: an Append that runs out of space fails with
// ErrNoSpace, leaves the segment as it was, and the log takes appends
// again once there is room; nothing of the failed records is replayed.
func TestAppendNoSpace(t *testing.T) {
	t.Parallel()
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(errno.Error(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			disk := &diskFull{errno: errno}
			l, err := wal.OpenWithWriteHook(dir, testOptions(), nil, disk.hook)
			must(t, err)
			want := appendN(t, l, 0, 20)
			before := snapshot(t, dir)

			disk.set(true)
			for i := 20; i < 25; i++ {
				if _, err := l.Append(payload(i)); err == nil {
					t.Fatalf("Append %d on a full disk succeeded", i)
				} else {
					checkNoSpace(t, err, errno)
				}
			}
			if got := snapshot(t, dir); !equalFiles(got, before) {
				t.Fatalf("failed appends changed the segments")
			}
			// A Sync of what was appended before still works.
			must(t, l.Sync(context.Background(), want[len(want)-1].pos))

			disk.set(false)
			want = append(want, appendN(t, l, 25, 20)...)
			must(t, l.Sync(context.Background(), want[len(want)-1].pos))
			equalRecs(t, replayAll(t, l, wal.Pos{}), want)
			closeLog(t, l)

			var lb logBuffer
			l = openLog(t, dir, testOptions(), lb.logger())
			defer closeLog(t, l)
			equalRecs(t, replayAll(t, l, wal.Pos{}), want)
			if s := lb.String(); s != "" {
				t.Errorf("reopening logged %q; the failed appends left something behind", s)
			}
		})
	}
}

// TestRollNoSpace: a roll whose new segment's header cannot be written
// leaves no file behind and the current segment current; the next Append
// once there is room rolls.
func TestRollNoSpace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	second := segPath(dir, 2)
	disk := &diskFull{errno: syscall.ENOSPC, match: func(p string) bool { return p == second }}
	l, err := wal.OpenWithWriteHook(dir, testOptions(), nil, disk.hook)
	must(t, err)
	disk.set(true)
	var want []rec
	var aerr error
	for i := 0; i < 1000; i++ {
		p := payload(i)
		pos, err := l.Append(p)
		if err != nil {
			aerr = err
			break
		}
		want = append(want, rec{pos, p})
	}
	checkNoSpace(t, aerr, syscall.ENOSPC)
	if n := disk.failures(); n != 1 {
		t.Fatalf("%d failed writes to segment 2, want 1 (its header)", n)
	}
	if _, err := os.Lstat(second); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed roll left %s behind: %v", second, err)
	}
	if segs := l.Segments(); len(segs) != 1 {
		t.Fatalf("%d segments after a failed roll, want 1", len(segs))
	}
	_, err = l.Append(payload(len(want)))
	checkNoSpace(t, err, syscall.ENOSPC)

	disk.set(false)
	want = append(want, appendN(t, l, len(want), 10)...)
	if got := want[len(want)-1].pos.Segment; got != 2 {
		t.Fatalf("last record in segment %d, want 2", got)
	}
	must(t, l.Sync(context.Background(), want[len(want)-1].pos))
	closeLog(t, l)
	l = openLog(t, dir, testOptions(), nil)
	defer closeLog(t, l)
	equalRecs(t, replayAll(t, l, wal.Pos{}), want)
}

// TestOpenNoSpace: a new log that cannot write its first segment fails
// to open with ErrNoSpace and leaves nothing that stops a later Open.
func TestOpenNoSpace(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "log")
	disk := &diskFull{errno: syscall.ENOSPC, full: true}
	if l, err := wal.OpenWithWriteHook(dir, testOptions(), nil, disk.hook); err == nil {
		l.Close()
		t.Fatal("Open on a full disk succeeded")
	} else {
		checkNoSpace(t, err, syscall.ENOSPC)
	}
	l := openLog(t, dir, testOptions(), nil)
	want := appendN(t, l, 0, 3)
	closeLog(t, l)
	l = openLog(t, dir, testOptions(), nil)
	defer closeLog(t, l)
	equalRecs(t, replayAll(t, l, wal.Pos{}), want)
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

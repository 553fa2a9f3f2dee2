package wal_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/weirlabs/weir/internal/wal"
)

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	if err := wal.DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
	f := func(mod func(*wal.Options), want string) {
		t.Helper()
		o := wal.DefaultOptions()
		mod(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want an error about %q", err, want)
		}
	}
	f(func(o *wal.Options) { o.SegmentBytes = 0 }, "segment bytes")
	f(func(o *wal.Options) { o.SegmentBytes = wal.HeaderSize }, "segment bytes")
	f(func(o *wal.Options) { o.Policy = 7 }, "policy")
	f(func(o *wal.Options) { o.Policy, o.Interval = wal.SyncInterval, 0 }, "interval")
	f(func(o *wal.Options) { o.MaxRecordBytes = 0 }, "max record bytes")
	f(func(o *wal.Options) { o.MaxRecordBytes = 2 << 30 }, "max record bytes")

	o := wal.DefaultOptions()
	o.Interval = 0 // unused by SyncEvery
	if err := o.Validate(); err != nil {
		t.Errorf("SyncEvery with no interval: %v", err)
	}
	if _, err := wal.Open(t.TempDir(), wal.Options{}, nil); err == nil {
		t.Error("Open with zero Options succeeded")
	}
}

func TestPosLess(t *testing.T) {
	t.Parallel()
	ps := []wal.Pos{{}, {0, 5}, {1, 0}, {1, 16}, {1, 17}, {2, 3}}
	for i, p := range ps {
		for j, q := range ps {
			if got := p.Less(q); got != (i < j) {
				t.Errorf("%v.Less(%v) = %v", p, q, got)
			}
		}
	}
}

// TestRoundTrip appends across many segment rolls with real fsyncs,
// reopens and replays everything and from every position.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "wal", "tenant=a", "stream=b", "part=0")
	l, err := wal.Open(dir, testOptions(), nil)
	must(t, err)
	recs := appendN(t, l, 0, 200)
	must(t, l.Sync(context.Background(), recs[len(recs)-1].pos))
	equalRecs(t, replayAll(t, l, wal.Pos{}), recs)
	closeLog(t, l)

	l, err = wal.Open(dir, testOptions(), nil)
	must(t, err)
	defer closeLog(t, l)
	segs := l.Segments()
	if len(segs) < 10 {
		t.Fatalf("%d segments; want at least 10 with 4 KiB segments", len(segs))
	}
	for i, s := range segs {
		if s.Index != uint64(i+1) || s.Path != segPath(dir, s.Index) {
			t.Fatalf("segment %d = %+v", i, s)
		}
		fi, err := os.Stat(s.Path)
		must(t, err)
		if fi.Size() != s.Size {
			t.Errorf("segment %d: Size %d, file has %d bytes", s.Index, s.Size, fi.Size())
		}
		if i < len(segs)-1 && s.Size < testOptions().SegmentBytes {
			t.Errorf("segment %d rolled at %d bytes, before %d", s.Index, s.Size, testOptions().SegmentBytes)
		}
	}
	equalRecs(t, replayAll(t, l, wal.Pos{}), recs)
	for i := 0; i < len(recs); i += 7 {
		equalRecs(t, replayAll(t, l, recs[i].pos), recs[i+1:])
	}
	// A position inside a record replays that record.
	mid := wal.Pos{Segment: recs[50].pos.Segment, Offset: recs[50].pos.Offset - 1}
	equalRecs(t, replayAll(t, l, mid), recs[50:])
	if got := replayAll(t, l, wal.Pos{Segment: 1 << 40}); len(got) != 0 {
		t.Errorf("replay past the end returned %d records", len(got))
	}

	// Appends continue in the last segment after reopening.
	more := appendN(t, l, 200, 10)
	if more[0].pos.Segment != recs[len(recs)-1].pos.Segment && more[0].pos.Segment != recs[len(recs)-1].pos.Segment+1 {
		t.Errorf("append after reopen went to segment %d", more[0].pos.Segment)
	}
	equalRecs(t, replayAll(t, l, wal.Pos{}), append(recs, more...))
}

func TestReplayStopsOnError(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), testOptions(), nil)
	defer closeLog(t, l)
	appendN(t, l, 0, 20)
	stop := errors.New("stop")
	n := 0
	err := l.Replay(wal.Pos{}, func(wal.Pos, []byte) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	})
	if err != stop || n != 5 {
		t.Fatalf("Replay = %v after %d records; want the callback's error after 5", err, n)
	}
}

func TestAppendLimits(t *testing.T) {
	t.Parallel()
	o := testOptions()
	o.MaxRecordBytes = 100
	dir := t.TempDir()
	l := openLog(t, dir, o, nil)
	if _, err := l.Append(make([]byte, 101)); !errors.Is(err, wal.ErrTooLarge) {
		t.Errorf("Append(101 bytes) = %v, want ErrTooLarge", err)
	}
	pos, err := l.Append(nil)
	must(t, err)
	big, err := l.Append(make([]byte, 100))
	must(t, err)
	if want := (wal.Pos{Segment: 1, Offset: wal.HeaderSize + wal.FrameHeaderSize}); pos != want {
		t.Errorf("empty record at %v, want %v", pos, want)
	}
	got := replayAll(t, l, wal.Pos{})
	if len(got) != 2 || len(got[0].payload) != 0 || len(got[1].payload) != 100 || got[1].pos != big {
		t.Errorf("replay = %+v", got)
	}
	closeLog(t, l)

	// A log holding a record over a smaller bound does not open.
	o.MaxRecordBytes = 99
	if _, err := wal.OpenWithSyncHook(dir, o, nil, noSync); !errors.Is(err, wal.ErrTooLarge) {
		t.Errorf("Open with a smaller MaxRecordBytes = %v, want ErrTooLarge", err)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	l := openLog(t, t.TempDir(), testOptions(), nil)
	recs := appendN(t, l, 0, 3)
	closeLog(t, l)
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("Append after Close = %v", err)
	}
	if err := l.Replay(wal.Pos{}, func(wal.Pos, []byte) error { return nil }); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("Replay after Close = %v", err)
	}
	if err := l.Remove(10); !errors.Is(err, wal.ErrClosed) {
		t.Errorf("Remove after Close = %v", err)
	}
	// Close synced everything.
	if err := l.Sync(context.Background(), recs[2].pos); err != nil {
		t.Errorf("Sync after Close = %v", err)
	}
}

// tornCase damages the last segment of a closed log the way a crash can.
type tornCase struct {
	name string
	// damage changes the files; it returns the number of records of recs
	// (all in the last segment) that survive, and the segment and offset
	// at which Open must truncate.
	damage func(t *testing.T, dir string, recs []rec) (keep int, seg uint64, offset int64)
}

func TestTornTail(t *testing.T) {
	t.Parallel()
	lastFile := func(dir string, recs []rec) string { return segPath(dir, recs[len(recs)-1].pos.Segment) }
	appendBytes := func(t *testing.T, path string, b []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		_, err = f.Write(b)
		must(t, err)
		must(t, f.Close())
	}
	cases := []tornCase{
		{"partial record", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			p := lastFile(dir, recs)
			must(t, os.Truncate(p, recs[len(recs)-1].pos.Offset-3))
			return len(recs) - 1, recs[len(recs)-1].pos.Segment, recs[len(recs)-2].pos.Offset
		}},
		{"partial frame header", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			appendBytes(t, lastFile(dir, recs), []byte{1, 2, 3})
			return len(recs), recs[len(recs)-1].pos.Segment, recs[len(recs)-1].pos.Offset
		}},
		{"random garbage", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			g := make([]byte, 3000)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range g {
				g[i] = byte(r.Uint32())
			}
			appendBytes(t, lastFile(dir, recs), g)
			return len(recs), recs[len(recs)-1].pos.Segment, recs[len(recs)-1].pos.Offset
		}},
		{"zero-filled tail", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			appendBytes(t, lastFile(dir, recs), make([]byte, 8192))
			return len(recs), recs[len(recs)-1].pos.Segment, recs[len(recs)-1].pos.Offset
		}},
		{"last record zeroed and zeros after", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			p := lastFile(dir, recs)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			must(t, err)
			start := recs[len(recs)-2].pos.Offset + 4 // keep the length, zero the rest
			_, err = f.WriteAt(make([]byte, 4096), start)
			must(t, err)
			must(t, f.Close())
			return len(recs) - 1, recs[len(recs)-1].pos.Segment, recs[len(recs)-2].pos.Offset
		}},
		{"new segment with a partial header", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			next := recs[len(recs)-1].pos.Segment + 1
			must(t, os.WriteFile(segPath(dir, next), wal.SegmentHeader()[:5], 0o644))
			return len(recs), next, 0
		}},
		{"new empty segment", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			next := recs[len(recs)-1].pos.Segment + 1
			must(t, os.WriteFile(segPath(dir, next), nil, 0o644))
			return len(recs), next, 0
		}},
		{"new zero-filled segment", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			next := recs[len(recs)-1].pos.Segment + 1
			must(t, os.WriteFile(segPath(dir, next), make([]byte, 4096), 0o644))
			return len(recs), next, 0
		}},
		{"new segment, header and a partial record", func(t *testing.T, dir string, recs []rec) (int, uint64, int64) {
			next := recs[len(recs)-1].pos.Segment + 1
			p := payload(12345)
			b := append(wal.SegmentHeader(), wal.FrameHeader(p)...)
			b = append(b, p[:len(p)/2]...)
			must(t, os.WriteFile(segPath(dir, next), b, 0o644))
			return len(recs), next, wal.HeaderSize
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := testOptions()
			o.SegmentBytes = 1 << 20
			l := openLog(t, dir, o, nil)
			recs := appendN(t, l, 1, 30)
			closeLog(t, l)

			keep, seg, offset := tc.damage(t, dir, recs)
			fi, err := os.Stat(segPath(dir, seg))
			must(t, err)
			size := fi.Size()

			var lb logBuffer
			l = openLog(t, dir, o, lb.logger())
			want := recs[:keep]
			equalRecs(t, replayAll(t, l, wal.Pos{}), want)

			// The warning names the segment, the offset and the bytes dropped.
			out := lb.String()
			for _, s := range []string{
				"truncated torn tail",
				"segment=" + segPath(dir, seg),
				"offset=" + strconv.FormatInt(offset, 10),
				"dropped_bytes=" + strconv.FormatInt(size-offset, 10),
			} {
				if !strings.Contains(out, s) {
					t.Errorf("log %q does not contain %q", out, s)
				}
			}

			// Appends continue after the truncated tail and survive a reopen.
			more := appendN(t, l, 100, 5)
			want = append(want, more...)
			closeLog(t, l)
			l = openLog(t, dir, o, lb.logger())
			defer closeLog(t, l)
			equalRecs(t, replayAll(t, l, wal.Pos{}), want)
			if n := strings.Count(lb.String(), "truncated"); n != 1 {
				t.Errorf("%d truncation warnings, want 1", n)
			}
		})
	}
}

func TestCorruption(t *testing.T) {
	t.Parallel()
	flip := func(t *testing.T, path string, off int64) {
		t.Helper()
		b, err := os.ReadFile(path)
		must(t, err)
		b[off] ^= 0x40
		must(t, os.WriteFile(path, b, 0o644))
	}
	// recStart returns where record i begins.
	recStart := func(recs []rec, i int) int64 {
		if i == 0 || recs[i-1].pos.Segment != recs[i].pos.Segment {
			return wal.HeaderSize
		}
		return recs[i-1].pos.Offset
	}
	type result struct {
		seg    uint64
		offset int64
		cause  string
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string, recs []rec) result
	}{
		{"payload of a record in the last segment", func(t *testing.T, dir string, recs []rec) result {
			i := firstInLast(t, recs)
			flip(t, segPath(dir, recs[i].pos.Segment), recStart(recs, i)+wal.FrameHeaderSize+2)
			return result{recs[i].pos.Segment, recStart(recs, i), "checksum"}
		}},
		{"length of a record in the last segment", func(t *testing.T, dir string, recs []rec) result {
			i := firstInLast(t, recs) + 1
			flip(t, segPath(dir, recs[i].pos.Segment), recStart(recs, i)+1)
			return result{recs[i].pos.Segment, recStart(recs, i), "valid record follows"}
		}},
		{"checksum of the first record of the last segment", func(t *testing.T, dir string, recs []rec) result {
			last := recs[len(recs)-1].pos.Segment
			i := firstInLast(t, recs)
			flip(t, segPath(dir, last), wal.HeaderSize+5)
			return result{last, recStart(recs, i), "checksum"}
		}},
		{"last record of an earlier segment", func(t *testing.T, dir string, recs []rec) result {
			i := 0
			for recs[i+1].pos.Segment == recs[0].pos.Segment {
				i++
			}
			flip(t, segPath(dir, recs[i].pos.Segment), recs[i].pos.Offset-1)
			return result{recs[i].pos.Segment, recStart(recs, i), "checksum"}
		}},
		{"earlier segment truncated", func(t *testing.T, dir string, recs []rec) result {
			i := 0
			for recs[i+1].pos.Segment == recs[0].pos.Segment {
				i++
			}
			must(t, os.Truncate(segPath(dir, 1), recs[i].pos.Offset-1))
			return result{1, recStart(recs, i), "past the end"}
		}},
		{"earlier segment header", func(t *testing.T, dir string, recs []rec) result {
			flip(t, segPath(dir, 2), 3)
			return result{2, 0, "magic"}
		}},
		{"last segment of another version", func(t *testing.T, dir string, recs []rec) result {
			last := recs[len(recs)-1].pos.Segment
			flip(t, segPath(dir, last), 9)
			return result{last, 0, "version"}
		}},
		{"missing segment", func(t *testing.T, dir string, recs []rec) result {
			must(t, os.Remove(segPath(dir, 2)))
			return result{3, 0, "missing"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := openLog(t, dir, testOptions(), nil)
			recs := appendN(t, l, 0, 60)
			closeLog(t, l)
			if recs[len(recs)-1].pos.Segment < 4 {
				t.Fatal("test needs at least 4 segments")
			}
			want := tc.damage(t, dir, recs)
			before := snapshot(t, dir)

			_, err := wal.OpenWithSyncHook(dir, testOptions(), nil, noSync)
			var ce *wal.CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("Open = %v, want a *CorruptionError", err)
			}
			t.Log(err)
			if ce.Segment != segPath(dir, want.seg) || ce.Offset != want.offset {
				t.Errorf("CorruptionError at %s offset %d, want %s offset %d", ce.Segment, ce.Offset, segPath(dir, want.seg), want.offset)
			}
			if !strings.Contains(err.Error(), want.cause) || !strings.Contains(err.Error(), ce.Segment) ||
				!strings.Contains(err.Error(), "offset "+strconv.FormatInt(want.offset, 10)) {
				t.Errorf("error %q does not name the segment, offset %d and %q", err, want.offset, want.cause)
			}
			if ce.Unwrap() == nil {
				t.Error("Unwrap() = nil")
			}
			if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
				t.Error("Open modified a corrupt log")
			}
		})
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openLog(t, dir, testOptions(), nil)
	defer closeLog(t, l)
	recs := appendN(t, l, 0, 100)
	segs := l.Segments()
	if len(segs) < 5 {
		t.Fatalf("%d segments", len(segs))
	}
	must(t, l.Remove(3))
	got := l.Segments()
	if got[0].Index != 3 || len(got) != len(segs)-2 {
		t.Fatalf("after Remove(3): %+v", got)
	}
	for _, s := range segs[:2] {
		if _, err := os.Stat(s.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("segment %d still there: %v", s.Index, err)
		}
	}
	first := 0
	for recs[first].pos.Segment < 3 {
		first++
	}
	equalRecs(t, replayAll(t, l, wal.Pos{}), recs[first:])
	equalRecs(t, replayAll(t, l, recs[5].pos), recs[first:])

	// Never the current segment.
	must(t, l.Remove(^uint64(0)))
	got = l.Segments()
	if len(got) != 1 || got[0].Index != segs[len(segs)-1].Index {
		t.Fatalf("after Remove(max): %+v", got)
	}
	must(t, l.Remove(0))
	more := appendN(t, l, 100, 50)
	equalRecs(t, replayAll(t, l, wal.Pos{}), append(recs[len(recs)-countInSegment(recs, got[0].Index):], more...))

	// The log reopens with its first segments gone.
	closeLog(t, l)
	l = openLog(t, dir, testOptions(), nil)
	defer closeLog(t, l)
	if s := l.Segments(); s[0].Index != got[0].Index {
		t.Errorf("reopened with first segment %d, want %d", s[0].Index, got[0].Index)
	}
}

// firstInLast returns the index of the first record in the last segment,
// which must hold at least three.
func firstInLast(t *testing.T, recs []rec) int {
	t.Helper()
	last := recs[len(recs)-1].pos.Segment
	i := 0
	for recs[i].pos.Segment != last {
		i++
	}
	if len(recs)-i < 3 {
		t.Fatalf("the last segment holds %d records; the test needs 3", len(recs)-i)
	}
	return i
}

func countInSegment(recs []rec, seg uint64) int {
	n := 0
	for _, r := range recs {
		if r.pos.Segment == seg {
			n++
		}
	}
	return n
}

// gate is a sync hook whose segment fsyncs block while the gate is shut.
type gate struct {
	armed   atomic.Bool
	calls   atomic.Int64
	open    chan struct{}
	entered chan struct{}
}

func newGate() *gate {
	return &gate{open: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (g *gate) hook(path string) error {
	if !g.armed.Load() || !strings.HasSuffix(path, ".wal") {
		return nil
	}
	g.calls.Add(1)
	g.entered <- struct{}{}
	<-g.open
	return nil
}

func TestGroupCommit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		l, err := wal.OpenWithSyncHook(t.TempDir(), testOptions(), nil, g.hook)
		must(t, err)
		defer closeLog(t, l)
		g.armed.Store(true)

		first, err := l.Append([]byte("first"))
		must(t, err)
		errs := make(chan error, 100)
		go func() { errs <- l.Sync(context.Background(), first) }()
		<-g.entered // one fsync in flight, blocked

		const n = 16
		var wg sync.WaitGroup
		for i := range n {
			pos, err := l.Append([]byte("next " + strconv.Itoa(i)))
			must(t, err)
			wg.Go(func() { errs <- l.Sync(context.Background(), pos) })
		}
		synctest.Wait() // every Sync is waiting behind the fsync in flight
		close(g.open)
		wg.Wait()
		for range n + 1 {
			must(t, <-errs)
		}
		if c := g.calls.Load(); c != 2 {
			t.Errorf("%d fsyncs for %d Syncs, want 2: the one in flight and one covering all the others", c, n+1)
		}
		// A covered position returns at once, without an fsync.
		must(t, l.Sync(context.Background(), first))
		if c := g.calls.Load(); c != 2 {
			t.Errorf("Sync of a durable position fsynced")
		}
	})
}

func TestSyncContext(t *testing.T) {
	t.Parallel()
	t.Run("interval", func(t *testing.T) {
		t.Parallel()
		o := testOptions()
		o.Policy, o.Interval = wal.SyncInterval, time.Hour
		l := openLog(t, t.TempDir(), o, nil)
		defer closeLog(t, l)
		pos, err := l.Append([]byte("x"))
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Sync(ctx, pos); !errors.Is(err, context.Canceled) {
			t.Errorf("Sync(cancelled) = %v", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := l.Sync(ctx, pos); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Sync(timeout) = %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Sync took %s to notice its deadline", d)
		}
		if err := l.Sync(context.Background(), wal.Pos{Segment: pos.Segment, Offset: pos.Offset + 1}); err == nil {
			t.Error("Sync past the end of the log succeeded")
		}
	})
	t.Run("fsync in flight", func(t *testing.T) {
		t.Parallel()
		g := newGate()
		l, err := wal.OpenWithSyncHook(t.TempDir(), testOptions(), nil, g.hook)
		must(t, err)
		defer closeLog(t, l)
		g.armed.Store(true)
		pos, err := l.Append([]byte("x"))
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- l.Sync(ctx, pos) }()
		<-g.entered
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Sync = %v, want context.Canceled while the fsync is blocked", err)
		}
		close(g.open)
		must(t, l.Sync(context.Background(), pos))
	})
}

func TestFsyncFailureIsSticky(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	var calls atomic.Int64
	hook := func(string) error {
		calls.Add(1)
		if fail.Load() {
			return syscall.EIO
		}
		return nil
	}
	var lb logBuffer
	l, err := wal.OpenWithSyncHook(t.TempDir(), testOptions(), lb.logger(), hook)
	must(t, err)
	p1, err := l.Append([]byte("one"))
	must(t, err)
	must(t, l.Sync(context.Background(), p1))

	fail.Store(true)
	p2, err := l.Append([]byte("two"))
	must(t, err)
	err = l.Sync(context.Background(), p2)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	n := calls.Load()
	fail.Store(false) // a retry would now succeed; the log must not retry

	if _, err2 := l.Append([]byte("three")); err2 != err {
		t.Errorf("Append after fsync failure = %v, want %v", err2, err)
	}
	for _, p := range []wal.Pos{p1, p2} {
		if err2 := l.Sync(context.Background(), p); err2 != err {
			t.Errorf("Sync(%v) after fsync failure = %v, want %v", p, err2, err)
		}
	}
	if err2 := l.Close(); !errors.Is(err2, syscall.EIO) {
		t.Errorf("Close = %v, want the fsync error", err2)
	}
	if c := calls.Load(); c != n {
		t.Errorf("%d more fsyncs after the failure", c-n)
	}
	if !strings.Contains(lb.String(), "log failed") {
		t.Errorf("failure not logged: %q", lb.String())
	}
}

func TestFsyncFailureOnRoll(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	hook := func(string) error {
		if fail.Load() {
			return syscall.EIO
		}
		return nil
	}
	l, err := wal.OpenWithSyncHook(t.TempDir(), testOptions(), nil, hook)
	must(t, err)
	fail.Store(true)
	var aerr error
	for i := 0; aerr == nil && i < 1000; i++ {
		_, aerr = l.Append(payload(i))
	}
	if !errors.Is(aerr, syscall.EIO) {
		t.Fatalf("Append across a roll = %v, want EIO", aerr)
	}
	if _, err := l.Append(nil); err != aerr {
		t.Errorf("Append after failed roll = %v", err)
	}
	if err := l.Close(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Close = %v", err)
	}
}

// TestConcurrent has producers append and sync concurrently across segment
// rolls; every record must come back exactly once, in each producer's
// order.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	for _, policy := range []wal.SyncPolicy{wal.SyncEvery, wal.SyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := testOptions()
			o.SegmentBytes = 64 << 10
			o.Policy, o.Interval = policy, time.Millisecond
			// A slow fsync, so that Syncs pile up behind it.
			hook := func(string) error { time.Sleep(200 * time.Microsecond); return nil }
			l, err := wal.OpenWithSyncHook(dir, o, nil, hook)
			must(t, err)
			const producers, per = 8, 300
			var wg sync.WaitGroup
			errs := make(chan error, producers)
			for g := range producers {
				wg.Go(func() {
					for i := range per {
						p := make([]byte, 8+(g*31+i*17)%300)
						binary.LittleEndian.PutUint32(p, uint32(g))
						binary.LittleEndian.PutUint32(p[4:], uint32(i))
						pos, err := l.Append(p)
						if err == nil {
							err = l.Sync(context.Background(), pos)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			// Replay and Segments run alongside.
			wg.Go(func() {
				for range 5 {
					if err := l.Replay(wal.Pos{}, func(wal.Pos, []byte) error { return nil }); err != nil {
						errs <- err
						return
					}
					_ = l.Segments()
				}
			})
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			fsyncs, appends := l.Stats()
			t.Logf("%d appends, %d fsyncs (%.1f records per fsync)", appends, fsyncs, float64(appends)/float64(fsyncs))
			if appends != producers*per || fsyncs == 0 || fsyncs >= appends {
				t.Errorf("%d appends, %d fsyncs: no group commit", appends, fsyncs)
			}
			closeLog(t, l)

			l = openLog(t, dir, o, nil)
			defer closeLog(t, l)
			next := make([]uint32, producers)
			var last wal.Pos
			must(t, l.Replay(wal.Pos{}, func(pos wal.Pos, p []byte) error {
				if !last.Less(pos) {
					t.Fatalf("position %v after %v", pos, last)
				}
				last = pos
				g, i := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
				if i != next[g] {
					t.Fatalf("producer %d: record %d, want %d", g, i, next[g])
				}
				next[g]++
				return nil
			}))
			for g, n := range next {
				if n != per {
					t.Errorf("producer %d: %d records replayed, want %d", g, n, per)
				}
			}
			if len(l.Segments()) < 3 {
				t.Errorf("only %d segments: the test should cross rolls", len(l.Segments()))
			}
		})
	}
}

// TestSyncInterval checks, on a fake clock, that under SyncInterval a
// Sync waits for the next periodic fsync, which covers it, and that the
// syncer stays idle when nothing was appended.
func TestSyncInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var fsyncs atomic.Int64
		hook := func(path string) error {
			if strings.HasSuffix(path, ".wal") {
				fsyncs.Add(1)
			}
			return nil
		}
		o := testOptions()
		o.Policy, o.Interval = wal.SyncInterval, 10*time.Millisecond
		l, err := wal.OpenWithSyncHook(t.TempDir(), o, nil, hook)
		must(t, err)
		base := fsyncs.Load() // Open's own

		time.Sleep(100 * time.Millisecond)
		if n := fsyncs.Load() - base; n != 0 {
			t.Errorf("%d fsyncs of an idle log", n)
		}

		start := time.Now()
		time.Sleep(3 * time.Millisecond)
		pos, err := l.Append([]byte("x"))
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- l.Sync(context.Background(), pos) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Sync returned %v before the interval's fsync", err)
		default:
		}
		if n := fsyncs.Load() - base; n != 0 {
			t.Errorf("Sync triggered %d fsyncs under SyncInterval", n)
		}
		must(t, <-done)
		if d := time.Since(start); d != 10*time.Millisecond {
			t.Errorf("Sync returned after %s, want at the next tick (10ms)", d)
		}
		if n := fsyncs.Load() - base; n != 1 {
			t.Errorf("%d fsyncs, want 1", n)
		}

		// Many records between two ticks share one fsync.
		var last wal.Pos
		for i := range 100 {
			last, err = l.Append([]byte(strconv.Itoa(i)))
			must(t, err)
		}
		must(t, l.Sync(context.Background(), last))
		if n := fsyncs.Load() - base; n != 2 {
			t.Errorf("%d fsyncs, want 2", n)
		}
		closeLog(t, l)
	})
}

// TestCloseSyncs checks that Close makes appended records durable and
// releases waiting Syncs under SyncInterval.
func TestCloseSyncs(t *testing.T) {
	t.Parallel()
	o := testOptions()
	o.Policy, o.Interval = wal.SyncInterval, time.Hour
	var fsyncs atomic.Int64
	synctest.Test(t, func(t *testing.T) {
		l, err := wal.OpenWithSyncHook(t.TempDir(), o, nil, func(path string) error {
			if strings.HasSuffix(path, ".wal") {
				fsyncs.Add(1)
			}
			return nil
		})
		must(t, err)
		base := fsyncs.Load()
		pos, err := l.Append([]byte("x"))
		must(t, err)
		done := make(chan error)
		go func() { done <- l.Sync(context.Background(), pos) }()
		synctest.Wait() // the Sync is waiting for the next periodic fsync
		closeLog(t, l)
		must(t, <-done)
		if n := fsyncs.Load() - base; n != 1 {
			t.Errorf("%d fsyncs by Close, want 1", n)
		}
	})
}

// TestRemoveHoldsUpNoAppend blocks Remove in the middle of deleting old
// segments and checks that records are appended and synced meanwhile:
// deleting the segments a publish made unnecessary once held the log's
// locks, so every push to the partition waited for the unlinks.
func TestRemoveHoldsUpNoAppend(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	entered := make(chan string, 1)
	release := make(chan struct{})
	l, err := wal.OpenWithRemoveHook(dir, testOptions(), nil, func(path string) error {
		select {
		case entered <- path:
			<-release // the first deletion blocks
		default:
		}
		return os.Remove(path)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog(t, l)
	recs := appendN(t, l, 0, 100)
	segs := l.Segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	removed := make(chan error, 1)
	go func() { removed <- l.Remove(segs[2].Index) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Remove deleted nothing")
	}

	done := make(chan error, 1)
	go func() {
		for i := 100; i < 200; i++ {
			pos, err := l.Append(payload(i))
			if err != nil {
				done <- err
				return
			}
			if err := l.Sync(context.Background(), pos); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		close(release)
		t.Fatal("Append and Sync waited for Remove's deletions")
	}
	close(release)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if got := l.Segments(); got[0].Index != segs[2].Index {
		t.Fatalf("first segment %d after Remove(%d)", got[0].Index, segs[2].Index)
	}
	first := 0
	for recs[first].pos.Segment < segs[2].Index {
		first++
	}
	if got := replayAll(t, l, wal.Pos{}); len(got) != 200-first {
		t.Fatalf("replayed %d records, want %d", len(got), 200-first)
	}
}

package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/weirlabs/weir/internal/durable"
)

// Errors callers match with errors.Is.
var (
	// ErrClosed is returned by calls on a closed log.
	ErrClosed = errors.New("wal: log closed")
	// ErrTooLarge is returned by Append for a payload over
	// Options.MaxRecordBytes.
	ErrTooLarge = errors.New("wal: record too large")
	// ErrNoSpace is matched by the errors of writes that failed because
	// the file system is full or the quota is used up (ENOSPC, EDQUOT);
	// the errors also match the system's error. Append returns it only
	// when it undid the failed write: the log is unchanged and usable, and
	// an Append once space is freed succeeds. Open returns it when there
	// is no room to create a new log.
	ErrNoSpace = errors.New("wal: no space left on device")
)

// noSpaceError is a failed write for lack of space: it reads as its cause
// and matches both ErrNoSpace and the cause.
type noSpaceError struct{ err error }

func (e *noSpaceError) Error() string   { return e.err.Error() }
func (e *noSpaceError) Unwrap() []error { return []error{ErrNoSpace, e.err} }

// classify marks err as ErrNoSpace if a full file system or quota caused
// it, and returns it unchanged otherwise.
func classify(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &noSpaceError{err: err}
	}
	return err
}

var errBeyondEnd = errors.New("position beyond the end of the log")

// CorruptionError reports a damaged log: a record or segment header that
// fails its checks where a crash cannot explain it. Open returns it
// without modifying anything; repair is an operator's decision.
type CorruptionError struct {
	Segment string // path of the segment file
	Offset  int64  // byte offset in it of the damaged header or record
	Err     error  // what is wrong
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt segment %s at offset %d: %v", e.Segment, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// Damage is a span of a segment that holds no valid record, which a log
// opened with Options.SkipDamage passes over. The records before and
// after it are intact; what the span held is lost, unless its bytes (see
// Log.Scan) still make sense to the caller.
type Damage struct {
	Segment uint64 // index of the segment
	Path    string // path of the segment file
	// Offset is the byte offset in the segment of the span's first byte;
	// Length is the span's size in bytes. A missing segment is a span of
	// no bytes at offset 0 of the segment after the gap.
	Offset, Length int64
	Err            error // what is wrong at Offset
}

func (d Damage) String() string {
	return fmt.Sprintf("segment %s offset %d (%d bytes): %v", d.Path, d.Offset, d.Length, d.Err)
}

// Pos is a position in the log: the end of an appended record. Positions
// compare in log order with Less; the zero Pos is before every record.
type Pos struct {
	Segment uint64 // index of the segment
	Offset  int64  // byte offset in the segment just past the record
}

// Less reports whether p is before q in the log.
func (p Pos) Less(q Pos) bool {
	return p.Segment < q.Segment || p.Segment == q.Segment && p.Offset < q.Offset
}

// Segment describes one segment file.
type Segment struct {
	Index uint64 // position in the sequence; file name is the zero-padded index
	Path  string
	Size  int64 // bytes, header included
}

// Log is a write-ahead log in one directory. Its methods are safe for
// concurrent use. Append order is log order: callers that need an order
// across goroutines must serialise their Appends themselves.
//
// Lock order: removeMu, then syncMu, then mu. syncMu is held across every fsync (so one
// is in flight at a time and no file is closed under it); mu guards the
// state and is never held across an fsync except by a segment roll, which
// must finish its fsync before the next record can be written.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger
	// syncHook, set by tests, is called instead of every fsync.
	syncHook func(path string) error
	// writeHook, set by tests, is called before every write to a segment
	// with the file's path and the write's length; the write then stores
	// only the first n bytes and fails with err if err is not nil.
	writeHook func(path string, size int) (n int, err error)
	// removeHook, set by tests, is called instead of deleting a segment.
	removeHook func(path string) error

	syncMu   sync.Mutex
	removeMu sync.Mutex // one Remove at a time

	mu       sync.Mutex
	segs     []Segment // oldest first; the last is current
	cur      *os.File  // the current segment, open for writing
	written  Pos       // end of the last record written
	synced   Pos       // everything before it is durable
	inflight bool      // an fsync is running outside mu
	target   Pos       // what the running fsync will make durable
	dirDirty bool      // the current segment's directory entry is not yet synced
	err      error     // sticky: set by the first failed fsync
	closed   bool
	damage   []Damage      // spans Open skipped, in log order; see Options.SkipDamage
	changed  chan struct{} // closed and replaced when synced or err changes
	scratch  []byte        // frame buffer for Append
	stats    stats

	kick chan struct{} // capacity 1: SyncEvery asks the syncer for an fsync
	stop chan struct{} // closed by Close
	wg   sync.WaitGroup
}

// stats count fsyncs for tests and benchmarks.
type stats struct {
	appends uint64 // records appended
	fsyncs  uint64 // fsyncs of segment data (rolls included)
}

// scratchMax bounds the frame buffer Append keeps; larger payloads are
// written with two write calls instead of being copied.
const scratchMax = 1 << 20

// Open opens the log in dir, creating dir and an empty first segment if
// needed, and starts the log's syncer goroutine; Close stops it. A nil
// logger discards.
//
// Open checks every record of every segment. A torn or corrupt tail of
// the last segment (an incomplete record, a bad checksum or zeros, with no
// valid record anywhere after it) is what a crash leaves behind: Open
// truncates it, logs a warning naming the segment, the offset and the
// bytes dropped, and continues. Damage anywhere else (a bad record that a
// valid one follows in the last segment, any bad record or header in an
// earlier segment, a gap in the segment numbers) makes Open return a
// *CorruptionError without modifying anything, unless
// Options.SkipDamage is set: then Open logs each damaged span at error
// level, lists it in Damage and opens, still modifying nothing but a torn
// tail. A segment of another format version is a *CorruptionError
// either way.
//
// Before it returns, Open fsyncs the last segment and the directory, so
// whatever Replay delivers is durable even if it was written by a process
// that crashed before syncing.
//
// Only one Log may be open on a directory at a time; Open does not lock
// the directory, the caller (one buffer per data directory) ensures it.
func Open(dir string, opts Options, log *slog.Logger) (*Log, error) {
	return open(dir, opts, log, nil, nil)
}

func open(dir string, opts Options, logger *slog.Logger, syncHook func(string) error, writeHook func(string, int) (int, error)) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		dir:       dir,
		opts:      opts,
		log:       logger,
		syncHook:  syncHook,
		writeHook: writeHook,
		changed:   make(chan struct{}),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	if err := l.mkdirAll(dir); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, classify(err))
	}
	segs, gaps, err := listSegments(dir, opts.SkipDamage)
	if ce := (*CorruptionError)(nil); errors.As(err, &ce) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	if len(segs) == 0 {
		err = l.create()
	} else {
		err = l.recover(segs, gaps)
	}
	if err != nil {
		return nil, err
	}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// create starts an empty log with segment 1.
func (l *Log) create() error {
	s := Segment{Index: 1, Path: filepath.Join(l.dir, segmentName(1)), Size: headerSize}
	f, err := l.createSegment(s.Path)
	if err != nil {
		return fmt.Errorf("wal: create segment: %w", classify(err))
	}
	if err := l.fsyncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("wal: %w", err)
	}
	if err := l.fsyncDir(); err != nil {
		f.Close()
		return fmt.Errorf("wal: %w", err)
	}
	l.segs = []Segment{s}
	l.cur = f
	l.written = Pos{Segment: s.Index, Offset: headerSize}
	l.synced = l.written
	return nil
}

// recover checks every segment and truncates a torn tail of the last.
// gaps are the missing segments listSegments found (with SkipDamage).
func (l *Log) recover(segs []Segment, gaps []Damage) error {
	var torn *scanResult
	var damage []Damage
	for i := range segs {
		s := &segs[i]
		last := i == len(segs)-1
		for len(gaps) > 0 && gaps[0].Segment == s.Index {
			damage = append(damage, gaps[0])
			gaps = gaps[1:]
		}
		res, err := scanSegment(s.Path, last, l.opts.MaxRecordBytes, l.opts.SkipDamage)
		if errors.Is(err, errSearchBudget) {
			return &CorruptionError{Segment: s.Path, Offset: res.end, Err: err}
		}
		if err != nil {
			return fmt.Errorf("wal: scan %s: %w", s.Path, err)
		}
		s.Size = res.size
		for _, d := range res.damage {
			d.Segment, d.Path = s.Index, s.Path
			damage = append(damage, d)
		}
		if res.bad == nil {
			continue
		}
		switch {
		case res.fatal:
			return &CorruptionError{Segment: s.Path, Offset: res.end, Err: res.bad}
		case !last && l.opts.SkipDamage:
			// Nothing valid follows in this segment: the rest of it is
			// one damaged span, and the next segment goes on.
			damage = append(damage, Damage{Segment: s.Index, Path: s.Path, Offset: res.end, Length: res.size - res.end, Err: res.bad})
			continue
		case !last:
			return &CorruptionError{Segment: s.Path, Offset: res.end, Err: res.bad}
		case res.next >= 0:
			return &CorruptionError{Segment: s.Path, Offset: res.end,
				Err: fmt.Errorf("%w, and a valid record follows at offset %d", res.bad, res.next)}
		}
		torn = &res
	}

	// Everything checked: from here on the log may be modified.
	s := &segs[len(segs)-1]
	f, err := os.OpenFile(s.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: open segment: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		return fmt.Errorf("wal: repair %s: %w", s.Path, err)
	}
	if torn != nil {
		if err := f.Truncate(torn.end); err != nil {
			return fail(err)
		}
		if torn.end < headerSize {
			if _, err := l.writeAt(f, appendHeader(nil), 0); err != nil {
				return fail(err)
			}
			s.Size = headerSize
		} else {
			s.Size = torn.end
		}
		l.log.Warn("wal: truncated torn tail of the last segment",
			"segment", s.Path, "offset", torn.end, "dropped_bytes", torn.size-torn.end, "cause", torn.bad.Error())
	}
	if err := l.fsyncFile(f); err != nil {
		return fail(err)
	}
	if err := l.fsyncDir(); err != nil {
		return fail(err)
	}
	for _, d := range damage {
		l.log.Error("wal: skipping a damaged span of the log",
			"segment", d.Path, "offset", d.Offset, "bytes", d.Length, "cause", d.Err.Error())
	}
	l.segs = segs
	l.damage = damage
	l.cur = f
	l.written = Pos{Segment: s.Index, Offset: s.Size}
	l.synced = l.written
	return nil
}

// mkdirAll creates dir and its missing parents, fsyncing the parent of
// each directory it creates so that the new entries survive a crash.
func (l *Log) mkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := l.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return l.syncPath(parent)
}

// Append writes payload as the next record and returns its position. The
// record is handed to the kernel (write(2)) but not synced: call Sync
// before treating it as durable. payload is not retained.
//
// A payload over Options.MaxRecordBytes fails with ErrTooLarge. A failed
// write is undone (the segment is truncated back) and returned, matching
// ErrNoSpace if the file system is full, and the log stays usable; if it
// cannot be undone the log is failed like after an fsync error. A failed
// roll to a new segment is undone the same way: the current segment stays
// current and the next Append tries again.
func (l *Log) Append(payload []byte) (Pos, error) {
	if len(payload) > l.opts.MaxRecordBytes {
		return Pos{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), l.opts.MaxRecordBytes)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return Pos{}, err
	}
	if l.written.Offset >= l.opts.SegmentBytes {
		// Rolling fsyncs, which needs syncMu, which comes before mu.
		l.mu.Unlock()
		l.syncMu.Lock()
		l.mu.Lock()
		err := l.usableLocked()
		if err == nil && l.written.Offset >= l.opts.SegmentBytes {
			err = l.rollLocked()
		}
		l.syncMu.Unlock()
		if err != nil {
			return Pos{}, err
		}
	}

	off := l.written.Offset
	var err error
	if len(payload) <= scratchMax {
		l.scratch = append(appendFrameHeader(l.scratch[:0], payload), payload...)
		_, err = l.writeAt(l.cur, l.scratch, off)
	} else {
		hdr := appendFrameHeader(make([]byte, 0, frameHeaderSize), payload)
		if _, err = l.writeAt(l.cur, hdr, off); err == nil {
			_, err = l.writeAt(l.cur, payload, off+frameHeaderSize)
		}
	}
	if err != nil {
		if terr := l.cur.Truncate(off); terr != nil {
			l.failLocked(fmt.Errorf("wal: append: %w; undoing it failed too: %w", err, terr))
			return Pos{}, l.err
		}
		return Pos{}, fmt.Errorf("wal: append: %w", classify(err))
	}
	l.written.Offset = off + frameHeaderSize + int64(len(payload))
	l.segs[len(l.segs)-1].Size = l.written.Offset
	l.stats.appends++
	return l.written, nil
}

func (l *Log) usableLocked() error {
	switch {
	case l.err != nil:
		return l.err
	case l.closed:
		return ErrClosed
	}
	return nil
}

// rollLocked makes the current segment durable and starts the next one.
// The current segment is fsynced before the next is created, so every
// segment but the last is complete on disk: damage in one can only be
// corruption, never a torn write. Called with syncMu and mu held.
func (l *Log) rollLocked() error {
	if err := l.syncCurrentLocked(); err != nil {
		return err
	}
	next := Segment{Index: l.written.Segment + 1, Size: headerSize}
	next.Path = filepath.Join(l.dir, segmentName(next.Index))
	f, err := l.createSegment(next.Path)
	if err != nil {
		err = fmt.Errorf("wal: create segment: %w", err)
		if _, serr := os.Lstat(next.Path); !errors.Is(serr, os.ErrNotExist) {
			// A file left behind would fail every later roll.
			l.failLocked(fmt.Errorf("%w; %s is left behind", err, next.Path))
			return l.err
		}
		// The current segment stays current; the next Append tries again.
		return classify(err)
	}
	if err := l.cur.Close(); err != nil {
		l.log.Warn("wal: close synced segment", "segment", l.segs[len(l.segs)-1].Path, "err", err)
	}
	l.cur = f
	l.segs = append(l.segs, next)
	l.written = Pos{Segment: next.Index, Offset: headerSize}
	l.dirDirty = true
	return nil
}

// syncCurrentLocked fsyncs the current segment (and the directory if its
// entry is new) while holding mu, and publishes the result. Called with
// syncMu and mu held, by rolls and Close.
func (l *Log) syncCurrentLocked() error {
	if !l.synced.Less(l.written) && !l.dirDirty {
		return nil
	}
	target := l.written
	err := l.fsyncFile(l.cur)
	if err == nil && l.dirDirty {
		err = l.fsyncDir()
	}
	l.finishSyncLocked(target, err)
	return l.err
}

// finishSyncLocked publishes the outcome of an fsync that covered
// everything before target.
func (l *Log) finishSyncLocked(target Pos, err error) {
	if err != nil {
		l.failLocked(fmt.Errorf("wal: %w", err))
		return
	}
	l.dirDirty = false
	l.stats.fsyncs++
	if l.synced.Less(target) {
		l.synced = target
		l.broadcastLocked()
	}
}

// failLocked makes err the log's sticky error. The kernel may have
// dropped the dirty pages an fsync failed to write, so a retry that
// succeeds would prove nothing; the log refuses all further work.
func (l *Log) failLocked(err error) {
	if l.err != nil {
		return
	}
	l.err = err
	l.log.Error("wal: log failed; every further Append and Sync will fail", "dir", l.dir, "err", err)
	l.broadcastLocked()
}

func (l *Log) broadcastLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Sync returns nil once every record up to pos is durable: the segment
// holding pos has been fsynced after the record was written, and, for a
// new segment, so has the directory. pos must come from Append (or be
// before it); a pos past the end of the log is an error.
//
// Under SyncEvery, Sync asks for an fsync unless one already running will
// cover pos; concurrent Syncs share fsyncs. Under SyncInterval it waits
// for the next periodic fsync. Sync returns early with ctx's error if ctx
// ends first; pos becomes durable all the same once the fsync runs.
//
// After an fsync error, every Sync (like every Append) returns that error,
// even for positions that were durable before it: a failed log is failed.
// After a successful Close, Sync returns nil for every appended position.
func (l *Log) Sync(ctx context.Context, pos Pos) error {
	l.mu.Lock()
	for {
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return err
		}
		if !l.synced.Less(pos) {
			l.mu.Unlock()
			return nil
		}
		if l.written.Less(pos) {
			written := l.written
			l.mu.Unlock()
			return fmt.Errorf("wal: sync %v: %w %v", pos, errBeyondEnd, written)
		}
		if l.opts.Policy == SyncEvery && (!l.inflight || l.target.Less(pos)) {
			select {
			case l.kick <- struct{}{}:
			default: // a request is already pending; it will cover pos
			}
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wal: sync %v: %w", pos, ctx.Err())
		}
		l.mu.Lock()
	}
}

// run is the syncer goroutine: it fsyncs when Sync asks (SyncEvery) or on
// every tick (SyncInterval), until Close.
func (l *Log) run() {
	defer l.wg.Done()
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "wal")))
	var tick <-chan time.Time
	if l.opts.Policy == SyncInterval {
		t := time.NewTicker(l.opts.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-tick:
		}
		l.syncOnce()
	}
}

// syncOnce fsyncs the current segment, without holding mu during the
// fsync so that Appends continue, and publishes what it covered.
func (l *Log) syncOnce() {
	// The producers the previous fsync released are runnable but have not
	// appended yet; yielding once lets them, so that this fsync covers them
	// too instead of leaving them for the next. Measured: 8 producers of
	// 16 KiB get 6.5 instead of 4 records per fsync and 13-37 % more
	// throughput (bench/RESULTS.md, "Write-ahead log").
	runtime.Gosched()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if l.err != nil || l.closed || !l.synced.Less(l.written) {
		l.mu.Unlock()
		return
	}
	f, dir, target := l.cur, l.dirDirty, l.written
	l.inflight, l.target = true, target
	l.mu.Unlock()

	err := l.fsyncFile(f)
	if err == nil && dir {
		err = l.fsyncDir()
	}

	l.mu.Lock()
	l.inflight = false
	l.finishSyncLocked(target, err)
	l.mu.Unlock()
}

// writeAt writes b at off in f, through the test hook if there is one.
func (l *Log) writeAt(f *os.File, b []byte, off int64) (int, error) {
	if l.writeHook == nil {
		return f.WriteAt(b, off)
	}
	n, herr := l.writeHook(f.Name(), len(b))
	n = max(0, min(n, len(b)))
	if herr == nil {
		n = len(b)
	}
	k, err := f.WriteAt(b[:n], off)
	if err == nil && herr != nil {
		err = &os.PathError{Op: "write", Path: f.Name(), Err: herr}
	}
	return k, err
}

func (l *Log) fsyncFile(f *os.File) error {
	if l.syncHook != nil {
		if err := l.syncHook(f.Name()); err != nil {
			return fmt.Errorf("fsync %s: %w", f.Name(), err)
		}
		return nil
	}
	return fdatasync(f)
}

func (l *Log) fsyncDir() error { return l.syncPath(l.dir) }

// syncPath fsyncs a directory, making its entries durable.
func (l *Log) syncPath(dir string) error {
	if l.syncHook != nil {
		if err := l.syncHook(dir); err != nil {
			return fmt.Errorf("fsync %s: %w", dir, err)
		}
		return nil
	}
	return durable.SyncDir(dir)
}

// Replay calls fn for each record after from, in log order, with its
// position; the zero Pos replays the whole log (from the oldest segment
// still present). payload is valid only during the call. Replay stops at
// the first error fn returns and returns it unchanged. Damaged spans that
// Open skipped (Options.SkipDamage) are passed over; Scan reports them.
//
// Replay sees the records appended before it started; it may run
// concurrently with Append and Sync. It reads the segments through their
// own file handles, so a concurrent Remove of a segment it has not yet
// opened makes it fail. A record that fails its checksum now (damage
// since Open) is a *CorruptionError.
func (l *Log) Replay(from Pos, fn func(pos Pos, payload []byte) error) error {
	return l.Scan(from, fn, nil)
}

// Scan is Replay that also calls damaged, if not nil, for each damaged
// span Open skipped that ends after from, in log order among the records:
// after the records before it and before those after it. raw holds the
// span's first bytes, at most Options.MaxRecordBytes plus a frame header
// of them, and is valid only during the call. Scan stops at the first
// error either function returns and returns it unchanged.
func (l *Log) Scan(from Pos, fn func(pos Pos, payload []byte) error, damaged func(d Damage, raw []byte) error) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	var segs []Segment
	for _, s := range l.segs {
		if s.Index >= from.Segment {
			segs = append(segs, s)
		}
	}
	spans := l.damage
	l.mu.Unlock()

	r := &replayer{from: from, fn: fn, damaged: damaged, max: l.opts.MaxRecordBytes}
	for _, s := range segs {
		for len(spans) > 0 && spans[0].Segment < s.Index {
			spans = spans[1:]
		}
		n := 0
		for n < len(spans) && spans[n].Segment == s.Index {
			n++
		}
		if err := r.segment(s, spans[:n]); err != nil {
			return err
		}
		spans = spans[n:]
	}
	return nil
}

// Damage returns the damaged spans Open skipped (Options.SkipDamage) in
// the segments still present, in log order.
func (l *Log) Damage() []Damage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Damage(nil), l.damage...)
}

// Segments returns the log's segments, oldest first; the last is the one
// being written, and its Size grows with every Append.
func (l *Log) Segments() []Segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Segment(nil), l.segs...)
}

// Remove deletes every segment whose Index is below before, except the
// current one, and fsyncs the directory. The caller decides which records
// are no longer needed (typically: all records in the segment are in the
// lake). Segments are deleted oldest first, so a crash part-way leaves no
// gap. Append and Sync do not wait for the deletions, only for the
// directory's fsync, which is one fsync like the others. Deleting may take
// long (tens of milliseconds per segment on a file system that discards
// freed blocks online): call Remove where that wait harms no one.
func (l *Log) Remove(before uint64) error {
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	var doomed []Segment
	for _, s := range l.segs[:len(l.segs)-1] {
		if s.Index >= before {
			break
		}
		doomed = append(doomed, s)
	}
	l.mu.Unlock()

	n := 0
	var err error
	for _, s := range doomed {
		remove := os.Remove
		if l.removeHook != nil {
			remove = l.removeHook
		}
		if rerr := remove(s.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("wal: remove segment: %w", rerr)
			break
		}
		n++
	}
	if n == 0 {
		return err
	}
	// Only Remove drops segments, one at a time, and rolls add them at
	// the end: the n deleted are still the first n.
	l.mu.Lock()
	l.segs = append([]Segment(nil), l.segs[n:]...)
	d := 0
	for d < len(l.damage) && l.damage[d].Segment < l.segs[0].Index {
		d++
	}
	l.damage = append([]Damage(nil), l.damage[d:]...)
	l.mu.Unlock()

	l.syncMu.Lock()
	serr := l.fsyncDir()
	l.syncMu.Unlock()
	if serr != nil {
		l.mu.Lock()
		l.failLocked(fmt.Errorf("wal: %w", serr))
		serr = l.err
		l.mu.Unlock()
		return errors.Join(err, serr)
	}
	return err
}

// Close fsyncs what was appended, stops the syncer goroutine and closes
// the current segment. It returns the log's fsync error, if it has one.
// Sync calls waiting for positions that Close makes durable return nil;
// Append and Replay return ErrClosed afterwards. Calling Close again
// returns nil.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	l.mu.Unlock()
	l.wg.Wait()

	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.err
	if err == nil {
		err = l.syncCurrentLocked()
	}
	if cerr := l.cur.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("wal: close segment: %w", cerr))
	}
	return err
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/durable"
)

// Partition identifies the file a batch belongs in.
type Partition struct {
	Tenant string
	Stream string
	Part   int32     // stream partition (buffer ring); each file holds one
	Hour   time.Time // UTC, truncated to the hour (to the day if Day), of the records' timestamps
	// Day marks a day file: its rows lie anywhere in the UTC date that
	// starts at Hour. The lake writes the rows of dates that ended more
	// than Config.DayFilesAfter ago (a backfill, late records) to their
	// date's day file, so that sparse hours do not become a file each.
	Day bool
}

// FileInfo describes one Parquet file.
type FileInfo struct {
	// ID is unique and sorts by creation: the UTC creation time to the
	// nanosecond and 8 random hex digits, 20260102T030405.123456789Z-1a2b3c4d.
	// It is the file's base name without ".parquet".
	ID        string
	Partition Partition
	Path      string // absolute path of the published file
	Rows      int64
	Bytes     int64 // size on disk once published; 0 in Observer.Staged
	// MinOffset and MaxOffset are the range of the _offset column (an
	// int64 column of that name), or -1 when the schema has none.
	MinOffset, MaxOffset int64
	// Columns is the number of top-level columns of the file's schema.
	Columns int
	// Compacted is set for files written by compaction (see Compact):
	// their rows are sorted, and they are not compacted again.
	Compacted bool
	// Rollup is set for files whose footer holds the counts of their
	// rows by minute, service, severity and pattern id, and their most
	// frequent bodies (docs/format.md, "Rollups"): compacted files.
	Rollup bool
	// RollupCounts is how many counts a file's rollup holds (one per
	// minute, service, severity and pattern id of its rows); 0 without a
	// rollup, or when unknown (a lake in object storage whose journal
	// predates the field). It bounds what loading the rollup costs.
	RollupCounts int
	// Evicted is set for a file of a lake in object storage whose local
	// copy was evicted from the cache (Remote.CacheBytes): Path does not
	// exist, the file is in the bucket only; Lake.Fetch brings it back.
	Evicted bool
	// Location is the URI of the file where the lake keeps it for good:
	// file:///<Path> for a lake on local disk. It is set by
	// CommittedFiles only.
	Location string

	// schema identifies the file's Arrow schema (see schemaID): files
	// of one identity can be compacted together. 0 when unknown.
	schema uint64
}

// SchemaID identifies the file's Arrow schema by its columns' names,
// types and order: files with the same non-zero SchemaID have the same
// columns. It is 0 when unknown (a footer without a schema weir reads).
func (f FileInfo) SchemaID() uint64 { return f.schema }

// Observer learns about rows as they are staged into a file and when the
// file is published. Its methods are called from the goroutine that
// writes or publishes the file (a Write caller, the age publisher, Flush or
// Shutdown), at most one call per file at a time; calls for different
// files may run concurrently. They should return quickly: the file's
// partition waits for them. They may call Files and LastOffset but not
// Write, Flush or Shutdown (the file's lock is held: that would deadlock).
type Observer interface {
	// Staged is called after the rows of one Write were encoded into seg,
	// a complete Parquet file in the lake's encoding, once per Write.
	// seg.Path is valid during the call only: the lake deletes the
	// segment once its file is published or abandoned, so an observer
	// that reads it later must link or copy it (the query engine
	// hard-links it). f.Path is where the file WILL be published; f.Rows
	// and the offsets include seg's rows. An error is logged (throttled)
	// and changes nothing: the rows are in the file and will be published,
	// so Write still returns nil (the caller must not send them again).
	Staged(f FileInfo, seg Segment) error
	// Published is called once per file, after it is durably in place
	// (data fsync, rename, directory fsync) and listed by Lake.Files. An
	// error does not unpublish the file: it is logged, and returned by
	// Flush or Shutdown when they did the publishing.
	Published(f FileInfo) error
	// Replaced is called once compaction has published f, which holds
	// every row of old, or a delete (DeleteRows) has published f, which
	// holds the rows of old that were not deleted, and removed old from
	// Files. The observer now owns
	// the files of old: it stops showing them (and starts showing f) and
	// deletes them once no reader needs them. Files of old that are still
	// on disk at the next start are deleted then, since f names them.
	Replaced(f FileInfo, old []FileInfo)
	// Abandoned is called once per file that will never be published
	// (see FileError), after its temporary file was deleted, so that an
	// observer can forget the rows it was shown for it.
	Abandoned(f FileInfo)
	// Removed is called once retention, or a delete that left no row in
	// them (DeleteRows), has removed files from Files for good (their
	// rows are no longer part of the lake). As with
	// Replaced, the observer now owns the files: it stops showing them,
	// in one change, and deletes them once no reader needs them. Files
	// still on disk at the next start are deleted then (the lake's
	// removal journal names them).
	Removed(files []FileInfo)
}

// Errors. Match them with errors.Is.
var (
	ErrClosed           = errors.New("sink: lake is shut down")
	ErrInvalidPartition = errors.New("sink: invalid partition")
)

// FileError reports a file that was abandoned: encoding a batch, writing
// the footer, an fsync or the rename failed. Its temporary file is
// deleted and it is never published (Observer.Published is not called), so
// none of its rows (File.Rows, offsets File.MinOffset to File.MaxOffset of
// File.Partition) reach the lake although the Write calls that staged them
// returned nil. The caller must send them again; the buffer, which keeps
// records until they are published, is expected to rewind.
//
// A failed publish is not retried: after a failed fsync the kernel may
// have dropped the dirty pages, so a second fsync proves nothing, and a
// Parquet writer cannot be resumed after a failed write.
type FileError struct {
	File FileInfo
	Err  error
}

func (e *FileError) Error() string {
	p := e.File.Partition
	hour := p.Hour.Format("2006-01-02T15")
	if p.Day {
		hour = p.Hour.Format("2006-01-02") + " (day file)"
	}
	return fmt.Sprintf("sink: file %s of %s/%s part %d hour %s (%d rows, offsets %d to %d) abandoned: %v",
		e.File.ID, p.Tenant, p.Stream, p.Part, hour, e.File.Rows, e.File.MinOffset, e.File.MaxOffset, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Lake writes record batches to Parquet files under Config.Dir and
// publishes each file atomically. See docs/format.md for the layout.
//
// Each Partition has at most one open file. A file is published when its
// encoded size reaches Config.TargetFileBytes (by the age publisher started
// by Start, in the background, while the partition's next Write goes to a
// new file; by the Write that crossed it when the publisher is not running
// or already has two such files to publish), when it is Config.MaxFileAge
// old (by the age publisher), when a batch with another schema arrives for its Partition, when
// Config.MaxOpenFiles would be exceeded (the oldest file: after Start by
// a pool of publishers in the background, see displace.go; by the Write
// that opens one more when the pool does not run or is behind by
// MaxOpenFiles files), and on Flush and Shutdown.
//
// Locking: Lake.mu guards the maps and lists and is never held during I/O
// or while waiting for a file's lock. Each open file has its own lock,
// held while queuing a batch into it, committing its encoded segments
// and publishing it (Parquet footer, fsync, rename), so Writes to
// different partitions run in parallel and a slow fsync only holds up
// its own partition. Encoding holds no lock (staging.go). Lock order: a
// file's lock, then Lake.mu; no goroutine holds two file locks, and the
// encoders never wait for a file's lock.
type Lake struct {
	cfg Config
	obs Observer
	log *slog.Logger
	mem memory.Allocator

	stopOnce      sync.Once
	stop          chan struct{}      // closed by Shutdown to stop the age publisher
	done          chan struct{}      // closed when the age publisher returns; nil before Start
	stopCompactor context.CancelFunc // cancels the compactor; nil before Start or without compaction
	compactorDone chan struct{}      // closed when the compactor returns
	compacting    chan struct{}      // held by a running Compact
	sealq         chan *openFile     // files full by size, for the age publisher to publish
	displacedq    chan *openFile     // displaced files (MaxOpenFiles), for their publishers (displace.go); set by Start
	displacedDone chan struct{}      // closed when the displaced publishers return; nil before Start
	encWG         sync.WaitGroup     // the encoders (staging.go)
	encq          chan *pendingSeg   // batches for the encoders; set by Start

	mu      sync.Mutex
	closed  bool
	encStop chan struct{} // closed to stop the encoders; nil when they do not run
	// publishing is set while the age publisher runs and takes files from
	// sealq.
	publishing bool
	displacing bool                  // set while the displaced publishers take files from displacedq
	open       map[fileKey]*openFile // attached files, at most cfg.MaxOpenFiles
	sealing    map[*openFile]bool    // detached, not yet published or abandoned
	files      []FileInfo            // published files, sorted by ID
	last       map[streamKey]int64   // max _offset+1 of published files
	failed     map[streamKey][]error // FileErrors not yet returned to a Write
	lost       map[streamKey]int64   // lowest _offset of an abandoned file, per stream partition
	lastID     time.Time             // creation time of the newest ID handed out
	durable    map[string]bool       // directories whose entry in their parent is known durable
	// announcing holds files published but not yet reported to the
	// Observer; compaction leaves them alone until they are.
	announcing map[string]bool
	warnedEv   time.Time // last eviction warning, to throttle it

	stagedErrs   int       // Observer.Staged failures not yet logged
	stagedLogged time.Time // last log of them

	ret   retention          // retention.go
	cst   compactionCounters // compact.go
	rem   *remote            // remote.go; nil without Config.Remote
	cache cache              // cache.go; with Config.Remote

	// scanReplaced holds the IDs that the footers of the files found by
	// scan replace, for openRemote; nil afterwards.
	scanReplaced map[string]bool
	damaged      []DamagedFile // set aside by scan and SetAside, before Start
	// undecodable are the paths of published files that compaction
	// found damaged and leaves out (noteUndecodable) until Mend replaces
	// them.
	undecodable map[string]bool
	// mended are the IDs of files Mend looked at, each once.
	mended map[string]bool
}

const stagedLogEvery = 10 * time.Second

// fileKey is the comparable form of a normalized Partition.
type fileKey struct {
	tenant, stream string
	part           int32
	hour           int64 // Unix seconds
	day            bool
}

// streamKey names a stream partition: the unit _offset counts in.
type streamKey struct {
	tenant, stream string
	part           int32
}

func keyOf(p Partition) fileKey {
	return fileKey{tenant: p.Tenant, stream: p.Stream, part: p.Part, hour: p.Hour.Unix(), day: p.Day}
}

func streamOf(p Partition) streamKey {
	return streamKey{tenant: p.Tenant, stream: p.Stream, part: p.Part}
}

// maxDurableDirs bounds the cache of directories known durable; past it
// the cache is cleared, which costs a few extra directory fsyncs.
const maxDurableDirs = 4096

// New returns a Lake writing under cfg.Dir, which it creates if needed.
// It deletes leftover temporary files (never published; logged as a
// warning with their count) and reads the footer of every published file
// to fill Files and LastOffset. A published file that cannot be read (an
// I/O error) is an error. One whose footer does not parse is damaged: New
// moves it to <Dir>/.damaged/ and logs it (Damaged lists them), up to
// Config.MaxDamagedFiles, and fails past that or when the lake has a
// Remote (whose bucket may hold a sound copy).
// obs may be nil; log nil means slog.Default().
//
// Only one Lake may write a Dir at a time: New deletes every temporary
// file under Dir, including those of another live writer.
func New(cfg Config, obs Observer, log *slog.Logger) (*Lake, error) {
	return newLake(cfg, obs, log, memory.DefaultAllocator)
}

func newLake(cfg Config, obs Observer, log *slog.Logger, mem memory.Allocator) (*Lake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sink: lake directory %q: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sink: create lake directory: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	l := &Lake{
		cfg:     cfg,
		obs:     obs,
		log:     log,
		mem:     mem,
		stop:    make(chan struct{}),
		open:    make(map[fileKey]*openFile),
		sealing: make(map[*openFile]bool),
		last:    make(map[streamKey]int64),
		failed:  make(map[streamKey][]error),
		lost:    make(map[streamKey]int64),
		durable: make(map[string]bool),

		announcing: make(map[string]bool),
		compacting: make(chan struct{}, 1),
		sealq:      make(chan *openFile, sealQueue),
	}
	if err := l.scan(); err != nil {
		return nil, err
	}
	if cfg.Remote != nil {
		if err := l.openRemote(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Start starts the age publisher, which publishes files MaxFileAge after
// their first row, the encoders, which turn Writes' batches into
// segments in parallel (Config.Encoders), and the compactor. ctx bounds
// start-up only; the goroutines run until Shutdown. Without Start, files
// are published only by size, schema change, MaxOpenFiles, Flush and
// Shutdown, and each Write encodes its batch itself.
func (l *Lake) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.done != nil:
		return errors.New("sink: Start called twice")
	}
	l.done = make(chan struct{})
	l.publishing = true
	go l.agePublisher(l.stop, l.done)
	l.startEncoders(l.cfg.encoders())
	l.startDisplacedPublishers()
	if l.cfg.CompactAge > 0 {
		var cctx context.Context
		cctx, l.stopCompactor = context.WithCancel(context.Background())
		l.compactorDone = make(chan struct{})
		go l.compactor(cctx, l.compactorDone)
	}
	l.startRetention()
	if l.rem != nil {
		l.rem.start()
	}
	return nil
}

func (l *Lake) agePublisher(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "sink")))
	t := time.NewTicker(l.cfg.tick())
	defer t.Stop()
	for {
		select {
		case <-stop:
			l.mu.Lock()
			l.publishing = false // queueSeal takes no more files
			l.mu.Unlock()
			for {
				select {
				case f := <-l.sealq:
					l.publishDetached(f, nil)
				default:
					return
				}
			}
		case f := <-l.sealq:
			l.publishDetached(f, nil)
		case <-t.C:
			l.publishDue()
		}
	}
}

// sealQueue is how many files full by size may wait for the age
// publisher; past it, the Write that filled a file publishes it itself,
// which holds up its partition (backpressure).
const sealQueue = 2

// queueSeal hands f, detached, to the age publisher, so that the Write
// that filled it need not wait for its publish (footer, fsync, rename).
// It reports false when the publisher does not run or its queue is full:
// the caller publishes f itself.
func (l *Lake) queueSeal(f *openFile) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.publishing {
		return false
	}
	select {
	case l.sealq <- f:
		return true
	default:
		return false
	}
}

// publishDue publishes the files that would pass MaxFileAge before the
// next tick.
func (l *Lake) publishDue() {
	due := time.Now().Add(l.cfg.tick() - l.cfg.MaxFileAge)
	var files []*openFile
	l.mu.Lock()
	for _, f := range l.open {
		if !f.first.After(due) {
			l.detachLocked(f)
			files = append(files, f)
		}
	}
	l.mu.Unlock()
	for _, f := range files {
		l.publishDetached(f, nil)
	}
}

// publishDetached publishes a file detached by someone other than its
// writers. A FileError is kept for the next Write to the file's stream
// partition; every error is logged and passed to report when non-nil.
func (l *Lake) publishDetached(f *openFile, report func(error)) {
	f.lockNoCtx()
	err := l.sealLocked(f)
	f.unlock()
	if err == nil {
		return
	}
	l.keepFailed(f, err)
	if report != nil {
		report(err)
	}
}

// Write queues the rows of recs, in order, as the next segment of the
// open file of p, opening one if needed. recs must share one schema; a
// batch built in parts (pushes of a few thousand rows each) is encoded
// from its parts, not concatenated first. After Start the rows are
// encoded by the encoders, in parallel with the caller's next batches,
// and staged (Observer.Staged) in the order of the Writes; a file that
// reaches TargetFileBytes is published once its queued batches are
// staged. Write blocks while the encoders are saturated. It retains recs
// while they are queued: the caller may release its references when
// Write returns. It is safe for concurrent use, also on one Partition;
// batches of one Partition written concurrently are staged in the order
// they took the file's lock.
//
// p.Hour is used as p.Hour.UTC().Truncate(time.Hour). Tenant and Stream
// must be 1 to 128 characters of [A-Za-z0-9_.-] not starting with a dot
// (ErrInvalidPartition). A Write with no rows is ignored. A batch whose
// schema differs from the open file's publishes that file first.
//
// Write returns nil when the rows are queued; from then on they count
// in OldestUnpublished until their file is published or abandoned. It
// returns a *FileError when a file of p's stream partition (Tenant,
// Stream, Part) was abandoned: the one this Write queued to, if that
// happened before Write returned, or one abandoned since the previous
// Write to the stream partition (by an encoder, the age publisher,
// Flush, Shutdown or an eviction). Several such errors are joined
// (errors.Join). Whatever the error, the rows are then not in the lake
// and will not be: the caller sends them again. The rows of the
// FileError's file must come back from elsewhere (the buffer's log:
// OldestUnpublished keeps counting them).
func (l *Lake) Write(ctx context.Context, p Partition, recs ...arrow.RecordBatch) error {
	p, err := normalize(p)
	if err != nil {
		return err
	}
	var rows int64
	for _, r := range recs {
		if !r.Schema().Equal(recs[0].Schema()) {
			return errors.New("sink: write: the batches of one Write have different schemas")
		}
		rows += r.NumRows()
	}
	if rows == 0 {
		return nil
	}
	p = l.FilePartition(p, time.Now())
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, victims, err := l.acquire(p)
		if err != nil {
			return err
		}
		l.publishDisplaced(victims)
		if err := f.lock(ctx); err != nil {
			return err
		}
		done, err := l.queueLocked(ctx, f, recs, rows)
		f.unlock()
		l.settle(f)
		if done {
			return err
		}
	}
}

// FilePartition returns the partition of the file that Write puts the
// rows of p in at now: p itself, or, when p's date (UTC) ended more than
// Config.DayFilesAfter before now, the day file of that date (Day set,
// Hour the date's midnight). Rows of today keep their hour's file, so
// retention by hour stays exact for them; a day file expires with its
// date, at most 23 hours after its rows' hours would have. A batcher that groups rows by it
// (transform/arrowbatch does) builds one batch per date of a backfill
// rather than one per hour. p.Hour is taken in UTC, truncated to the
// hour; FilePartition only computes, so it is cheap enough per record
// and safe for concurrent use.
func (l *Lake) FilePartition(p Partition, now time.Time) Partition {
	if p.Day || l.cfg.DayFilesAfter <= 0 {
		return p
	}
	d := dayOf(p.Hour)
	if d.Add(24*time.Hour + l.cfg.DayFilesAfter).After(now) {
		return p
	}
	p.Day, p.Hour = true, d
	return p
}

// acquire returns the open file of p, opening one (and detaching the
// oldest files past MaxOpenFiles, which the caller must publish) if there
// is none, or the FileErrors pending for p's stream partition.
func (l *Lake) acquire(p Partition) (*openFile, []*openFile, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, ErrClosed
	}
	sk := streamOf(p)
	if errs := l.failed[sk]; len(errs) > 0 {
		delete(l.failed, sk)
		return nil, nil, errors.Join(errs...)
	}
	key := keyOf(p)
	if f := l.open[key]; f != nil {
		return f, nil, nil
	}
	var victims []*openFile
	for len(l.open) >= l.cfg.MaxOpenFiles {
		var oldest *openFile
		for _, f := range l.open {
			if oldest == nil || f.first.Before(oldest.first) {
				oldest = f
			}
		}
		l.detachLocked(oldest)
		victims = append(victims, oldest)
	}
	if len(victims) > 0 {
		if now := time.Now(); now.Sub(l.warnedEv) > time.Minute {
			l.warnedEv = now
			l.log.Warn("sink: MaxOpenFiles reached; publishing the oldest open file early (throttled: once a minute)",
				"max_open_files", l.cfg.MaxOpenFiles, "file", victims[0].id)
		}
	}
	f := newOpenFile(l.cfg.Dir, p, newID(l.nextIDTimeLocked()), time.Now())
	l.open[key] = f
	f.attached = true
	return f, victims, nil
}

// detachLocked removes f from the open files, committing its detacher to
// publish it. l.mu must be held.
func (l *Lake) detachLocked(f *openFile) {
	if !f.attached {
		return
	}
	f.attached = false
	delete(l.open, f.key)
	l.sealing[f] = true
}

func (l *Lake) detach(f *openFile) {
	l.mu.Lock()
	l.detachLocked(f)
	l.mu.Unlock()
}

// retire records that f, detached, is published or abandoned.
func (l *Lake) retire(f *openFile) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sealing[f] {
		delete(l.sealing, f)
		close(f.retired)
	}
}

// stagedFailed logs an error of Observer.Staged, at most once per
// stagedLogEvery with the number of failures since the last log.
func (l *Lake) stagedFailed(f *openFile, err error) {
	l.mu.Lock()
	l.stagedErrs++
	now := time.Now()
	if now.Sub(l.stagedLogged) < stagedLogEvery {
		l.mu.Unlock()
		return
	}
	n := l.stagedErrs
	l.stagedErrs, l.stagedLogged = 0, now
	l.mu.Unlock()
	l.log.Error("sink: observer failed on staged rows; they will be published all the same (logged at most every 10s)",
		"file", f.id, "failures", n, "err", err)
}

// abandonLocked deletes f's temporary file and returns the FileError
// that reports it. f must be detached and its lock held.
func (l *Lake) abandonLocked(f *openFile, cause error) error {
	f.sealed = true
	defer l.retire(f)
	if low := f.low.Load(); low >= 0 {
		l.mu.Lock()
		sk := streamOf(f.part)
		if cur, ok := l.lost[sk]; !ok || low < cur {
			l.lost[sk] = low
		}
		l.mu.Unlock()
	}
	info := f.info()
	f.discard(l.log)
	if l.obs != nil {
		l.obs.Abandoned(info)
	}
	err := &FileError{File: info, Err: cause}
	l.log.Error("sink: file abandoned", "err", err)
	return err
}

// sealLocked publishes f: Parquet footer, fsync, rename to the final
// name, fsync of the directories, then Files, LastOffset and
// Observer.Published. f must be detached and its lock held. A failure
// abandons f and returns a *FileError; an error from Observer.Published
// is returned as is (the file stays published).
func (l *Lake) sealLocked(f *openFile) error {
	if f.sealed {
		return nil
	}
	f.sealQueued = true // commitLocked must not publish it again
	if err := l.commitLocked(f, true); err != nil || f.sealed {
		return err
	}
	if len(f.segs) == 0 { // no rows: nothing to publish
		f.sealed = true
		f.discard(l.log)
		l.retire(f)
		return nil
	}
	info, err := f.finish(context.Background(), l.cfg, l.mem)
	if err != nil {
		return l.abandonLocked(f, err)
	}
	if err := os.Rename(f.tmp, f.path); err != nil {
		return l.abandonLocked(f, fmt.Errorf("publish: %w", err))
	}
	if err := l.syncDirs(f.dir); err != nil {
		// The file is complete but its name may not survive a crash; take
		// it back so that the rows are not both lost and re-sent.
		if rerr := os.Remove(f.path); rerr != nil {
			l.log.Error("sink: remove file after failed directory fsync", "path", f.path, "err", rerr)
		}
		return l.abandonLocked(f, err)
	}
	f.sealed = true
	f.discard(l.log) // the segments; their rows are in the published file
	l.mu.Lock()
	i := sort.Search(len(l.files), func(i int) bool { return l.files[i].ID > info.ID })
	l.files = append(l.files, FileInfo{})
	copy(l.files[i+1:], l.files[i:])
	l.files[i] = info
	if info.MaxOffset >= 0 { // offsets are never negative in weir; -1 means none
		sk := streamOf(info.Partition)
		l.last[sk] = max(l.last[sk], info.MaxOffset+1)
	}
	if l.obs != nil {
		l.announcing[info.ID] = true
	}
	if l.rem != nil {
		l.rem.publishedLocked(info)
	}
	l.mu.Unlock()
	l.retire(f)
	l.log.Debug("sink: published", "file", info.Path, "rows", info.Rows, "bytes", info.Bytes)
	defer l.committedChanged()
	if l.obs != nil {
		err := l.obs.Published(info)
		l.mu.Lock()
		delete(l.announcing, info.ID)
		l.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("sink: observer: published %s: %w", info.ID, err)
			l.log.Error("sink: observer", "err", err)
			return err
		}
	}
	return nil
}

// syncDirs fsyncs dir, which makes a renamed file's entry durable, and
// each parent whose child's entry is not yet known durable, up to the
// lake root (whose own entry New made durable).
func (l *Lake) syncDirs(dir string) error {
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	for d := dir; d != l.cfg.Dir && d != filepath.Dir(d); d = filepath.Dir(d) {
		l.mu.Lock()
		ok := l.durable[d]
		l.mu.Unlock()
		if ok {
			return nil
		}
		if err := durable.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
		l.mu.Lock()
		if len(l.durable) >= maxDurableDirs {
			clear(l.durable)
		}
		l.durable[d] = true
		l.mu.Unlock()
	}
	return nil
}

// Flush publishes every file open at the time of the call, and waits for
// those that other goroutines were publishing. It returns the joined
// errors of the files it published: *FileError for abandoned files (also
// kept for the next Write to their stream partition) and errors of
// Observer.Published. If ctx ends first, files not yet taken stay open.
func (l *Lake) Flush(ctx context.Context) error {
	l.mu.Lock()
	files := make([]*openFile, 0, len(l.open)+len(l.sealing))
	for _, f := range l.open {
		files = append(files, f)
	}
	for f := range l.sealing {
		files = append(files, f)
	}
	l.mu.Unlock()

	var errs []error
	report := func(err error) { errs = append(errs, err) }
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		l.mu.Lock()
		mine := f.attached
		l.detachLocked(f)
		l.mu.Unlock()
		if mine {
			l.publishDetached(f, report)
		}
	}
	for _, f := range files {
		select {
		case <-f.retired:
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("sink: waiting for files being published: %w", context.Cause(ctx)))...)
		}
	}
	return errors.Join(errs...)
}

// Shutdown stops the age publisher, makes further Writes fail with
// ErrClosed and publishes every open file, as Flush. It is safe without
// Start and safe to call more than once. Writes still in progress finish
// into files that Shutdown publishes or fail with ErrClosed; stop the
// writers first so that none is left behind.
func (l *Lake) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	done, stopCompactor, compactorDone := l.done, l.stopCompactor, l.compactorDone
	displacedDone := l.displacedDone
	l.mu.Unlock()
	l.stopOnce.Do(func() { close(l.stop) })
	if l.rem != nil {
		// Uploads in progress are cancelled; files not uploaded are
		// uploaded after the next start (the buffer keeps their records
		// until then).
		l.rem.shutdown()
	}
	if stopCompactor != nil {
		stopCompactor() // a compaction in progress is given up; the lake stays as it was
		select {
		case <-compactorDone:
		case <-ctx.Done():
			return fmt.Errorf("sink: waiting for the compactor: %w", context.Cause(ctx))
		}
	}
	if err := l.stopRetention(ctx); err != nil {
		return err
	}
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("sink: waiting for the age publisher: %w", context.Cause(ctx))
		}
	}
	if displacedDone != nil {
		select {
		case <-displacedDone:
		case <-ctx.Done():
			return fmt.Errorf("sink: waiting for the publishers of displaced files: %w", context.Cause(ctx))
		}
	}
	err := l.Flush(ctx)
	l.stopEncoders()
	return err
}

// Files returns every published file under Dir, those found by New and
// those published since, sorted by ID. With Config.Remote it includes
// the files evicted from the local cache (FileInfo.Evicted), which are
// in the bucket only. The slice is the caller's.
func (l *Lake) Files() []FileInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]FileInfo, len(l.files))
	copy(out, l.files)
	return out
}

// CommittedFiles returns the files that are in the lake where it keeps
// them for good, sorted by ID, with Location set: for a lake on local
// disk, every file Files returns. With Config.Remote, the files whose
// upload is confirmed, at s3://<bucket>/<prefix>/<path relative to Dir>,
// and, until a compacted or rewritten file is uploaded, the uploaded
// files it replaced instead of it (their Path may no longer exist
// locally): every row of the lake once, as far as it is in the bucket.
// A table format (sink/iceberg) lists these files; Config.OnCommitted
// says when they may have changed. The slice is the caller's.
func (l *Lake) CommittedFiles() []FileInfo {
	if l.rem != nil {
		return l.rem.committed()
	}
	out := l.Files()
	for i := range out {
		out[i].Location = fileURI(out[i].Path)
	}
	return out
}

// fileURI is the file:// URI of an absolute path.
func fileURI(path string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
}

// OldestUnpublished returns the lowest _offset of the stream partition
// that the lake holds but has not published: in an open file, in a file
// being published, or in a file abandoned since New (whose rows are lost
// to this process and must come back from elsewhere), and with
// Config.Remote in a published file whose upload is not confirmed (rows
// that compaction or a delete moved from uploaded files do not count:
// their objects stay until the new file is uploaded). ok is false when
// there is none: every row written so far is published. Rows written
// after the call are not covered.
func (l *Lake) OldestUnpublished(tenant, stream string, part int32) (offset int64, ok bool) {
	sk := streamKey{tenant: tenant, stream: stream, part: part}
	l.mu.Lock()
	defer l.mu.Unlock()
	offset, ok = l.lost[sk]
	consider := func(f *openFile) {
		if streamOf(f.part) != sk {
			return
		}
		if low := f.low.Load(); low >= 0 && (!ok || low < offset) {
			offset, ok = low, true
		}
	}
	for _, f := range l.open {
		consider(f)
	}
	for f := range l.sealing {
		consider(f)
	}
	if l.rem != nil {
		if low, has := l.rem.oldest(sk); has && (!ok || low < offset) {
			offset, ok = low, true
		}
	}
	return offset, ok
}

// LastOffset returns one past the largest _offset in the published files
// of a stream partition, or 0 if there are none: the offset at which the
// buffer continues after a restart. Rows still in open files do not
// count.
func (l *Lake) LastOffset(tenant, stream string, part int32) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[streamKey{tenant: tenant, stream: stream, part: part}]
}

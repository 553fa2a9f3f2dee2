package sink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/logschema"
)

// openFile is a Parquet file being written: a list of segments, each
// .<id>.<n>.parquet.tmp in its partition's directory, until it is
// published as <id>.parquet (built as .<id>.parquet.tmp, then renamed).
type openFile struct {
	key   fileKey
	part  Partition
	id    string
	dir   string
	path  string // final name
	tmp   string // temporary name of the file being published
	first time.Time

	// Guarded by Lake.mu.
	attached bool          // in Lake.open
	retired  chan struct{} // closed once published or abandoned after being detached

	sem chan struct{} // the file's lock, guarding the fields below

	sealed bool // published, abandoned or discarded; writers must take a new file
	// queued are the segments reserved and not yet committed, oldest
	// first; head is queued[0], readable without the lock (settle).
	queued []*pendingSeg
	head   atomic.Pointer[pendingSeg]
	// tail is the segment reserved last, readable without the lock
	// (WaitStaged): segments are committed in order, so once it is,
	// so is every segment reserved before it.
	tail       atomic.Pointer[pendingSeg]
	broken     error // a segment failed to encode: abandoned once none is in flight
	full       bool  // reached TargetFileBytes: published once none is in flight
	sealQueued bool  // handed to the age publisher or being published by its committer

	schema   *arrow.Schema
	schemaID uint64 // of schema
	segs     []Segment
	seq      int   // names segments
	bytes    int64 // of segs
	offCol   int   // index of the _offset column, -1 if none
	rows     int64
	hasOff   bool         // minOff and maxOff are set
	low      atomic.Int64 // minOff once set, else -1; read without the file's lock
	minOff   int64
	maxOff   int64
}

func newOpenFile(root string, p Partition, id string, now time.Time) *openFile {
	dir := filepath.Join(root, p.Dir())
	f := &openFile{
		key:     keyOf(p),
		part:    p,
		id:      id,
		dir:     dir,
		path:    filepath.Join(dir, id+fileExt),
		tmp:     filepath.Join(dir, tmpName(id)),
		first:   now,
		retired: make(chan struct{}),
		sem:     make(chan struct{}, 1),
		offCol:  -1,
		minOff:  -1,
		maxOff:  -1,
	}
	f.low.Store(-1)
	return f
}

func (f *openFile) lock(ctx context.Context) error {
	select {
	case f.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (f *openFile) lockNoCtx() { f.sem <- struct{}{} }
func (f *openFile) unlock()    { <-f.sem }

func (f *openFile) tryLock() bool {
	select {
	case f.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

// info describes f as it stands; Bytes is left 0.
func (f *openFile) info() FileInfo {
	return FileInfo{
		ID:        f.id,
		Partition: f.part,
		Path:      f.path,
		Rows:      f.rows,
		MinOffset: f.minOff,
		MaxOffset: f.maxOff,
		Columns:   f.columns(),
		schema:    f.schemaID,
	}
}

func (f *openFile) columns() int {
	if f.schema == nil {
		return 0
	}
	return f.schema.NumFields()
}

// create makes the file's directory and takes first's schema as the
// file's.
func (f *openFile) create(first arrow.RecordBatch) error {
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	sc := first.Schema()
	f.schema, f.schemaID = sc, schemaID(sc)
	f.offCol = -1
	for _, i := range sc.FieldIndices(logschema.Offset) {
		if sc.Field(i).Type.ID() == arrow.INT64 {
			f.offCol = i
			break
		}
	}
	return nil
}

// segmentPath returns the path of the file's next segment.
func (f *openFile) segmentPath() string {
	f.seq++
	return filepath.Join(f.dir, "."+f.id+"."+strconv.Itoa(f.seq)+tmpSuffix)
}

// reserve accounts for the offsets of rec, just queued: from now on
// they count as unpublished (low). Rows and bytes are counted when the
// segment is committed.
func (f *openFile) reserve(rec arrow.RecordBatch) {
	if f.offCol < 0 {
		return
	}
	col := rec.Column(f.offCol).(*array.Int64)
	vals := col.Int64Values()
	for i, v := range vals {
		if col.IsNull(i) {
			continue
		}
		if !f.hasOff || v < f.minOff {
			f.minOff = v
		}
		if !f.hasOff || v > f.maxOff {
			f.maxOff = v
		}
		f.hasOff = true
	}
	if f.hasOff {
		f.low.Store(f.minOff)
	}
}

// finish builds the file from its segments at its temporary name
// (merging runs of small segments, see pieces), fsyncs and closes it, and
// returns f's description with its size. The segments stay until discard.
func (f *openFile) finish(ctx context.Context, cfg Config, mem memory.Allocator) (FileInfo, error) {
	info := f.info()
	pieces, err := f.pieces(ctx, cfg, mem)
	if err != nil {
		return info, err
	}
	out, err := os.OpenFile(f.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return info, fmt.Errorf("create temporary file: %w", err)
	}
	size, err := concatSegments(out, pieces, footerMeta(f.part))
	if err == nil {
		if err = out.Sync(); err != nil {
			err = fmt.Errorf("fsync %q: %w", f.tmp, err)
		}
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %q: %w", f.tmp, cerr)
	}
	if err != nil {
		return info, fmt.Errorf("write %q: %w", f.tmp, err)
	}
	info.Bytes = size
	return info, nil
}

// footerMeta is the key-value metadata the lake writes into the footer of
// every published file of p (docs/format.md).
func footerMeta(p Partition) [][2]string {
	hour := p.Hour.Format("2006-01-02T15Z")
	if p.Day {
		hour = p.Hour.Format("2006-01-02Z") // a day file: the date only
	}
	return [][2]string{
		{metaTenant, p.Tenant},
		{metaStream, p.Stream},
		{metaPart, strconv.FormatInt(int64(p.Part), 10)},
		{metaHour, hour},
	}
}

// mergeRows is the size, in rows, below which a segment is merged with its
// small neighbours before publishing: one eighth of a row group (16 Ki
// rows at the defaults). A busy stream's segments are larger and are
// copied as they are; a quiet one's (a few rows every flush) would
// otherwise make files of thousands of tiny row groups, each with its own
// pages, dictionaries and statistics.
func mergeRows(cfg Config) int64 { return max(cfg.RowGroupRows/8, 1) }

// pieces returns the segments to concatenate, in order: each segment of at
// least mergeRows rows as it is, and each run of smaller ones merged into
// new segments of up to RowGroupRows rows (added to f.segs, so that
// discard deletes them).
func (f *openFile) pieces(ctx context.Context, cfg Config, mem memory.Allocator) ([]Segment, error) {
	small := mergeRows(cfg)
	var out, run []Segment
	var runRows int64
	flush := func() error {
		switch len(run) {
		case 0:
			return nil
		case 1:
			out = append(out, run[0])
		default:
			m, err := mergeSegments(ctx, cfg, mem, f.segmentPath(), f.schema, run)
			if err != nil {
				return fmt.Errorf("merge %d small segments: %w", len(run), err)
			}
			f.segs = append(f.segs, m)
			out = append(out, m)
		}
		run, runRows = run[:0], 0
		return nil
	}
	n := len(f.segs) // merged segments are appended behind
	for _, s := range f.segs[:n] {
		if s.Rows >= small {
			if err := flush(); err != nil {
				return nil, err
			}
			out = append(out, s)
			continue
		}
		if runRows+s.Rows > cfg.RowGroupRows {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		run = append(run, s)
		runRows += s.Rows
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// discard deletes the file's segments and its temporary file, if any.
func (f *openFile) discard(log *slog.Logger) {
	for _, s := range f.segs {
		if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Error("sink: remove segment", "path", s.Path, "err", err)
		}
	}
	f.segs, f.bytes = nil, 0
	if err := os.Remove(f.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Error("sink: remove temporary file", "path", f.tmp, "err", err)
	}
}

// schemaID identifies the Arrow schema sc by its field names, types and
// nullability (metadata aside): a hash of sc's fingerprint, never 0, or 0
// for a schema with a type that has no fingerprint. A published file's
// schema as written and as read back from its footer (which stores it)
// have the same identity.
func schemaID(sc *arrow.Schema) uint64 {
	fp := sc.Fingerprint()
	if fp == "" {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(fp))
	return max(h.Sum64(), 1)
}

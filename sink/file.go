package sink

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// openFile is a Parquet file being written: .<id>.parquet.tmp in its
// partition's directory until it is published as <id>.parquet.
type openFile struct {
	key   fileKey
	part  Partition
	id    string
	dir   string
	path  string // final name
	tmp   string // temporary name
	first time.Time

	// Guarded by Lake.mu.
	attached bool          // in Lake.open
	retired  chan struct{} // closed once published or abandoned after being detached

	sem chan struct{} // the file's lock, guarding the fields below

	sealed bool // published, abandoned or discarded; writers must take a new file
	schema *arrow.Schema
	file   *os.File
	buf    *bufio.Writer
	w      *pqarrow.FileWriter
	offCol int // index of the _offset column, -1 if none
	rows   int64
	hasOff bool         // minOff and maxOff are set
	low    atomic.Int64 // minOff once set, else -1; read without the file's lock
	minOff int64
	maxOff int64
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
	}
}

func (f *openFile) columns() int {
	if f.schema == nil {
		return 0
	}
	return f.schema.NumFields()
}

// create makes the directories and the temporary file and starts the
// Parquet writer with first's schema. Encoding choices depend on first
// (see writerProps).
func (f *openFile) create(cfg Config, mem memory.Allocator, first arrow.RecordBatch) error {
	sc := first.Schema()
	props, err := writerProps(cfg, mem, sc, first)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	file, err := os.OpenFile(f.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	// bufio.Writer is not an io.Closer, so closing the Parquet writer
	// leaves the file open for the fsync.
	buf := bufio.NewWriterSize(file, 64<<10)
	w, err := pqarrow.NewFileWriter(sc, buf, props, arrowWriterProps(mem))
	if err != nil {
		file.Close()
		os.Remove(f.tmp)
		return fmt.Errorf("start Parquet writer: %w", err)
	}
	f.schema, f.file, f.buf, f.w = sc, file, buf, w
	f.offCol = -1
	for _, i := range sc.FieldIndices("_offset") {
		if sc.Field(i).Type.ID() == arrow.INT64 {
			f.offCol = i
			break
		}
	}
	return nil
}

// add accounts for rec, just written.
func (f *openFile) add(rec arrow.RecordBatch) {
	f.rows += rec.NumRows()
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

// finish writes the footer, fsyncs and closes the temporary file, and
// returns f's description with its size.
func (f *openFile) finish() (FileInfo, error) {
	info := f.info()
	for _, kv := range [][2]string{
		{metaTenant, f.part.Tenant},
		{metaStream, f.part.Stream},
		{metaPart, strconv.FormatInt(int64(f.part.Part), 10)},
		{metaHour, f.part.Hour.Format("2006-01-02T15Z")},
	} {
		if err := f.w.AppendKeyValueMetadata(kv[0], kv[1]); err != nil {
			return info, fmt.Errorf("footer metadata: %w", err)
		}
	}
	err := f.w.Close()
	f.w = nil
	if err != nil {
		return info, fmt.Errorf("write footer: %w", err)
	}
	if err := f.buf.Flush(); err != nil {
		return info, fmt.Errorf("write %q: %w", f.tmp, err)
	}
	if err := f.file.Sync(); err != nil {
		return info, fmt.Errorf("fsync %q: %w", f.tmp, err)
	}
	st, err := f.file.Stat()
	if err != nil {
		return info, fmt.Errorf("stat %q: %w", f.tmp, err)
	}
	info.Bytes = st.Size()
	err = f.file.Close()
	f.file = nil
	if err != nil {
		return info, fmt.Errorf("close %q: %w", f.tmp, err)
	}
	return info, nil
}

// discard releases the writer and deletes the temporary file, if any.
func (f *openFile) discard(log *slog.Logger) {
	if f.w != nil {
		_ = f.w.Close() // releases its buffers; the bytes are thrown away
		f.w = nil
	}
	if f.file != nil {
		f.file.Close()
		f.file = nil
		if err := os.Remove(f.tmp); err != nil {
			log.Error("sink: remove temporary file", "path", f.tmp, "err", err)
		}
	} else if f.schema != nil {
		// finish closed the file; it may still be there under either name.
		if err := os.Remove(f.tmp); err != nil && !os.IsNotExist(err) {
			log.Error("sink: remove temporary file", "path", f.tmp, "err", err)
		}
	}
	f.buf = nil
}

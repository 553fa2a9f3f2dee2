package sink_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"go.uber.org/goleak"

	"github.com/weirlabs/weir/sink"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig returns a config rooted in a temporary directory that
// publishes only on Flush/Shutdown unless the test changes it. Its
// partitions keep their hour (no day files) although hour0 is long past:
// day files have tests of their own (dayfile_test.go).
func testConfig(t *testing.T) sink.Config {
	t.Helper()
	cfg := sink.DefaultConfig()
	cfg.Dir = filepath.Join(t.TempDir(), "lake")
	cfg.MaxFileAge = time.Hour
	cfg.DayFilesAfter = 0
	return cfg
}

var hour0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

func part(stream string, p int32) sink.Partition {
	return sink.Partition{Tenant: "acme", Stream: stream, Part: p, Hour: hour0}
}

// logBuffer is a slog handler target that tests can read.
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

func newLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newLake(t *testing.T, cfg sink.Config, obs sink.Observer) *sink.Lake {
	t.Helper()
	l, err := sink.New(cfg, obs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func shutdown(t *testing.T, l *sink.Lake) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, l *sink.Lake, p sink.Partition, recs []arrow.RecordBatch) {
	t.Helper()
	for _, r := range recs {
		if err := l.Write(context.Background(), p, r); err != nil {
			t.Fatal(err)
		}
	}
}

// readTable reads a Parquet file back with pqarrow.
func readTable(t *testing.T, path string, mem memory.Allocator) arrow.Table {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false, file.WithReadProps(parquet.NewReaderProperties(mem)))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 1 << 14}, mem)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// assertColumns checks that every column of tbl, read back with rmem,
// equals the same column of recs concatenated (with mem).
func assertColumns(t *testing.T, tbl arrow.Table, recs []arrow.RecordBatch, mem, rmem memory.Allocator) {
	t.Helper()
	for i := range int(tbl.NumCols()) {
		got, err := array.Concatenate(tbl.Column(i).Data().Chunks(), rmem)
		if err != nil {
			t.Fatal(err)
		}
		exp := concatColumn(t, mem, recs, i)
		if !array.Equal(got, exp) {
			t.Errorf("column %s differs after the round trip", tbl.Schema().Field(i).Name)
		}
		got.Release()
		exp.Release()
	}
}

// concatColumn concatenates column i of recs.
func concatColumn(t *testing.T, mem memory.Allocator, recs []arrow.RecordBatch, i int) arrow.Array {
	t.Helper()
	arrs := make([]arrow.Array, len(recs))
	for j, r := range recs {
		arrs[j] = r.Column(i)
	}
	a, err := array.Concatenate(arrs, mem)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// offsetsIn returns the _offset values of every published file, read back
// with pqarrow.
func offsetsIn(t *testing.T, files []sink.FileInfo) map[int64]int {
	t.Helper()
	seen := make(map[int64]int)
	for _, f := range files {
		tbl := readTable(t, f.Path, memory.DefaultAllocator)
		col := tbl.Column(int(tbl.Schema().FieldIndices("_offset")[0]))
		for _, c := range col.Data().Chunks() {
			for _, v := range c.(*array.Int64).Int64Values() {
				seen[v]++
			}
		}
		tbl.Release()
	}
	return seen
}

// event is one Observer call.
type event struct {
	published bool
	abandoned bool
	removed   []sink.FileInfo // Removed: the files removed
	replaced  []sink.FileInfo // Replaced: the files f replaced
	file      sink.FileInfo
	rows      int64 // rows of the staged batch
	existed   bool  // Published: the file was at f.Path during the call
	listed    bool  // Published: Lake.Files listed it during the call
}

// recorder is an Observer that records its calls.
type recorder struct {
	mu       sync.Mutex
	lake     *sink.Lake
	events   []event
	stageErr error
	// staged, when set, receives a value (if it has room) after each
	// Staged call.
	staged chan struct{}
}

// Staged checks that the segment is a readable Parquet file of seg.Rows
// rows beside f's final path; rows is -1 in the event when it is not.
func (r *recorder) Staged(f sink.FileInfo, seg sink.Segment) error {
	rows := seg.Rows
	if pf, err := file.OpenParquetFile(seg.Path, false); err != nil {
		rows = -1
	} else {
		if pf.NumRows() != seg.Rows || filepath.Dir(seg.Path) != filepath.Dir(f.Path) {
			rows = -1
		}
		pf.Close()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{file: f, rows: rows})
	if r.staged != nil {
		select {
		case r.staged <- struct{}{}:
		default:
		}
	}
	return r.stageErr
}

func (r *recorder) Published(f sink.FileInfo) error {
	_, err := os.Stat(f.Path)
	listed := false
	r.mu.Lock()
	l := r.lake
	r.mu.Unlock()
	if l != nil {
		for _, g := range l.Files() {
			listed = listed || g.ID == f.ID
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{published: true, file: f, existed: err == nil, listed: listed})
	return nil
}

func (r *recorder) Replaced(f sink.FileInfo, old []sink.FileInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{replaced: old, file: f})
	for _, o := range old {
		os.Remove(o.Path)
	}
}

func (r *recorder) Removed(files []sink.FileInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{removed: files})
	for _, f := range files {
		os.Remove(f.Path)
	}
}

func (r *recorder) Abandoned(f sink.FileInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{abandoned: true, file: f})
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// zeroPages zeroes every byte of the Parquet file at path between its
// leading magic and its footer: damage inside, with the footer intact.
func zeroPages(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	footer := int(binary.LittleEndian.Uint32(raw[len(raw)-8:]))
	clear(raw[4 : len(raw)-8-footer])
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

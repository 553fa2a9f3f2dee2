package iceberg_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go/catalog"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	pq "github.com/parquet-go/parquet-go"
	"go.uber.org/goleak"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/sink/iceberg"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// iceberg-go's and gocloud's package-level HTTP transports.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

const tenant = "acme"

// env is a lake and a warehouse in one temporary directory.
type env struct {
	dir       string
	lakeCfg   sink.Config
	warehouse string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := sink.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "lake")
	cfg.MaxFileAge = time.Hour
	cfg.CompactAge = 50 * time.Millisecond
	cfg.CompactSortRows = 1024
	// "old" keeps one hour: its files (2026) are long expired.
	cfg.Retention = sink.Retention{Streams: map[string]time.Duration{tenant + "/old": time.Hour}}
	return &env{dir: dir, lakeCfg: cfg, warehouse: filepath.Join(dir, "iceberg")}
}

func (e *env) openLake(t testing.TB) *sink.Lake {
	t.Helper()
	l, err := sink.New(e.lakeCfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Shutdown(context.Background()) })
	return l
}

// settled waits until l's background compactor has nothing left to do
// with the files it has: every committed file is the output of a
// compaction and uploaded (for a lake in object storage), none is due,
// and none is younger than age (l's CompactAge), so none can become due
// later and be merged into a day file after the caller has looked. A
// compacted file is due again while its date has other small files.
func settled(t testing.TB, l *sink.Lake, age time.Duration) {
	t.Helper()
	waitFor(t, func() bool {
		files := l.CommittedFiles()
		if len(files) != len(l.Files()) {
			return false
		}
		now := time.Now()
		for _, f := range files {
			ts, _, _ := strings.Cut(f.ID, "-")
			created, err := time.Parse("20060102T150405.000000000Z", ts)
			if err != nil {
				t.Fatalf("file ID %q: %v", f.ID, err)
			}
			if !f.Compacted || now.Sub(created) < age {
				return false
			}
		}
		return l.CompactionStats().DueFiles == 0
	})
}

func (e *env) icebergConfig() iceberg.Config {
	cfg := iceberg.DefaultConfig()
	cfg.Warehouse = e.warehouse
	return cfg
}

// catalog opens a new catalog object on the warehouse, as a new process
// would.
func (e *env) catalog(t testing.TB) catalog.Catalog {
	t.Helper()
	cat, err := iceberg.OpenCatalog(context.Background(), e.icebergConfig())
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func (e *env) reconciler(t testing.TB, l iceberg.Lake, cat catalog.Catalog) *iceberg.Reconciler {
	t.Helper()
	r, err := iceberg.New(e.icebergConfig(), l, cat, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var hour0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

// batch builds n log records of a stream partition from offset first,
// in hour, with an attr_http_status column when promoted.
func batch(stream string, part int32, first int64, n int, hour time.Time, promoted bool) arrow.RecordBatch {
	sc := logschema.Arrow()
	if promoted {
		sc = arrow.NewSchema(append(sc.Fields(), arrow.Field{Name: "attr_http_status", Type: arrow.PrimitiveTypes.Int64, Nullable: true}), nil)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i := range n {
		off := first + int64(i)
		ts := arrow.Timestamp(recordTime(hour, off).UnixNano())
		b.Field(0).(*array.TimestampBuilder).Append(ts)
		b.Field(1).(*array.TimestampBuilder).Append(ts)
		b.Field(2).(*array.Int32Builder).Append(9)
		b.Field(3).(*array.StringBuilder).Append("INFO")
		b.Field(4).(*array.StringBuilder).Append(body(stream, part, off))
		for _, f := range []int{5, 6} {
			mb := b.Field(f).(*array.MapBuilder)
			mb.Append(true)
			mb.KeyBuilder().(*array.StringBuilder).Append("k")
			mb.ItemBuilder().(*array.StringBuilder).Append(fmt.Sprint(off % 7))
		}
		b.Field(7).(*array.StringBuilder).Append("svc" + fmt.Sprint(off%3))
		b.Field(8).(*array.StringBuilder).AppendNull()
		b.Field(9).(*array.StringBuilder).AppendNull()
		b.Field(10).(*array.Uint32Builder).Append(1)
		b.Field(11).(*array.Int32Builder).Append(part)
		b.Field(12).(*array.Int64Builder).Append(off)
		if promoted {
			b.Field(13).(*array.Int64Builder).Append(200 + off%3)
		}
	}
	return b.NewRecordBatch()
}

// recordTime is the timestamp of the record at offset off of a batch in
// hour: whole seconds plus nanoseconds no microsecond type holds.
func recordTime(hour time.Time, off int64) time.Time {
	return hour.Add(time.Duration(off)*time.Second + time.Duration(off%997+1)*time.Nanosecond)
}

func body(stream string, part int32, off int64) string {
	return fmt.Sprintf("%s p%d record %d", stream, part, off)
}

// want is the content a table must have: body by "part/offset".
type want map[string]string

func (w want) add(stream string, part int32, first int64, n int) {
	for i := range n {
		off := first + int64(i)
		w[fmt.Sprintf("%d/%d", part, off)] = body(stream, part, off)
	}
}

// write writes one file of n records and publishes it.
func write(t testing.TB, l *sink.Lake, w want, stream string, part int32, first int64, n int, hour time.Time, promoted bool) {
	t.Helper()
	rec := batch(stream, part, first, n, hour, promoted)
	defer rec.Release()
	p := sink.Partition{Tenant: tenant, Stream: stream, Part: part, Hour: hour}
	if err := l.Write(context.Background(), p, rec); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w != nil {
		w.add(stream, part, first, n)
	}
}

type row struct {
	Timestamp  int64   `parquet:"timestamp,timestamp(nanosecond:utc)"`
	Body       string  `parquet:"body"`
	Partition  int32   `parquet:"_partition"`
	Offset     int64   `parquet:"_offset"`
	HTTPStatus *int64  `parquet:"attr_http_status,optional"`
	TraceID    *string `parquet:"trace_id,optional"`
}

// tableFiles plans a scan of the stream's table with iceberg-go and
// returns the planned files' locations, failing on a file planned
// twice or carrying delete files.
func tableFiles(t testing.TB, cat catalog.Catalog, stream string) []string {
	t.Helper()
	tbl, err := cat.LoadTable(context.Background(), iceberg.Ident(tenant, stream))
	if err != nil {
		t.Fatalf("load table %s: %v", stream, err)
	}
	tasks, err := tbl.Scan().PlanFiles(context.Background())
	if err != nil {
		t.Fatalf("plan %s: %v", stream, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, task := range tasks {
		loc := task.File.FilePath()
		if seen[loc] {
			t.Fatalf("table %s lists %s twice", stream, loc)
		}
		seen[loc] = true
		if len(task.DeleteFiles)+len(task.EqualityDeleteFiles)+len(task.DeletionVectorFiles) > 0 {
			t.Fatalf("table %s has delete files for %s", stream, loc)
		}
		out = append(out, loc)
	}
	sort.Strings(out)
	return out
}

// checkTable reads every file the table plans with parquet-go and
// compares the rows with w, and the planned files with the lake's
// committed files.
func checkTable(t testing.TB, cat catalog.Catalog, l *sink.Lake, stream string, w want) {
	t.Helper()
	checkTableIO(t, nil, cat, l, stream, w)
}

// checkTableIO is checkTable for files read through iceberg-go's IO
// with the properties props (object storage).
func checkTableIO(t testing.TB, props map[string]string, cat catalog.Catalog, l *sink.Lake, stream string, w want) {
	t.Helper()
	locs := tableFiles(t, cat, stream)
	var lakeLocs []string
	for _, f := range l.CommittedFiles() {
		if f.Partition.Stream == stream {
			lakeLocs = append(lakeLocs, f.Location)
		}
	}
	sort.Strings(lakeLocs)
	if fmt.Sprint(locs) != fmt.Sprint(lakeLocs) {
		t.Fatalf("table %s plans %d files %v, lake has %d %v", stream, len(locs), locs, len(lakeLocs), lakeLocs)
	}
	got := want{}
	for _, loc := range locs {
		for _, r := range readRows(t, props, loc) {
			k := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			if _, dup := got[k]; dup {
				t.Fatalf("table %s: record %s twice", stream, k)
			}
			got[k] = r.Body
		}
	}
	if len(got) != len(w) {
		t.Fatalf("table %s has %d records, want %d", stream, len(got), len(w))
	}
	for k, b := range w {
		if got[k] != b {
			t.Fatalf("table %s record %s = %q, want %q", stream, k, got[k], b)
		}
	}
}

// readRows reads a data file where it is (file:// or s3://) through
// iceberg-go's IO, with parquet-go.
func readRows(t testing.TB, props map[string]string, loc string) []row {
	t.Helper()
	fs, err := iceio.LoadFS(context.Background(), props, loc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open(loc)
	if err != nil {
		t.Fatalf("open %s: %v", loc, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := pq.OpenFile(f, st.Size())
	if err != nil {
		t.Fatalf("parquet-go open %s: %v", loc, err)
	}
	r := pq.NewGenericReader[row](pf)
	defer r.Close()
	rows := make([]row, pf.NumRows())
	n, err := r.Read(rows)
	if int64(n) != pf.NumRows() {
		t.Fatalf("parquet-go read %d of %d rows of %s: %v", n, pf.NumRows(), loc, err)
	}
	return rows
}

func sync(t testing.TB, r *iceberg.Reconciler) {
	t.Helper()
	if err := r.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func loadTable(t testing.TB, cat catalog.Catalog, stream string) *table.Table {
	t.Helper()
	tbl, err := cat.LoadTable(context.Background(), iceberg.Ident(tenant, stream))
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

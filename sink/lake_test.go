package sink_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/objstore"
	"github.com/weirlabs/weir/sink"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := sink.DefaultConfig()
	ok.Dir = "/tmp/lake"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config with Dir: %v", err)
	}
	for name, mod := range map[string]func(*sink.Config){
		"no dir":          func(c *sink.Config) { c.Dir = "" },
		"tiny target":     func(c *sink.Config) { c.TargetFileBytes = 100 },
		"tiny age":        func(c *sink.Config) { c.MaxFileAge = time.Millisecond },
		"tiny row groups": func(c *sink.Config) { c.RowGroupRows = 10 },
		"zstd 0":          func(c *sink.Config) { c.ZstdLevel = 0 },
		"zstd 23":         func(c *sink.Config) { c.ZstdLevel = 23 },
		"no open files":   func(c *sink.Config) { c.MaxOpenFiles = 0 },
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
		if _, err := sink.New(c, nil, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
}

// TestRoundTrip writes batches, reads the file back with pqarrow and
// compares every column. Checked allocators hold the input batches, the
// Lake's Parquet writers and the reader: nothing may be retained or
// leaked.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	wmem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer wmem.AssertSize(t, 0)
	rmem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer rmem.AssertSize(t, 0)

	cfg := testConfig(t)
	cfg.RowGroupRows = 2048 // several row groups
	l, err := sink.NewWithAllocator(cfg, nil, nil, wmem)
	if err != nil {
		t.Fatal(err)
	}
	recs := SynthBatches(mem, SynthOptions{Rows: 5000, BatchRows: 1000, Part: 2, FirstOffset: 100, Start: hour0})
	defer ReleaseAll(recs)
	p := part("app", 2)
	write(t, l, p, recs)
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	shutdown(t, l)

	files := l.Files()
	if len(files) != 1 {
		t.Fatalf("got %d files, want 1", len(files))
	}
	f := files[0]
	st, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := sink.FileInfo{ID: f.ID, Partition: p, Path: f.Path, Rows: 5000, Bytes: st.Size(), MinOffset: 100, MaxOffset: 5099, Columns: 13}
	if sink.SchemaIdentity(f) == 0 {
		t.Error("no schema identity")
	}
	if want = sink.WithSchemaIdentity(want, sink.SchemaIdentity(f)); f != want {
		t.Errorf("FileInfo = %+v, want %+v", f, want)
	}

	tbl := readTable(t, f.Path, rmem)
	defer tbl.Release()
	if !sameSchema(tbl.Schema(), logschema.Arrow()) {
		t.Fatalf("schema read back:\n%s\nwant:\n%s", tbl.Schema(), logschema.Arrow())
	}
	if tz := tbl.Schema().Field(0).Type.(*arrow.TimestampType).TimeZone; tz != "UTC" {
		t.Errorf("timestamp time zone %q, want UTC", tz)
	}
	if tbl.NumRows() != 5000 {
		t.Fatalf("rows = %d", tbl.NumRows())
	}
	assertColumns(t, tbl, recs, mem, rmem)
}

// TestFileProperties checks the footer: compression, encodings,
// statistics (none for the body and map leaves), row groups and
// key-value metadata (docs/format.md).
func TestFileProperties(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.RowGroupRows = 4096
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 10000, BatchRows: 5000, Part: 7, Start: hour0})
	defer ReleaseAll(recs)
	write(t, l, part("app", 7), recs)
	shutdown(t, l)

	rdr, err := file.OpenParquetFile(l.Files()[0].Path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	md := rdr.MetaData()
	// Two segments of 5000 rows (not small: at least RowGroupRows/8),
	// each cut at 4096 rows, copied as they are.
	if got := md.NumRowGroups(); got != 4 {
		t.Errorf("row groups = %d, want 4 (two batches of 5000 rows, 4096 per group)", got)
	}
	for _, k := range []string{"ARROW:schema", "weir.tenant", "weir.stream", "weir.part", "weir.hour"} {
		if md.KeyValueMetadata().FindValue(k) == nil {
			t.Errorf("footer lacks key-value metadata %q", k)
		}
	}
	if v := *md.KeyValueMetadata().FindValue("weir.part"); v != "7" {
		t.Errorf("weir.part = %q", v)
	}
	checkColumnChunks(t, md.RowGroup(0))
}

// TestFilePropertiesFromParts: a Write of parts too small to judge a
// column by alone (an Arrow request's lanes) gets its encodings from its
// first rows across parts: the trace ids of 200-row parts get no
// dictionary, as those of one large batch do not.
func TestFilePropertiesFromParts(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	parts := cut(SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 10000, Start: hour0}), []int{200})
	defer ReleaseAll(parts)
	write(t, l, part("app", 0), parts)
	shutdown(t, l)
	rdr, err := file.OpenParquetFile(l.Files()[0].Path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	for i := range rdr.MetaData().NumRowGroups() {
		checkColumnChunks(t, rdr.MetaData().RowGroup(i))
	}
}

// checkColumnChunks checks the compression, statistics and encodings of
// a row group's column chunks against the lake's choices (encode.go).
func checkColumnChunks(t *testing.T, rg *metadata.RowGroupMetaData) {
	t.Helper()
	dict := func(encs []parquet.Encoding) bool {
		return slices.Contains(encs, parquet.Encodings.RLEDict) || slices.Contains(encs, parquet.Encodings.PlainDict)
	}
	for i := range rg.NumColumns() {
		path := rg.Schema.Column(i).Path()
		cc, err := rg.ColumnChunk(i)
		if err != nil {
			t.Fatal(err)
		}
		if cc.Compression() != 6 { // ZSTD in parquet.thrift's CompressionCodec
			t.Errorf("%s: compression %v, want ZSTD", path, cc.Compression())
		}
		// Min/max wherever a reader can use them: not the body's, not
		// inside maps.
		stats, err := cc.Statistics()
		wantStats := path != "body" && !strings.HasPrefix(path, "attributes.") && !strings.HasPrefix(path, "resource.")
		if err != nil || (stats != nil && stats.HasMinMax()) != wantStats {
			t.Errorf("%s: min/max statistics %v, want %v (err %v)", path, stats != nil && stats.HasMinMax(), wantStats, err)
		}
		encs := cc.Encodings()
		switch path {
		case "timestamp", "observed_timestamp", "_offset":
			if !slices.Contains(encs, parquet.Encodings.DeltaBinaryPacked) || dict(encs) {
				t.Errorf("%s: encodings %v, want DELTA_BINARY_PACKED", path, encs)
			}
		case "body", "trace_id", "span_id":
			if dict(encs) {
				t.Errorf("%s: encodings %v, want no dictionary (high cardinality)", path, encs)
			}
		default:
			if !dict(encs) {
				t.Errorf("%s: encodings %v, want a dictionary", path, encs)
			}
		}
	}
}

// sameSchema compares field names, types and nullability, not metadata
// (pqarrow's reader adds PARQUET:field_id to every field).
func sameSchema(a, b *arrow.Schema) bool {
	if a.NumFields() != b.NumFields() {
		return false
	}
	for i := range a.NumFields() {
		fa, fb := a.Field(i), b.Field(i)
		if fa.Name != fb.Name || fa.Nullable != fb.Nullable || !arrow.TypeEqual(fa.Type, fb.Type) {
			return false
		}
	}
	return true
}

func TestLayout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 100, BatchRows: 100})
	defer ReleaseAll(recs)
	// Any time within the hour, in any zone, names the same partition.
	tokyo := time.FixedZone("JST", 9*3600)
	p := sink.Partition{Tenant: "acme", Stream: "app_logs", Part: 3, Hour: hour0.Add(17 * time.Minute).In(tokyo)}
	write(t, l, p, recs)

	dir := filepath.Join(cfg.Dir, "tenant=acme", "stream=app_logs", "date=2026-01-02", "hour=03")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !regexp.MustCompile(`^\.\d{8}T\d{6}\.\d{9}Z-[0-9a-f]{8}\.1\.parquet\.tmp$`).MatchString(entries[0].Name()) {
		t.Fatalf("before publish, %s holds %v, want one hidden segment .<ID>.1.parquet.tmp", dir, entries)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.parquet")); len(m) != 0 {
		t.Fatalf("glob *.parquet matches %v before publish", m)
	}
	tmp := entries[0].Name()
	shutdown(t, l)

	files := l.Files()
	if len(files) != 1 {
		t.Fatalf("got %d files", len(files))
	}
	f := files[0]
	if !regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-[0-9a-f]{8}$`).MatchString(f.ID) {
		t.Errorf("ID %q does not match <yyyymmddThhmmss.nnnnnnnnnZ>-<8 hex>", f.ID)
	}
	if want := filepath.Join(dir, f.ID+".parquet"); f.Path != want {
		t.Errorf("Path = %q, want %q", f.Path, want)
	}
	if "."+f.ID+".1.parquet.tmp" != tmp {
		t.Errorf("segment name %q does not match ID %q", tmp, f.ID)
	}
	if !f.Partition.Hour.Equal(hour0) || f.Partition.Hour.Location() != time.UTC {
		t.Errorf("Hour = %v, want %v", f.Partition.Hour, hour0)
	}
	entries, _ = os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != f.ID+".parquet" {
		t.Errorf("after publish, %s holds %v", dir, entries)
	}
}

func TestInvalidPartition(t *testing.T) {
	t.Parallel()
	l := newLake(t, testConfig(t), nil)
	defer shutdown(t, l)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 10, BatchRows: 10})
	defer ReleaseAll(recs)
	for _, p := range []sink.Partition{
		{Tenant: "", Stream: "s"},
		{Tenant: "a/b", Stream: "s"},
		{Tenant: "a", Stream: ".."},
		{Tenant: "a", Stream: "x=y"},
		{Tenant: "a", Stream: strings.Repeat("s", 129)},
	} {
		if err := l.Write(context.Background(), p, recs[0]); !errors.Is(err, sink.ErrInvalidPartition) {
			t.Errorf("Write(%+v) = %v, want ErrInvalidPartition", p, err)
		}
	}
}

func TestRollOnTargetFileBytes(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TargetFileBytes = 64 << 10
	rec := &recorder{}
	l := newLake(t, cfg, rec)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 20000, BatchRows: 1000})
	defer ReleaseAll(recs)
	write(t, l, part("app", 0), recs)
	bySize := len(l.Files())
	shutdown(t, l)

	files := l.Files()
	if bySize < 3 {
		t.Fatalf("%d files published by size before Shutdown, want several (sizes %v)", bySize, sizes(files))
	}
	var rows int64
	for i, f := range files {
		rows += f.Rows
		if i > 0 && f.MinOffset != files[i-1].MaxOffset+1 {
			t.Errorf("file %d starts at offset %d, previous ended at %d", i, f.MinOffset, files[i-1].MaxOffset)
		}
		if i < bySize && (f.Bytes < cfg.TargetFileBytes/2 || f.Bytes > 4*cfg.TargetFileBytes) {
			t.Errorf("file %d published by size is %d bytes, target %d", i, f.Bytes, cfg.TargetFileBytes)
		}
	}
	if rows != 20000 {
		t.Errorf("rows = %d, want 20000", rows)
	}
	if n := len(offsetsIn(t, files)); n != 20000 {
		t.Errorf("%d distinct offsets read back, want 20000", n)
	}
}

// TestRollOnTargetFileBytesInBackground: with Start, files full by size
// are published by the age publisher while writes go on to new files; the
// ones still queued at Shutdown are published too, every row once.
func TestRollOnTargetFileBytesInBackground(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TargetFileBytes = 64 << 10
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 30000, BatchRows: 1000})
	defer ReleaseAll(recs)
	write(t, l, part("app", 0), recs[:20])
	deadline := time.Now().Add(10 * time.Second)
	for len(l.Files()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d files published by size in the background after 10 s", len(l.Files()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	write(t, l, part("app", 0), recs[20:]) // the last of these may still be queued at Shutdown
	shutdown(t, l)
	files := l.Files()
	var rows int64
	for _, f := range files {
		rows += f.Rows
	}
	if n := len(offsetsIn(t, files)); rows != 30000 || n != 30000 {
		t.Errorf("%d rows, %d distinct offsets in %d files; want 30000", rows, n, len(files))
	}
	assertNoTemp(t, cfg.Dir)
}

func sizes(files []sink.FileInfo) []int64 {
	var s []int64
	for _, f := range files {
		s = append(s, f.Bytes)
	}
	return s
}

// TestRollOnMaxFileAge runs on the real clock with a short age:
// testing/synctest cannot be used here, because arrow-go keeps zstd
// encoders in a process-wide sync.Pool and an encoder created inside a
// bubble crashes the next test that reuses it outside ("receive on
// synctest channel from outside bubble").
func TestRollOnMaxFileAge(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxFileAge = time.Second // the publisher ticks every 250 ms
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 300, BatchRows: 100})
	defer ReleaseAll(recs)
	start := time.Now()
	write(t, l, part("app", 0), recs[:1])
	write(t, l, part("other", 0), recs[1:2])
	time.Sleep(100 * time.Millisecond)
	write(t, l, part("app", 0), recs[2:]) // joins the open file: age counts from its first row
	if n := len(l.Files()); n != 0 && time.Since(start) < 750*time.Millisecond {
		t.Fatalf("%d files published %s after the first row, before MaxFileAge-tick", n, time.Since(start))
	}
	for len(l.Files()) < 2 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("files not published by age after %s: %+v", time.Since(start), l.Files())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if elapsed := time.Since(start); elapsed < 750*time.Millisecond {
		t.Errorf("published %s after the first row, want no earlier than MaxFileAge minus one tick (750ms)", elapsed)
	}
	files := l.Files()
	if len(files) != 2 || files[0].Rows+files[1].Rows != 300 {
		t.Errorf("files %+v, want 2 holding 300 rows", files)
	}
	shutdown(t, l)
}

func TestObserverSequence(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TargetFileBytes = 64 << 10
	rec := &recorder{}
	l := newLake(t, cfg, rec)
	rec.mu.Lock()
	rec.lake = l
	rec.mu.Unlock()
	a := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 12000, BatchRows: 1000})
	defer ReleaseAll(a)
	b := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 3000, BatchRows: 1000, Part: 1})
	defer ReleaseAll(b)
	for i := range a {
		write(t, l, part("app", 0), a[i:i+1])
		if i < len(b) {
			write(t, l, part("app", 1), b[i:i+1])
		}
	}
	shutdown(t, l)

	files := l.Files()
	if len(files) < 3 {
		t.Fatalf("%d files, want at least 3", len(files))
	}
	final := make(map[string]sink.FileInfo)
	for _, f := range files {
		final[f.ID] = f
	}
	staged := make(map[string]int64)  // rows staged per file
	published := make(map[string]int) // Published calls per file
	batches := 0
	for _, e := range rec.snapshot() {
		f, ok := final[e.file.ID]
		if !ok {
			t.Fatalf("observer saw file %s that was not published", e.file.ID)
		}
		if e.file.Path != f.Path || e.file.Partition != f.Partition {
			t.Errorf("observer saw %s at %s %+v, published at %s %+v", f.ID, e.file.Path, e.file.Partition, f.Path, f.Partition)
		}
		if e.published {
			published[f.ID]++
			if e.file != f {
				t.Errorf("Published(%+v), Files has %+v", e.file, f)
			}
			if !e.existed || !e.listed {
				t.Errorf("Published(%s): file in place %v, listed by Files %v; want both", f.ID, e.existed, e.listed)
			}
			if staged[f.ID] != f.Rows {
				t.Errorf("Published(%s) after %d rows staged, file has %d", f.ID, staged[f.ID], f.Rows)
			}
			continue
		}
		batches++
		if published[f.ID] > 0 {
			t.Errorf("Staged(%s) after Published", f.ID)
		}
		staged[f.ID] += e.rows
		if e.file.Rows != staged[f.ID] || e.file.Bytes != 0 || e.file.MaxOffset < e.file.MinOffset {
			t.Errorf("Staged(%+v) after %d rows", e.file, staged[f.ID])
		}
	}
	if batches != len(a)+len(b) {
		t.Errorf("Staged called %d times, want %d", batches, len(a)+len(b))
	}
	for id := range final {
		if published[id] != 1 {
			t.Errorf("Published(%s) called %d times", id, published[id])
		}
	}
}

// TestObserverStagedError: an error from Observer.Staged is logged and
// changes nothing; the rows are published.
func TestObserverStagedError(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	rec := &recorder{stageErr: errors.New("boom")}
	var logs logBuffer
	l, err := sink.New(cfg, rec, newLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 300, BatchRows: 100})
	defer ReleaseAll(recs)
	write(t, l, part("app", 0), recs) // each Write returns nil
	shutdown(t, l)
	files := l.Files()
	if len(files) != 1 || files[0].Rows != 300 {
		t.Errorf("published %+v, want one file of 300 rows", files)
	}
	if got := strings.Count(logs.String(), "boom"); got != 1 {
		t.Errorf("the observer's error was logged %d times, want once (throttled):\n%s", got, logs.String())
	}
	assertNoTemp(t, cfg.Dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".tmp") {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
}

// TestFailedPublish removes a partition's directory under an open file, so
// that its publish fails: Flush reports a FileError, the next Write to
// the stream partition returns it, the one after succeeds.
func TestFailedPublish(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	rec := &recorder{}
	l := newLake(t, cfg, rec)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 300, BatchRows: 100})
	defer ReleaseAll(recs)
	p := part("app", 0)
	write(t, l, p, recs[:2])
	write(t, l, part("ok", 0), recs[:1])
	if err := os.RemoveAll(filepath.Join(cfg.Dir, "tenant=acme", "stream=app")); err != nil {
		t.Fatal(err)
	}
	err := l.Flush(context.Background())
	var fe *sink.FileError
	if !errors.As(err, &fe) || fe.File.Rows != 200 || fe.File.Partition != p {
		t.Fatalf("Flush = %v, want a FileError for 200 rows of %+v", err, p)
	}
	if len(l.Files()) != 1 {
		t.Errorf("Files = %+v, want the other partition's file only", l.Files())
	}
	other := p
	other.Hour = p.Hour.Add(time.Hour) // same stream partition, other hour
	if err := l.Write(context.Background(), other, recs[2]); !errors.As(err, &fe) {
		t.Fatalf("next Write = %v, want the FileError", err)
	}
	write(t, l, other, recs[2:])
	shutdown(t, l)
	if len(l.Files()) != 2 {
		t.Errorf("Files = %+v", l.Files())
	}
	abandoned := 0
	for _, e := range rec.snapshot() {
		if e.published && e.file.ID == fe.File.ID {
			t.Errorf("Published called for the abandoned file")
		}
		if e.abandoned {
			abandoned++
			if e.file.ID != fe.File.ID {
				t.Errorf("Abandoned called for %s, want %s", e.file.ID, fe.File.ID)
			}
		}
	}
	if abandoned != 1 {
		t.Errorf("Abandoned called %d times, want once", abandoned)
	}
	assertNoTemp(t, cfg.Dir)
}

func TestSchemaChange(t *testing.T) {
	t.Parallel()
	l := newLake(t, testConfig(t), nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 200, BatchRows: 100})
	defer ReleaseAll(recs)
	p := part("app", 0)
	write(t, l, p, recs[:1])
	// A narrower schema: the first two columns only.
	narrow := array.NewRecordBatch(arrow.NewSchema(logschema.Arrow().Fields()[:2], nil), recs[1].Columns()[:2], recs[1].NumRows())
	defer narrow.Release()
	write(t, l, p, []arrow.RecordBatch{narrow})
	if n := len(l.Files()); n != 1 {
		t.Errorf("%d files published on schema change, want 1", n)
	}
	shutdown(t, l)
	files := l.Files()
	if len(files) != 2 || files[0].Rows != 100 || files[1].Rows != 100 || files[1].MinOffset != -1 {
		t.Fatalf("files %+v", files)
	}
	tbl := readTable(t, files[1].Path, memory.DefaultAllocator)
	defer tbl.Release()
	if !sameSchema(tbl.Schema(), narrow.Schema()) {
		t.Errorf("second file schema %s", tbl.Schema())
	}
}

func TestMaxOpenFiles(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxOpenFiles = 2
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 100, BatchRows: 100})
	defer ReleaseAll(recs)
	write(t, l, part("a", 0), recs)
	write(t, l, part("b", 0), recs)
	if n := len(l.Files()); n != 0 {
		t.Fatalf("%d files published with 2 open, want 0", n)
	}
	write(t, l, part("c", 0), recs)
	files := l.Files()
	if len(files) != 1 || files[0].Partition.Stream != "a" {
		t.Fatalf("after a third partition, published %+v, want the oldest (a)", files)
	}
	shutdown(t, l)
	if n := len(l.Files()); n != 3 {
		t.Errorf("%d files after Shutdown, want 3", n)
	}
}

// TestRestart simulates a crash: leftover temporary files (garbage and a
// cut-off Parquet file) are removed by New, published files are found
// with their rows, stream partition and offsets.
func TestRestart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 3000, BatchRows: 1000, FirstOffset: 500, Part: 4})
	defer ReleaseAll(recs)
	write(t, l, part("app", 4), recs)
	write(t, l, part("db", 0), recs[:1])
	shutdown(t, l)
	before := l.Files()
	if len(before) != 2 {
		t.Fatalf("files %+v", before)
	}

	// Leftovers of a crash: a cut-off copy of a real file and garbage.
	data, err := os.ReadFile(before[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(before[0].Path)
	cut := filepath.Join(dir, ".20260102T030000.000000000Z-00000001.parquet.tmp")
	junk := filepath.Join(cfg.Dir, "tenant=acme", "stream=new", "date=2026-01-02", "hour=04", ".20260102T040000.000000000Z-00000002.parquet.tmp")
	if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(junk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("PAR1 not really"), 0o644); err != nil {
		t.Fatal(err)
	}

	var logs logBuffer
	l2, err := sink.New(cfg, nil, newLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l2)
	for _, p := range []string{cut, junk} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s not removed (%v)", p, err)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "count=2") {
		t.Errorf("no warning with the count of leftovers in log:\n%s", logs.String())
	}
	after := l2.Files()
	if !slices.Equal(before, after) {
		t.Errorf("Files after restart:\n%+v\nbefore:\n%+v", after, before)
	}
	if got := l2.LastOffset("acme", "app", 4); got != 3500 {
		t.Errorf("LastOffset(app, 4) = %d, want 3500", got)
	}
	// New IDs still sort after the old ones.
	write(t, l2, part("app", 4), recs[:1])
	if err := l2.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := l2.Files()
	if len(files) != 3 || files[2].ID <= before[1].ID && files[2].ID <= before[0].ID {
		t.Errorf("files after a new publish: %+v", files)
	}
}

// TestDamagedPublishedFiles: New moves published files whose footers do
// not parse (cut short, not Parquet, empty) to .damaged/ at the same
// relative paths, lists them in Damaged, leaves them out of Files and
// LastOffset and never scans them again; it refuses instead past
// MaxDamagedFiles (moving nothing), with a remote lake, and for a file
// it cannot read at all.
func TestDamagedPublishedFiles(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 500, BatchRows: 500})
	defer ReleaseAll(recs)
	for _, s := range []string{"cut", "junk", "empty", "sound"} {
		write(t, l, part(s, 0), recs)
	}
	shutdown(t, l)
	paths := make(map[string]string) // stream → path
	for _, f := range l.Files() {
		paths[f.Partition.Stream] = f.Path
	}
	data, err := os.ReadFile(paths["cut"])
	if err != nil {
		t.Fatal(err)
	}
	for s, b := range map[string][]byte{"cut": data[:len(data)/2], "junk": []byte("PAR1 not really PAR1"), "empty": nil} {
		if err := os.WriteFile(paths[s], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	few := cfg
	few.MaxDamagedFiles = 2
	if _, err := sink.New(few, nil, nil); err == nil || !strings.Contains(err.Error(), "3 published files are damaged") {
		t.Fatalf("New with 3 damaged files and MaxDamagedFiles 2: %v", err)
	}
	// A lake in object storage whose upload log says the files are in
	// the bucket, which cannot be reached: the start waits for the
	// bucket's copies rather than set the files aside.
	remote := cfg
	remote.Remote = &sink.Remote{Store: awayStore{}}
	var uploaded strings.Builder
	for _, p := range paths {
		rel, _ := filepath.Rel(cfg.Dir, p)
		uploaded.WriteString(filepath.ToSlash(rel) + "\n")
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, ".uploaded.log"), []byte(uploaded.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.New(remote, nil, nil); err == nil || !strings.Contains(err.Error(), "could not be downloaded") {
		t.Fatalf("New of a remote lake with damaged files and the bucket away: %v", err)
	}
	if err := os.Remove(filepath.Join(cfg.Dir, ".uploaded.log")); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a refused New moved %s: %v", p, err)
		}
	}

	var logs logBuffer
	l2, err := sink.New(cfg, nil, newLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	shutdown(t, l2)
	if files := l2.Files(); len(files) != 1 || files[0].Path != paths["sound"] {
		t.Errorf("Files after setting damaged files aside: %+v", files)
	}
	if got := l2.LastOffset("acme", "cut", 0); got != 0 {
		t.Errorf("LastOffset of a stream whose only file is damaged = %d, want 0", got)
	}
	dmg := l2.Damaged()
	if len(dmg) != 3 {
		t.Fatalf("Damaged() = %+v, want 3 files", dmg)
	}
	for _, d := range dmg {
		from, to := filepath.Join(cfg.Dir, d.Path), filepath.Join(cfg.Dir, d.Moved)
		if d.Moved != filepath.Join(".damaged", d.Path) || d.Err == "" {
			t.Errorf("damaged file %+v", d)
		}
		if _, err := os.Stat(from); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still in the lake: %v", from, err)
		}
		if st, err := os.Stat(to); err != nil || st.Size() != d.Bytes {
			t.Errorf("%s set aside: %v (size %v, want %d)", to, err, st, d.Bytes)
		}
		if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), d.Path) {
			t.Errorf("no error logged for %s:\n%s", d.Path, logs.String())
		}
	}

	// The next start finds nothing damaged and leaves .damaged/ alone.
	l3 := newLake(t, cfg, nil)
	shutdown(t, l3)
	if d, files := l3.Damaged(), l3.Files(); len(d) != 0 || len(files) != 1 {
		t.Errorf("the next start: Damaged %+v, Files %+v", d, files)
	}
	for _, d := range dmg {
		if _, err := os.Stat(filepath.Join(cfg.Dir, d.Moved)); err != nil {
			t.Errorf("a set-aside file went away: %v", err)
		}
	}

	// A file that cannot be read at all is not damaged: it stops the
	// start rather than have its rows hidden.
	if err := os.Symlink(filepath.Join(t.TempDir(), "gone.parquet"), paths["cut"]); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.New(cfg, nil, nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a dangling published file: %v", err)
	}
	if d, err := os.Lstat(paths["cut"]); err != nil || d.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the dangling file was moved: %v", err)
	}
}

// TestSetAside: files another reader found unreadable leave the lake
// before Start as damaged ones do at New: moved under .damaged/, listed by
// Damaged, gone from Files, and LastOffset no longer counts their offsets
// (recovery replays them); more than MaxDamagedFiles, or a call after
// Start, is refused and moves nothing.
func TestSetAside(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxDamagedFiles = 1
	l := newLake(t, cfg, nil)
	for i := range 3 {
		p := part("app", 0)
		p.Hour = hour0.Add(time.Duration(i) * time.Hour)
		writeRows(t, l, p, int64(i)*100, 100)
	}
	files := l.Files()
	why := []error{errors.New("DuckDB: no"), errors.New("DuckDB: no")}
	if err := l.SetAside(files[1:], why); err == nil || !strings.Contains(err.Error(), "more than sink.max_damaged_files") {
		t.Fatalf("SetAside of 2 files with MaxDamagedFiles 1: %v", err)
	}
	if got := len(l.Files()); got != 3 || len(l.Damaged()) != 0 {
		t.Fatalf("a refused SetAside changed the lake: %d files, %+v", got, l.Damaged())
	}

	if err := l.SetAside(files[2:], why[:1]); err != nil {
		t.Fatal(err)
	}
	if got := l.Files(); len(got) != 2 || got[1].ID != files[1].ID {
		t.Errorf("Files after SetAside: %+v", got)
	}
	if got := l.LastOffset("acme", "app", 0); got != 200 {
		t.Errorf("LastOffset = %d, want 200: the set-aside file's offsets are not in the lake", got)
	}
	d := l.Damaged()
	rel, _ := filepath.Rel(cfg.Dir, files[2].Path)
	if len(d) != 1 || d[0].Path != rel || d[0].Restored || d[0].Err != "DuckDB: no" {
		t.Fatalf("Damaged = %+v", d)
	}
	if _, err := os.Stat(files[2].Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is still in the lake: %v", err)
	}
	if st, err := os.Stat(filepath.Join(cfg.Dir, d[0].Moved)); err != nil || st.Size() != files[2].Bytes {
		t.Errorf("the file was not set aside whole: %v", err)
	}
	if err := l.SetAside(files[2:], why[:1]); err != nil {
		t.Errorf("SetAside of a file the lake no longer has: %v", err)
	}

	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.SetAside(files[:1], why[:1]); err == nil {
		t.Fatal("SetAside after Start passed")
	}
	if len(l.Files()) != 2 {
		t.Errorf("a refused SetAside changed the lake")
	}
	// The next lake finds the rest and leaves .damaged/ alone.
	shutdown(t, l)
	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	if got := l2.LastOffset("acme", "app", 0); len(l2.Files()) != 2 || got != 200 {
		t.Errorf("the next start: %d files, LastOffset %d", len(l2.Files()), got)
	}
}

// awayStore is a bucket that cannot be reached.
type awayStore struct{ objstore.Store }

func (awayStore) Get(context.Context, string, string) error {
	return errors.New("dial tcp: connection refused")
}

func TestLastOffset(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	r0 := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 1000, BatchRows: 500, Part: 0})
	defer ReleaseAll(r0)
	r1 := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 1000, BatchRows: 500, Part: 1, FirstOffset: 500})
	defer ReleaseAll(r1)
	write(t, l, part("app", 0), r0)
	write(t, l, part("app", 1), r1)
	if got := l.LastOffset("acme", "app", 0); got != 0 {
		t.Errorf("LastOffset before publish = %d, want 0", got)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A later hour of part 0 with lower offsets does not move it back.
	later := part("app", 0)
	later.Hour = later.Hour.Add(time.Hour)
	write(t, l, later, r0[:1])
	shutdown(t, l)
	check := func(l *sink.Lake) {
		t.Helper()
		for _, c := range []struct {
			stream string
			part   int32
			want   int64
		}{{"app", 0, 1000}, {"app", 1, 1500}, {"app", 2, 0}, {"other", 0, 0}} {
			if got := l.LastOffset("acme", c.stream, c.part); got != c.want {
				t.Errorf("LastOffset(%s, %d) = %d, want %d", c.stream, c.part, got, c.want)
			}
		}
	}
	check(l)
	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	check(l2)
}

// TestConcurrentWriters runs two writers per partition on four
// partitions, with size rolls, the age publisher and Flush calls racing,
// and checks that every row is published exactly once.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TargetFileBytes = 32 << 10
	cfg.MaxFileAge = 50 * time.Millisecond
	cfg.MaxOpenFiles = 3 // fewer than the partitions: evictions too
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const (
		parts   = 4
		writers = 2
		batches = 20
		rows    = 200
	)
	var wg sync.WaitGroup
	for p := range parts {
		for w := range writers {
			recs := SynthBatches(memory.DefaultAllocator, SynthOptions{
				Rows: batches * rows, BatchRows: rows, Part: int32(p),
				FirstOffset: int64(w * batches * rows), Seed: uint64(p*10 + w),
			})
			wg.Go(func() {
				defer ReleaseAll(recs)
				for _, r := range recs {
					if err := l.Write(context.Background(), part("app", int32(p)), r); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	stop := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(7 * time.Millisecond):
				if err := l.Flush(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}
	})
	wg.Wait()
	close(stop)
	flusher.Wait()
	shutdown(t, l)

	files := l.Files()
	if !slices.IsSortedFunc(files, func(a, b sink.FileInfo) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("Files not sorted by ID")
	}
	for p := range parts {
		var mine []sink.FileInfo
		for _, f := range files {
			if f.Partition.Part == int32(p) {
				mine = append(mine, f)
			}
		}
		seen := offsetsIn(t, mine)
		if len(seen) != writers*batches*rows {
			t.Errorf("part %d: %d distinct offsets, want %d", p, len(seen), writers*batches*rows)
		}
		for off, n := range seen {
			if n != 1 {
				t.Errorf("part %d: offset %d published %d times", p, off, n)
				break
			}
		}
		if got := l.LastOffset("acme", "app", int32(p)); got != writers*batches*rows {
			t.Errorf("part %d: LastOffset %d", p, got)
		}
	}
	assertNoTemp(t, cfg.Dir)
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 100, BatchRows: 100})
	defer ReleaseAll(recs)
	for i := range 5 {
		write(t, l, part(fmt.Sprintf("s%d", i), 0), recs)
	}
	shutdown(t, l) // without Start
	if n := len(l.Files()); n != 5 {
		t.Errorf("%d files after Shutdown, want 5", n)
	}
	shutdown(t, l) // twice
	if err := l.Write(context.Background(), part("s0", 0), recs[0]); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Write after Shutdown = %v, want ErrClosed", err)
	}
	if err := l.Start(context.Background()); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Start after Shutdown = %v, want ErrClosed", err)
	}
	assertNoTemp(t, cfg.Dir)

	// With Start, and a deadline that has passed.
	l2 := newLake(t, testConfig(t), nil)
	if err := l2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, l2, part("s", 0), recs)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l2.Shutdown(ctx); err == nil {
		t.Error("Shutdown with a cancelled context succeeded")
	}
	shutdown(t, l2) // still publishes, and joins the goroutine
	if n := len(l2.Files()); n != 1 {
		t.Errorf("%d files, want 1", n)
	}
}

func TestOldestUnpublished(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 300, BatchRows: 100, FirstOffset: 1000})
	defer ReleaseAll(recs)
	p := part("app", 0)
	if _, ok := l.OldestUnpublished(p.Tenant, p.Stream, p.Part); ok {
		t.Fatal("an empty lake has unpublished rows")
	}
	write(t, l, p, recs[:2])
	if off, ok := l.OldestUnpublished(p.Tenant, p.Stream, p.Part); !ok || off != 1000 {
		t.Fatalf("after two batches: %d %t, want 1000", off, ok)
	}
	if _, ok := l.OldestUnpublished(p.Tenant, p.Stream, 1); ok {
		t.Fatal("another partition has unpublished rows")
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.OldestUnpublished(p.Tenant, p.Stream, p.Part); ok {
		t.Fatal("rows unpublished after Flush")
	}
	write(t, l, p, recs[2:])
	// An abandoned file's rows stay unpublished for good.
	if err := os.RemoveAll(filepath.Join(cfg.Dir, "tenant="+p.Tenant, "stream="+p.Stream)); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err == nil {
		t.Fatal("Flush of a file whose directory was removed succeeded")
	}
	if off, ok := l.OldestUnpublished(p.Tenant, p.Stream, p.Part); !ok || off != 1200 {
		t.Fatalf("after abandoning: %d %t, want 1200", off, ok)
	}
	shutdown(t, l)
}

func TestPublishedOffsets(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 300, BatchRows: 100, FirstOffset: 500})
	defer ReleaseAll(recs)
	p := part("app", 0)
	write(t, l, p, recs[:1]) // 500..599
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, l, p, recs[2:]) // 700..799
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, l, p, recs[1:2]) // 600..699, not published
	set, err := l.PublishedOffsets(context.Background(), p.Tenant, p.Stream, p.Part, 550)
	if err != nil {
		t.Fatal(err)
	}
	want := sink.OffsetSet{{From: 550, To: 600}, {From: 700, To: 800}}
	if !reflect.DeepEqual(set, want) {
		t.Fatalf("PublishedOffsets from 550 = %v, want %v", set, want)
	}
	for o, in := range map[int64]bool{549: false, 550: true, 599: true, 600: false, 699: false, 700: true, 799: true, 800: false} {
		if set.Contains(o) != in {
			t.Errorf("Contains(%d) = %t", o, !in)
		}
	}
	shutdown(t, l)
}

// TestPublishedOffsetsFromStatistics: a file whose rows fill its offset
// range is not read for its offsets, so recovery gets them even when the
// file's pages are damaged (its footer intact); a file with gaps is read.
func TestPublishedOffsetsFromStatistics(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 300, BatchRows: 100, FirstOffset: 500})
	defer ReleaseAll(recs)
	write(t, l, part("dense", 0), recs[:2]) // 500..699
	write(t, l, part("gaps", 0), recs[0:1]) // 500..599 and 700..799
	write(t, l, part("gaps", 0), recs[2:3])
	shutdown(t, l)
	for _, f := range l.Files() {
		if f.Partition.Stream != "dense" {
			continue
		}
		zeroPages(t, f.Path)
	}
	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	for stream, want := range map[string]sink.OffsetSet{
		"dense": {{From: 550, To: 700}},
		"gaps":  {{From: 550, To: 600}, {From: 700, To: 800}},
	} {
		set, err := l2.PublishedOffsets(context.Background(), "acme", stream, 0, 550)
		if err != nil || !reflect.DeepEqual(set, want) {
			t.Errorf("PublishedOffsets(%s, 550) = %v, %v; want %v", stream, set, err, want)
		}
	}
}

// TestCodecs writes a file with each codec files written at ingest may
// use and reads every value back; an unknown codec is refused.
func TestCodecs(t *testing.T) {
	t.Parallel()
	for codec, want := range map[sink.Codec]compress.Compression{
		sink.CodecLZ4:    compress.Codecs.Lz4Raw,
		sink.CodecSnappy: compress.Codecs.Snappy,
		sink.CodecNone:   compress.Codecs.Uncompressed,
	} {
		t.Run(string(codec), func(t *testing.T) {
			t.Parallel()
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			cfg := testConfig(t)
			cfg.Codec = codec
			l := newLake(t, cfg, nil)
			recs := SynthBatches(mem, SynthOptions{Rows: 3000, BatchRows: 1000, Part: 1, Start: hour0})
			defer ReleaseAll(recs)
			write(t, l, part("app", 1), recs)
			shutdown(t, l)

			path := l.Files()[0].Path
			rdr, err := file.OpenParquetFile(path, false)
			if err != nil {
				t.Fatal(err)
			}
			md := rdr.MetaData()
			for i := range md.Schema.NumColumns() {
				cc, err := md.RowGroup(0).ColumnChunk(i)
				if err != nil {
					t.Fatal(err)
				}
				if cc.Compression() != want {
					t.Errorf("%s: compression %v, want %v", md.Schema.Column(i).Path(), cc.Compression(), want)
				}
			}
			rdr.Close()
			rmem := memory.NewGoAllocator() // unchecked: see TestRoundTrip
			tbl := readTable(t, path, rmem)
			defer tbl.Release()
			if tbl.NumRows() != 3000 {
				t.Fatalf("rows = %d", tbl.NumRows())
			}
			assertColumns(t, tbl, recs, mem, rmem)
		})
	}
	cfg := testConfig(t)
	cfg.Codec = "brotli"
	if _, err := sink.New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "Codec") {
		t.Errorf("codec brotli: err = %v, want a Codec error", err)
	}
}

package iceberg_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	ice "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/sink/iceberg"
)

// TestTableFollowsLake publishes files into a real lake, reconciles, and
// reads each stream's table back through iceberg-go's scan planning and
// parquet-go: after publishes, compaction, a delete, retention and a
// restart, the table plans exactly the lake's files, holding every
// record once.
func TestTableFollowsLake(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	cat := e.catalog(t)
	r := e.reconciler(t, l, cat)
	app, web, old := want{}, want{}, want{}

	// Publishes: three files of app partition 0, one of partition 1,
	// one of web with a promoted column, one of old.
	write(t, l, app, "app", 0, 0, 100, hour0, false)
	write(t, l, app, "app", 0, 100, 100, hour0, false)
	write(t, l, app, "app", 0, 200, 50, hour0.Add(24*time.Hour), false)
	write(t, l, app, "app", 1, 0, 30, hour0, false)
	write(t, l, web, "web", 0, 0, 40, hour0, true)
	write(t, l, old, "old", 0, 0, 10, hour0, false)
	dead := want{}
	write(t, l, dead, "_dead_letter", 0, 0, 5, hour0, false)
	sync(t, r)
	checkTable(t, cat, l, "app", app)
	checkTable(t, cat, l, "web", web)
	checkTable(t, cat, l, "old", old)
	checkTable(t, cat, l, "_dead_letter", dead)
	if s := r.Stats(); s.Snapshots != 4 || s.FilesAdded != 7 || s.FilesRemoved != 0 || s.Lag != 0 {
		t.Fatalf("stats after publishes: %+v", s)
	}
	assertLastOperation(t, cat, "app", table.OpAppend)

	// The schema: timestamptz_ns columns (format version 3), flags as long, the promoted
	// column added to web's table and its name mapping; day partitions.
	tbl := loadTable(t, cat, "web")
	if v := tbl.Metadata().Version(); v != 3 {
		t.Errorf("web table format version %d, want 3", v)
	}
	sc := tbl.Schema()
	for name, typ := range map[string]ice.Type{
		"timestamp":          ice.PrimitiveTypes.TimestampTzNs,
		"observed_timestamp": ice.PrimitiveTypes.TimestampTzNs,
		"flags":              ice.PrimitiveTypes.Int64,
		"_offset":            ice.PrimitiveTypes.Int64,
		"attr_http_status":   ice.PrimitiveTypes.Int64,
	} {
		f, ok := sc.FindFieldByName(name)
		if !ok || !f.Type.Equals(typ) {
			t.Errorf("web column %s: %v, want %v", name, f.Type, typ)
		}
	}
	nm := tbl.NameMapping()
	if nm == nil {
		t.Fatal("web table has no name mapping")
	}
	if id, ok := sc.FindFieldByName("attr_http_status"); !ok || nameMappedID(nm, "attr_http_status") != id.ID {
		t.Errorf("name mapping lacks attr_http_status: %v", nm)
	}
	spec := tbl.Spec()
	if spec.NumFields() != 1 || spec.Field(0).Transform.String() != "day" {
		t.Errorf("partition spec %v, want day(timestamp)", spec)
	}
	// Partition pruning: a filter on one day plans only its file.
	appTbl := loadTable(t, cat, "app")
	tasks, err := appTbl.Scan(table.WithRowFilter(ice.GreaterThanEqual(ice.Reference("timestamp"), hour0.Add(24*time.Hour).UnixNano()))).PlanFiles(context.Background())
	if err != nil || len(tasks) != 1 || tasks[0].File.Count() != 50 {
		t.Fatalf("day filter planned %d files (%v), want the one of the second day", len(tasks), err)
	}

	// Compaction replaces app's and web's files: one overwrite snapshot
	// per table.
	before := r.Stats()
	compact(t, l)
	sync(t, r)
	checkTable(t, cat, l, "app", app)
	checkTable(t, cat, l, "web", web)
	assertLastOperation(t, cat, "app", table.OpOverwrite)
	if s := r.Stats(); s.FilesRemoved == before.FilesRemoved || s.Snapshots-before.Snapshots > 4 { // at most one per table
		t.Fatalf("stats after compaction: %+v (before %+v)", s, before)
	}

	// A delete rewrites app's first-day file of partition 0 without
	// offsets 10-19.
	res, err := l.DeleteRows(context.Background(), tenant, "app", hour0, map[int32]sink.OffsetSet{0: {{From: 10, To: 20}}})
	if err != nil || res.Rows != 10 {
		t.Fatalf("DeleteRows = %+v, %v", res, err)
	}
	for o := 10; o < 20; o++ {
		delete(app, "0/"+strconv.Itoa(o))
	}
	sync(t, r)
	checkTable(t, cat, l, "app", app)

	// Retention removes old's only file: its table is emptied.
	removed, err := l.Retain(context.Background())
	if err != nil || len(removed) != 1 {
		t.Fatalf("Retain = %d files, %v", len(removed), err)
	}
	sync(t, r)
	checkTable(t, cat, l, "old", want{})
	assertLastOperation(t, cat, "old", table.OpOverwrite)

	// Nothing changed: a pass commits nothing.
	before = r.Stats()
	sync(t, r)
	if s := r.Stats(); s.Snapshots != before.Snapshots {
		t.Fatalf("an idle pass committed %d snapshots", s.Snapshots-before.Snapshots)
	}

	// Restart: a new lake and a new reconciler on the same directories
	// commit nothing and see the same tables; new files then follow.
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l2 := e.openLake(t)
	cat2 := e.catalog(t)
	r2 := e.reconciler(t, l2, cat2)
	sync(t, r2)
	if s := r2.Stats(); s.Snapshots != 0 {
		t.Fatalf("restart committed %d snapshots", s.Snapshots)
	}
	checkTable(t, cat2, l2, "app", app)
	checkTable(t, cat2, l2, "web", web)
	checkTable(t, cat2, l2, "old", want{})
	write(t, l2, app, "app", 1, 30, 20, hour0, false)
	sync(t, r2)
	checkTable(t, cat2, l2, "app", app)
}

// TestBackground runs the reconciler in the background: a nudge after a
// publish brings the table up to date, and Shutdown joins it.
func TestBackground(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	cat := e.catalog(t)
	cfg := e.icebergConfig()
	cfg.Interval = time.Hour // only nudges and the first pass run
	r, err := iceberg.New(cfg, l, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	w := want{}
	for i := range 3 {
		write(t, l, w, "app", 0, int64(100*i), 100, hour0, false)
		r.Nudge()
		waitFor(t, func() bool { s := r.Stats(); return s.FilesAdded == int64(i+1) && s.Lag == 0 })
		checkTable(t, cat, l, "app", w)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	// A bound for a loaded machine (the race detector, MinIO and every
	// package's tests at once), not a timing: conditions are met within
	// a few seconds on a quiet one.
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// compact compacts until every committed file is the output of a
// compaction. Files become due one at a time, as each passes
// CompactAge, so a single Compact call may take only some of them.
func compact(t *testing.T, l *sink.Lake) {
	t.Helper()
	waitFor(t, func() bool {
		if _, err := l.Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, f := range l.CommittedFiles() {
			if !f.Compacted {
				return false
			}
		}
		return true
	})
}

func assertLastOperation(t *testing.T, cat interface {
	LoadTable(context.Context, table.Identifier) (*table.Table, error)
}, stream string, op table.Operation) {
	t.Helper()
	tbl, err := cat.LoadTable(context.Background(), iceberg.Ident(tenant, stream))
	if err != nil {
		t.Fatal(err)
	}
	s := tbl.CurrentSnapshot()
	if s == nil || s.Summary == nil || s.Summary.Operation != op {
		t.Fatalf("table %s: last snapshot %+v, want operation %s", stream, s, op)
	}
}

func nameMappedID(nm ice.NameMapping, name string) int {
	for _, f := range nm {
		for _, n := range f.Names {
			if n == name && f.FieldID != nil {
				return *f.FieldID
			}
		}
	}
	return -1
}

// TestExpireSnapshots: a table keeps a bounded history. With 3
// snapshots kept, 12 publishes leave at most 4 snapshots, the manifest
// files of the expired ones are deleted, the metadata files are
// bounded, and the table still plans every file of the lake.
func TestExpireSnapshots(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	cat := e.catalog(t)
	cfg := e.icebergConfig()
	cfg.KeepSnapshots, cfg.KeepFor = 3, 0
	r, err := iceberg.New(cfg, l, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	app := want{}
	for i := range 12 {
		write(t, l, app, "app", 0, int64(10*i), 10, hour0, false)
		sync(t, r)
	}
	checkTable(t, cat, l, "app", app)
	tbl := loadTable(t, cat, "app")
	if n := len(tbl.Metadata().Snapshots()); n > 4 {
		t.Fatalf("%d snapshots kept, want at most 4", n)
	}
	meta := filepath.Join(e.warehouse, tenant, "app", "metadata")
	lists, _ := filepath.Glob(filepath.Join(meta, "snap-*.avro"))
	avro, _ := filepath.Glob(filepath.Join(meta, "*.avro"))
	jsons, _ := filepath.Glob(filepath.Join(meta, "*.metadata.json"))
	// A manifest list per kept snapshot; a manifest per append, all
	// referenced by the current snapshot until they are merged (at 100).
	if len(lists) > 4 || len(avro)-len(lists) > 12 || len(jsons) > 21 {
		t.Fatalf("%d manifest lists, %d manifests and %d metadata files left after 12 commits", len(lists), len(avro)-len(lists), len(jsons))
	}
	if s := r.Stats(); s.Snapshots != 12 || s.Failures != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestTypeConflict: a promoted column whose type differs from the
// table's (attr_http_status as text after long) cannot be one Iceberg
// column: the stream's passes fail, saying which column, the table
// keeps what it had, and other streams go on.
func TestTypeConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	cat := e.catalog(t)
	r := e.reconciler(t, l, cat)
	web, app := want{}, want{}
	write(t, l, web, "web", 0, 0, 10, hour0, true)
	sync(t, r)

	rec := batch("web", 0, 10, 10, hour0, false)
	sc := arrow.NewSchema(append(rec.Schema().Fields(), arrow.Field{Name: "attr_http_status", Type: arrow.BinaryTypes.String, Nullable: true}), nil)
	b := array.NewStringBuilder(memory.DefaultAllocator)
	for range 10 {
		b.Append("OK")
	}
	col := b.NewArray()
	b.Release()
	text := array.NewRecordBatch(sc, append(rec.Columns(), col), rec.NumRows())
	rec.Release()
	col.Release()
	defer text.Release()
	if err := l.Write(context.Background(), sink.Partition{Tenant: tenant, Stream: "web", Hour: hour0}, text); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, l, app, "app", 0, 0, 10, hour0, false)
	err := r.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "web") || !strings.Contains(err.Error(), "attr_http_status") {
		t.Fatalf("Sync with a type conflict = %v", err)
	}
	checkTable(t, cat, l, "app", app)
	if got := tableFiles(t, cat, "web"); len(got) != 1 {
		t.Fatalf("web plans %d files, want the first only", len(got))
	}
	if !errors.Is(err, iceberg.ErrTypeConflict) {
		t.Fatalf("error %v is not ErrTypeConflict", err)
	}

	// Once the file is gone (a delete of all its records), the table
	// follows the lake again.
	if res, err := l.DeleteRows(context.Background(), tenant, "web", hour0, map[int32]sink.OffsetSet{0: {{From: 10, To: 20}}}); err != nil || res.Removed != 1 {
		t.Fatalf("DeleteRows = %+v, %v", res, err)
	}
	sync(t, r)
	checkTable(t, cat, l, "web", web)
}

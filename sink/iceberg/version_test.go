package iceberg_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	ice "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/sink/iceberg"
)

// scanTimes reads the stream's table through iceberg-go's own Arrow
// scan and returns the timestamp column's Arrow type and its values by
// "part/offset", failing on a record read twice.
func scanTimes(t testing.TB, cat catalog.Catalog, stream string) (arrow.DataType, map[string]int64) {
	t.Helper()
	tbl := loadTable(t, cat, stream)
	at, err := tbl.Scan(table.WithSelectedFields(logschema.Timestamp, logschema.Partition, logschema.Offset)).ToArrowTable(context.Background())
	if err != nil {
		t.Fatalf("arrow scan of %s: %v", stream, err)
	}
	defer at.Release()
	idx := map[string]int{}
	for i, f := range at.Schema().Fields() {
		idx[f.Name] = i
	}
	typ := at.Schema().Field(idx[logschema.Timestamp]).Type
	got := map[string]int64{}
	tr := array.NewTableReader(at, 1024)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		ts := rec.Column(idx[logschema.Timestamp]).(*array.Timestamp)
		parts := rec.Column(idx[logschema.Partition]).(*array.Int32)
		offs := rec.Column(idx[logschema.Offset]).(*array.Int64)
		for i := range int(rec.NumRows()) {
			k := keyOf(parts.Value(i), offs.Value(i))
			if _, dup := got[k]; dup {
				t.Fatalf("arrow scan of %s: record %s twice", stream, k)
			}
			got[k] = int64(ts.Value(i))
		}
	}
	if err := tr.Err(); err != nil {
		t.Fatal(err)
	}
	return typ, got
}

func keyOf(part int32, off int64) string {
	return fmt.Sprintf("%d/%d", part, off)
}

// wantTimes is the timestamps of records first..first+n-1 of a
// partition written in hour, in unit.
func wantTimes(w map[string]int64, part int32, first int64, n int, hour time.Time, unit time.Duration) {
	for i := range n {
		off := first + int64(i)
		w[keyOf(part, off)] = recordTime(hour, off).UnixNano() / int64(unit)
	}
}

func checkTimes(t testing.TB, cat catalog.Catalog, stream string, wantType arrow.DataType, w map[string]int64) {
	t.Helper()
	typ, got := scanTimes(t, cat, stream)
	if !arrow.TypeEqual(typ, wantType) {
		t.Fatalf("%s: arrow scan reads timestamp as %s, want %s", stream, typ, wantType)
	}
	if len(got) != len(w) {
		t.Fatalf("%s: arrow scan read %d records, want %d", stream, len(got), len(w))
	}
	for k, v := range w {
		if got[k] != v {
			t.Fatalf("%s: record %s timestamp %d, want %d", stream, k, got[k], v)
		}
	}
}

// TestArrowScanNanoseconds reads a table back through iceberg-go's
// Arrow scan after appends, a compaction (overwrite) and snapshot
// expiry: the timestamps come back as timestamp[ns, UTC] with every
// nanosecond written, and row lineage is assigned.
func TestArrowScanNanoseconds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	cat := e.catalog(t)
	cfg := e.icebergConfig()
	cfg.KeepSnapshots, cfg.KeepFor = 1, 0
	r, err := iceberg.New(cfg, l, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	ns := &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}
	w := map[string]int64{}
	write(t, l, nil, "app", 0, 0, 100, hour0, false)
	wantTimes(w, 0, 0, 100, hour0, time.Nanosecond)
	write(t, l, nil, "app", 0, 100, 100, hour0, true)
	wantTimes(w, 0, 100, 100, hour0, time.Nanosecond)
	sync(t, r)
	write(t, l, nil, "app", 1, 0, 30, hour0.Add(24*time.Hour), false)
	wantTimes(w, 1, 0, 30, hour0.Add(24*time.Hour), time.Nanosecond)
	sync(t, r)
	checkTimes(t, cat, "app", ns, w)
	checkRowIDs(t, loadTable(t, cat, "app"))

	tbl := loadTable(t, cat, "app")
	if v := tbl.Metadata().Version(); v != 3 {
		t.Fatalf("format version %d, want 3", v)
	}
	snap := tbl.CurrentSnapshot()
	if snap.FirstRowID == nil || *snap.FirstRowID != 200 || tbl.Metadata().NextRowID() < 230 {
		t.Fatalf("row lineage: snapshot first-row-id %v, next-row-id %d, want 200 and >= 230", snap.FirstRowID, tbl.Metadata().NextRowID())
	}
	// A filter in nanoseconds prunes by day.
	tasks, err := tbl.Scan(table.WithRowFilter(ice.GreaterThanEqual(ice.Reference(logschema.Timestamp), hour0.Add(24*time.Hour).UnixNano()))).PlanFiles(context.Background())
	if err != nil || len(tasks) != 1 || tasks[0].File.Count() != 30 {
		t.Fatalf("day filter planned %d files (%v), want the one of the second day", len(tasks), err)
	}

	compact(t, l)
	sync(t, r)
	assertLastOperation(t, cat, "app", table.OpOverwrite)
	checkTimes(t, cat, "app", ns, w)
	checkRowIDs(t, loadTable(t, cat, "app"))
	for range 3 {
		write(t, l, nil, "app", 1, int64(30+len(w)), 1, hour0, false)
		wantTimes(w, 1, int64(30+len(w)), 1, hour0, time.Nanosecond)
		sync(t, r)
	}
	if n := len(loadTable(t, cat, "app").Metadata().Snapshots()); n > 2 {
		t.Fatalf("%d snapshots kept, want expiry down to 1", n)
	}
	checkTimes(t, cat, "app", ns, w)
	checkRowIDs(t, loadTable(t, cat, "app"))
}

// checkRowIDs checks row lineage: every planned file has a first_row_id,
// the files' row ID ranges do not overlap, and all lie below the
// table's next-row-id.
func checkRowIDs(t testing.TB, tbl *table.Table) {
	t.Helper()
	tasks, err := tbl.Scan().PlanFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ from, to int64 }
	var spans []span
	for _, task := range tasks {
		id := task.File.FirstRowID()
		if id == nil {
			t.Fatalf("%s has no first_row_id", task.File.FilePath())
		}
		s := span{*id, *id + task.File.Count()}
		if s.to > tbl.Metadata().NextRowID() {
			t.Fatalf("%s row IDs %v reach past next-row-id %d", task.File.FilePath(), s, tbl.Metadata().NextRowID())
		}
		for _, o := range spans {
			if s.from < o.to && o.from < s.to {
				t.Fatalf("row IDs %v of %s overlap %v", s, task.File.FilePath(), o)
			}
		}
		spans = append(spans, s)
	}
}

// TestVersion2TableKeepsWorking: a table an older weir created (format
// version 2, timestamptz columns) stays version 2 and follows the lake
// (appends, a promoted column, compaction, retention). iceberg-go's
// Arrow scan refuses it (its files' nanoseconds are not timestamptz);
// dropped, it is created again as version 3 from the lake's files and
// then reads.
func TestVersion2TableKeepsWorking(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	cat := e.catalog(t)
	ctx := context.Background()
	// The table as the previous code created it.
	fields := logschema.Arrow().Fields()
	for i, f := range fields {
		switch f.Type.(type) {
		case *arrow.TimestampType:
			fields[i].Type = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
		case *arrow.Uint32Type:
			fields[i].Type = arrow.PrimitiveTypes.Int64
		}
		fields[i].Metadata = arrow.Metadata{}
	}
	sc, err := table.ArrowSchemaToIcebergWithFreshIDs(arrow.NewSchema(fields, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	tsField, _ := sc.FindFieldByName(logschema.Timestamp)
	spec := ice.NewPartitionSpec(ice.PartitionField{SourceIDs: []int{tsField.ID}, FieldID: 1000, Name: "timestamp_day", Transform: ice.DayTransform{}})
	mapping, err := json.Marshal(sc.NameMapping())
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.CreateNamespace(ctx, table.Identifier{tenant}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.CreateTable(ctx, iceberg.Ident(tenant, "app"), sc, catalog.WithPartitionSpec(&spec),
		catalog.WithProperties(ice.Properties{
			iceberg.ManagedProperty:     "true",
			table.DefaultNameMappingKey: string(mapping),
			"format-version":            "2",
		})); err != nil {
		t.Fatal(err)
	}

	r := e.reconciler(t, l, cat)
	app, old := want{}, want{}
	w := map[string]int64{}
	write(t, l, app, "app", 0, 0, 100, hour0, false)
	write(t, l, app, "app", 0, 100, 50, hour0, true)
	write(t, l, app, "app", 1, 0, 20, hour0.Add(24*time.Hour), false)
	write(t, l, old, "old", 0, 0, 10, hour0, false)
	sync(t, r)
	checkTable(t, cat, l, "app", app)
	tbl := loadTable(t, cat, "app")
	if v := tbl.Metadata().Version(); v != 2 {
		t.Fatalf("old table's format version became %d, want 2", v)
	}
	if f, ok := tbl.Schema().FindFieldByName("attr_http_status"); !ok || !f.Type.Equals(ice.PrimitiveTypes.Int64) {
		t.Fatalf("promoted column in the version 2 table: %v", f)
	}
	// Bounds in microseconds: a day filter still prunes.
	tasks, err := tbl.Scan(table.WithRowFilter(ice.GreaterThanEqual(ice.Reference(logschema.Timestamp), hour0.Add(24*time.Hour).UnixMicro()))).PlanFiles(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].File.Count() != 20 {
		t.Fatalf("day filter planned %d files (%v), want the one of the second day", len(tasks), err)
	}

	compact(t, l)
	sync(t, r)
	assertLastOperation(t, cat, "app", table.OpOverwrite)
	checkTable(t, cat, l, "app", app)
	if _, err := l.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	sync(t, r)
	checkTable(t, cat, l, "old", want{})
	// The new stream's table, created now, is version 3.
	if v := loadTable(t, cat, "old").Metadata().Version(); v != 3 {
		t.Fatalf("new table's format version %d, want 3", v)
	}
	if v := loadTable(t, cat, "app").Metadata().Version(); v != 2 {
		t.Fatalf("old table's format version became %d, want 2", v)
	}
	// As docs/lake.md says: iceberg-go's reader refuses the old table.
	if _, err := loadTable(t, cat, "app").Scan().ToArrowTable(ctx); err == nil || !strings.Contains(err.Error(), "timestamptz_ns") {
		t.Fatalf("arrow scan of the version 2 table: %v, want the refusal of timestamptz_ns as timestamptz", err)
	}

	// Dropping the old table moves it to version 3: the next pass
	// creates it again with the lake's files.
	if err := cat.DropTable(ctx, iceberg.Ident(tenant, "app")); err != nil {
		t.Fatal(err)
	}
	sync(t, r)
	checkTable(t, cat, l, "app", app)
	if v := loadTable(t, cat, "app").Metadata().Version(); v != 3 {
		t.Fatalf("recreated table's format version %d, want 3", v)
	}
	ns := &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}
	for k := range w {
		delete(w, k)
	}
	wantTimes(w, 0, 0, 150, hour0, time.Nanosecond)
	wantTimes(w, 1, 0, 20, hour0.Add(24*time.Hour), time.Nanosecond)
	checkTimes(t, cat, "app", ns, w)
}

package iceberg_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go/catalog"

	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/sink/iceberg"
)

// TestReferenced: Referenced answers true for everything until a pass
// has loaded every table (here the catalog cannot be opened at first),
// then for the files the tables' current snapshots list: a replaced
// file until the pass that takes it out, and, for a table whose pass
// fails, the files it listed. AfterPass follows every pass.
func TestReferenced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.openLake(t)
	cat := e.catalog(t)
	var opens, passes atomic.Int64
	cfg := e.icebergConfig()
	cfg.AfterPass = func() { passes.Add(1) }
	r, err := iceberg.NewOpening(cfg, l, func(context.Context) (catalog.Catalog, error) {
		if opens.Add(1) == 1 {
			return nil, errors.New("catalog down")
		}
		return cat, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const elsewhere = "file:///nowhere/x.parquet"
	app, web := want{}, want{}
	write(t, l, app, "app", 0, 0, 10, hour0, false)
	write(t, l, app, "app", 0, 10, 10, hour0, false)
	write(t, l, web, "web", 0, 0, 10, hour0, true)
	if !r.Referenced(elsewhere) {
		t.Fatal("not referenced before any pass")
	}
	if err := r.Sync(context.Background()); err == nil {
		t.Fatal("a pass with the catalog down succeeded")
	}
	if !r.Referenced(elsewhere) || passes.Load() != 1 {
		t.Fatalf("after a failed first pass: referenced %v, AfterPass %d times", r.Referenced(elsewhere), passes.Load())
	}
	sync(t, r)
	if r.Referenced(elsewhere) || passes.Load() != 2 {
		t.Fatalf("after a pass: a file no table lists is referenced (%v), AfterPass %d times", r.Referenced(elsewhere), passes.Load())
	}
	olds := l.CommittedFiles()
	for _, f := range olds {
		if !r.Referenced(f.Location) {
			t.Fatalf("%s listed by its table, not referenced", f.Location)
		}
	}

	// Compaction: the old files stay referenced until the pass.
	compact(t, l)
	var news []sink.FileInfo
	for _, f := range l.CommittedFiles() {
		if f.Compacted {
			news = append(news, f)
		}
	}
	if len(news) == 0 {
		t.Fatal("nothing compacted")
	}
	for _, f := range olds {
		if !r.Referenced(f.Location) {
			t.Fatalf("replaced %s not referenced before the pass", f.Location)
		}
	}
	sync(t, r)
	for _, f := range olds {
		if r.Referenced(f.Location) {
			t.Fatalf("replaced %s referenced after the pass", f.Location)
		}
	}
	for _, f := range news {
		if !r.Referenced(f.Location) {
			t.Fatalf("compacted %s not referenced after the pass", f.Location)
		}
	}

	// web's pass fails (a column type conflict): its files stay
	// referenced.
	webFiles := tableFiles(t, cat, "web")
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
	if err := r.Sync(context.Background()); !errors.Is(err, iceberg.ErrTypeConflict) {
		t.Fatalf("Sync = %v, want a type conflict", err)
	}
	for _, loc := range webFiles {
		if !r.Referenced(loc) {
			t.Fatalf("%s of the failing table not referenced", loc)
		}
	}
	if r.Referenced(elsewhere) {
		t.Fatal("a failing table makes every file referenced")
	}
}

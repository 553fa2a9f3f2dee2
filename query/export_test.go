package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// exportFixture publishes "app" records in two hours, 30 in the first
// (every third an ERROR) and 20 in the second, through the real
// transform and sink, and returns the engine and the lake.
func exportFixture(t *testing.T, rcfg sink.Retention) (*Engine, *sink.Lake, time.Time) {
	t.Helper()
	dir := t.TempDir()
	e := openEngine(t, dir)
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "lake")
	scfg.MaxFileAge = time.Hour
	scfg.Retention = rcfg
	lake, err := sink.New(scfg, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lake.Shutdown(context.Background()) })
	bt, err := arrowbatch.NewBatcher(arrowbatch.DefaultConfig(), record.DefaultTenant, "app", 0, lake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	var recs []record.Record
	for i := range 50 {
		ts := h0.Add(time.Duration(i) * time.Minute)
		if i >= 30 {
			ts = h0.Add(time.Hour + time.Duration(i)*time.Second)
		}
		r := record.Record{Timestamp: ts.UnixNano(), Body: fmt.Sprintf("line %d", i), SeverityText: "INFO", SeverityNumber: 9}
		if i < 30 && i%3 == 0 {
			r.SeverityText, r.SeverityNumber = "ERROR", 17
		}
		recs = append(recs, r)
	}
	b := record.NewBatch(record.DefaultTenant, "app", recs)
	if err := bt.Consume(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, lake, h0
}

func TestExport(t *testing.T) {
	e, _, h0 := exportFixture(t, sink.Retention{})
	spec := ExportSpec{Stream: "app", From: h0, To: h0.Add(2 * time.Hour)}
	plan, err := e.ExportPlan(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	want := []ExportHour{{Hour: h0, Rows: 30}, {Hour: h0.Add(time.Hour), Rows: 20}}
	if fmt.Sprint(plan) != fmt.Sprint(want) {
		t.Fatalf("plan %v, want %v", plan, want)
	}
	var buf bytes.Buffer
	n, err := e.ExportHour(context.Background(), spec, h0, NewWriter(FormatCSV, &buf))
	if err != nil || n != 30 {
		t.Fatalf("ExportHour = %d, %v", n, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 31 || !strings.HasPrefix(lines[0], "stream,timestamp,") || strings.Contains(lines[0], ",date") {
		t.Errorf("CSV: %d lines, header %q", len(lines), lines[0])
	}
	if !strings.Contains(lines[1], "line 0") || !strings.Contains(lines[30], "line 29") {
		t.Errorf("rows not in timestamp order: %q ... %q", lines[1], lines[30])
	}

	// In Parquet: DuckDB writes the hour, in timestamp order, maps as
	// maps and without the date and hour columns.
	buf.Reset()
	n, err = e.ExportHour(context.Background(), spec, h0, NewWriter(FormatParquet, &buf))
	if err != nil || n != 30 {
		t.Fatalf("ExportHour in Parquet = %d, %v", n, err)
	}
	rec := readParquet(t, buf.Bytes())
	defer rec.Release()
	sc := rec.Schema()
	if rec.NumRows() != 30 || sc.HasField("date") || sc.HasField("hour") || !sc.HasField("attributes") ||
		sc.Field(sc.FieldIndices("attributes")[0]).Type.ID() != arrow.MAP {
		t.Errorf("Parquet export: %d rows, schema %s", rec.NumRows(), sc)
	}
	ts := rec.Column(sc.FieldIndices("timestamp")[0]).(*array.Timestamp)
	for i := 1; i < ts.Len(); i++ {
		if ts.Value(i) < ts.Value(i-1) {
			t.Fatalf("Parquet export: row %d is older than row %d", i, i-1)
		}
	}

	// A predicate and a narrower range.
	spec.Where = "severity_number >= 17 -- errors only"
	spec.From = h0.Add(10 * time.Minute)
	plan, err = e.ExportPlan(context.Background(), spec)
	if err != nil || len(plan) != 1 || plan[0].Rows != 6 {
		t.Fatalf("plan with a predicate = %v, %v; want 6 errors from minute 10 on", plan, err)
	}

	for _, bad := range []string{
		"true) UNION SELECT 1, 2, 3 FROM app WHERE (true",
		"true) ORDER BY 1 LIMIT 1 --",
		"true; DROP VIEW app",
		"true) GROUP BY ALL HAVING (true",
		"body IN (SELECT content FROM read_text('/etc/passwd'))",
		"",
	} {
		s := spec
		s.Where = bad
		if bad == "" {
			s.Where, s.To = "", s.From // an empty range
		}
		if _, err := e.ExportPlan(context.Background(), s); !errors.Is(err, ErrInvalid) {
			t.Errorf("where %q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := e.ExportPlan(context.Background(), ExportSpec{Stream: "nope", From: h0, To: h0.Add(time.Hour)}); !errors.Is(err, ErrUnknownStream) {
		t.Errorf("unknown stream: %v", err)
	}
}

// TestRemovedLeavesViews: files that retention removes leave the views
// at once and are deleted once unseen.
func TestRemovedLeavesViews(t *testing.T) {
	e, lake, _ := exportFixture(t, sink.Retention{Default: 24 * time.Hour})
	if n := queryInts(t, e, "SELECT count(*) FROM app")[0]; n != 50 {
		t.Fatalf("%d rows before retention", n)
	}
	files := lake.Files()
	removed, err := lake.Retain(context.Background())
	if err != nil || len(removed) != len(files) {
		t.Fatalf("Retain = %v, %v", removed, err)
	}
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := queryInts(t, e, "SELECT count(*) FROM app")[0]; n != 0 {
		t.Errorf("%d rows after retention", n)
	}
	for _, f := range files {
		if _, err := filepath.Glob(f.Path); err != nil {
			t.Fatal(err)
		}
		if m, _ := filepath.Glob(f.Path); len(m) != 0 {
			t.Errorf("%s still on disk", f.Path)
		}
	}
}

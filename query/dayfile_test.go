package query

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirlabs/weir/sink"
)

// TestDayFileViews writes rows of three hours of a long past date, which
// the lake puts in one day file (hour=24), and of the current hour,
// which keeps its hour's file, through the real transform and sink: the
// views give every row its own hour, also in filters and in the logs
// view, while staged and once published.
func TestDayFileViews(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil) // day files on
	defer lake.Shutdown(context.Background())
	day := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	cur := time.Now().UTC().Truncate(time.Hour)
	writePartition(t, lake, "app", 0, day.Add(3*time.Hour), [][]int64{seq(0, 10)}, false)
	writePartition(t, lake, "app", 0, day.Add(5*time.Hour), [][]int64{seq(10, 30)}, false)
	writePartition(t, lake, "app", 0, day.Add(23*time.Hour), [][]int64{seq(30, 60)}, false)
	writePartition(t, lake, "app", 0, cur, [][]int64{seq(60, 70)}, false)

	perHour := func(sql string) string {
		t.Helper()
		var w rowsWriter
		if _, err := e.Run(context.Background(), sql, Options{}, &w); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return fmt.Sprint(w.rows)
	}
	check := func(when string) {
		t.Helper()
		// The stream's view is made by the view loop: wait for it.
		if err := e.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for queryInts(t, e, "SELECT count(*) FROM app")[0] != 70 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d rows visible, want 70", when, queryInts(t, e, "SELECT count(*) FROM app")[0])
			}
			time.Sleep(10 * time.Millisecond)
		}
		want := fmt.Sprint([][]any{{"2026-01-02", int32(3), int64(10)}, {"2026-01-02", int32(5), int64(20)}, {"2026-01-02", int32(23), int64(30)}})
		for _, view := range []string{"app", "logs"} {
			if got := perHour(`SELECT date::VARCHAR, hour, count(*) FROM ` + view + ` WHERE date = '2026-01-02' GROUP BY ALL ORDER BY ALL`); got != want {
				t.Errorf("%s: rows per hour of %s = %s, want %s", when, view, got, want)
			}
		}
		if got := queryInts(t, e, "SELECT count(*), min(_offset), max(_offset) FROM logs WHERE date = '2026-01-02' AND hour = 5"); got[0] != 20 || got[1] != 10 || got[2] != 29 {
			t.Errorf("%s: hour = 5: %v, want 20 rows, offsets 10 to 29", when, got)
		}
		if got := queryInts(t, e, fmt.Sprintf("SELECT count(*) FROM app WHERE date = '%s' AND hour = %d", cur.Format("2006-01-02"), cur.Hour())); got[0] != 10 {
			t.Errorf("%s: the current hour: %d rows, want 10", when, got[0])
		}
	}
	check("staged")
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := lake.Files()
	if len(files) != 2 {
		t.Fatalf("%d files published, want the day file and the current hour's: %+v", len(files), files)
	}
	check("published")
}

// TestDayMergeViews: the compacted hour files of a long past date, with
// their rollups, become one day file once day files are on (a lake from
// before them, or a stream's quiet hours once their date is past). The
// views give every row its own hour as before, the rollup views still
// answer as scans do, the old files go once no query reads them and the
// emptied hour directories with them.
func TestDayMergeViews(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func(dayFilesAfter time.Duration) (*Engine, *sink.Lake) {
		e := openEngine(t, dir)
		lake := openLake(t, e, dir, func(c *sink.Config) {
			c.CompactAge = 0 // off: Compact compacts every file
			c.DayFilesAfter = dayFilesAfter
		})
		t.Cleanup(func() { lake.Shutdown(context.Background()) })
		if err := e.AddFiles(lake.Files()); err != nil {
			t.Fatal(err)
		}
		return e, lake
	}
	e, lake := open(0) // hour files only
	day := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	rollupRecords(t, lake, "app", day.Add(3*time.Hour), 300, 0)
	rollupRecords(t, lake, "app", day.Add(5*time.Hour), 200, 1)
	rollupRecords(t, lake, "app", day.Add(23*time.Hour), 100, 2)
	rollupRecords(t, lake, "app", time.Now().UTC(), 50, 3)
	if err := lake.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := lake.Compact(ctx); err != nil || n != 4 {
		t.Fatalf("Compact = %d, %v; want 4 files replaced", n, err)
	}
	want := fmt.Sprint([][]any{{"2026-01-02", int32(3), int64(300)}, {"2026-01-02", int32(5), int64(200)}, {"2026-01-02", int32(23), int64(100)}})
	check := func(e *Engine, when string) {
		t.Helper()
		if got := checkRollups(t, e, when); got != 650 {
			t.Errorf("%s: logs has %d rows, want 650", when, got)
		}
		for _, view := range []string{"app", "logs"} {
			var w rowsWriter
			sql := `SELECT date::VARCHAR, hour, count(*) FROM ` + view + ` WHERE date = '2026-01-02' GROUP BY ALL ORDER BY ALL`
			if _, err := e.Run(ctx, sql, Options{}, &w); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			if got := fmt.Sprint(w.rows); got != want {
				t.Errorf("%s: rows per hour of %s = %s, want %s", when, view, got, want)
			}
		}
	}
	check(e, "hour files")
	hourFiles := lake.Files()
	if err := lake.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	e, lake = open(time.Hour)
	if n, err := lake.Compact(ctx); err != nil || n != 3 {
		t.Fatalf("day merge = %d, %v; want the date's 3 files replaced", n, err)
	}
	files := lake.Files()
	if len(files) != 2 || !files[1].Partition.Day || files[1].Rows != 600 || !files[1].Rollup {
		t.Fatalf("after the day merge: %+v, want today's hour file and one day file of 600 rows with a rollup", files)
	}
	check(e, "day file")
	// The engine deletes the old files once no query reads them (Sync
	// waits for that); the next pass removes their emptied directories.
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range hourFiles {
		if _, err := os.Stat(f.Path); f.Partition.Hour.Before(day.Add(24*time.Hour)) && !os.IsNotExist(err) {
			t.Fatalf("replaced file %s still on disk (%v)", f.Path, err)
		}
	}
	if n, err := lake.Compact(ctx); err != nil || n != 0 {
		t.Fatalf("Compact after the merge = %d, %v; want nothing", n, err)
	}
	dates, err := filepath.Glob(filepath.Join(dir, "lake", "tenant=*", "stream=app", "date=2026-01-02", "*"))
	if err != nil || len(dates) != 1 || filepath.Base(dates[0]) != "hour=24" {
		t.Errorf("directories of the merged date: %v (%v), want hour=24 alone", dates, err)
	}
}

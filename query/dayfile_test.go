package query

import (
	"context"
	"fmt"
	"testing"
	"time"
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

package query

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// stageRecords stages n records of stream, one batch per hour over hours
// hours from 2020-01-01, through the real transform stage and lake.
func stageRecords(t testing.TB, lake *sink.Lake, stream string, n, hours int) {
	t.Helper()
	tcfg := arrowbatch.DefaultConfig()
	bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, stream, 0, lake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Timestamp: start.Add(time.Duration(i%hours) * time.Hour).UnixNano(), Body: fmt.Sprintf("%s %d", stream, i), SeverityText: "INFO"}
	}
	if err := bt.Consume(context.Background(), record.NewBatch(record.DefaultTenant, stream, recs)); err != nil {
		t.Fatal(err)
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestLogsViewUnionOfStreams: the logs view reads every stream's rows,
// those of a stream named like a reserved view too, with the columns of
// the stream views in their order; a change to one stream's files
// recreates only that stream's view, whose DDL names none of the other
// streams' files.
func TestLogsViewUnionOfStreams(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil)
	defer lake.Shutdown(context.Background())
	stageRecords(t, lake, "alpha", 30, 3)
	stageRecords(t, lake, "beta", 20, 2)
	stageRecords(t, lake, "logs", 5, 1)
	if err := lake.Flush(context.Background()); err != nil { // all published so far
		t.Fatal(err)
	}
	stageRecords(t, lake, "alpha", 7, 7) // and some rows staged only
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := queryInts(t, e, `SELECT count(*), count(*) FILTER (stream = 'alpha'), count(*) FILTER (stream = 'beta'),
		count(*) FILTER (stream = 'logs') FROM logs`)
	if want := []int64{62, 37, 20, 5}; !slices.Equal(got, want) {
		t.Errorf("logs: total, alpha, beta, logs = %v, want %v", got, want)
	}
	if n := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; n != 37 {
		t.Errorf("alpha: %d rows, want 37", n)
	}

	cols := func(view string) []string {
		var w rowsWriter
		if _, err := e.Run(context.Background(), "SELECT * FROM "+view+" LIMIT 0", Options{}, &w); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range w.cols {
			names = append(names, c.Name)
		}
		return names
	}
	if l, a := cols("logs"), cols("alpha"); !slices.Equal(l, a) || l[0] != "stream" || !slices.Equal(l[len(l)-2:], []string{"date", "hour"}) {
		t.Errorf("columns of logs %v, of alpha %v: want the same, stream first, date and hour last", l, a)
	}

	stmts := viewStmts(t, e, "alpha")
	// alpha's view, then its log_counts and log_messages parts.
	if len(stmts) != 3 || !strings.Contains(stmts[0], "VIEW memory.main.\"alpha\"") {
		t.Errorf("DDL for a change to alpha: %q, want alpha's views alone", stmts)
	}
	for _, s := range stmts {
		if !strings.Contains(s, "stream=alpha") || strings.Contains(s, "stream=beta") {
			t.Errorf("DDL for a change to alpha: %.200q names files of other streams or none of alpha's", s)
		}
	}
}

// TestViewsListNewestFirst: a stream view lists its files newest hour
// first, so that DuckDB, which starts reading them in that order, finds
// the newest rows of ORDER BY timestamp DESC LIMIT n in the first files.
func TestViewsListNewestFirst(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, func(c *sink.Config) { c.DayFilesAfter = 0 }) // a file per hour
	defer lake.Shutdown(context.Background())
	stageRecords(t, lake, "alpha", 30, 3)
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	stmts := viewStmts(t, e, "alpha")
	h0, h1, h2 := strings.Index(stmts[0], "hour=00"), strings.Index(stmts[0], "hour=01"), strings.Index(stmts[0], "hour=02")
	if h0 < 0 || h1 < 0 || h2 < 0 || !(h2 < h1 && h1 < h0) {
		t.Errorf("alpha's view lists hours at %d, %d, %d (00, 01, 02): want the newest first: %.400s", h0, h1, h2, stmts[0])
	}
}

// viewStmts returns the DDL that the default tenant's catalog would run
// for a change to stream, as its view loop builds it.
func viewStmts(t *testing.T, e *Engine, stream string) []string {
	t.Helper()
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	c.ddl.Lock()
	defer c.ddl.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	stmts := c.viewStmtsLocked([]string{stream})
	c.commitLoadLocked(false)
	return stmts
}

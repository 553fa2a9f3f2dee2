package query

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Timestamp: start.Add(time.Duration(i%hours) * time.Hour).UnixNano(), Body: fmt.Sprintf("%s %d", stream, i), SeverityText: "INFO"}
	}
	stageBatch(t, lake, stream, recs)
}

// TestLogsViewOneScan: the logs view reads every stream's rows, those of
// a stream named like a reserved view too, with the columns of the
// stream views in their order, through one scan of all their files
// (none has promoted columns); a
// change to one stream's files recreates that stream's view, whose DDL
// names none of the other streams' files, the hot view and logs, and no
// other stream's view; a new stream without files recreates its own view
// only.
func TestLogsViewOneScan(t *testing.T) {
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

	// alpha's view, the hot view and logs: log_counts and log_messages
	// name the hot view and stay as they are.
	stmts := viewStmts(t, e, "alpha")
	if len(stmts) != 3 || !strings.Contains(stmts[0], "VIEW weir.main.\"alpha\"") || !strings.HasPrefix(stmts[1], "CREATE OR REPLACE VIEW "+hotView+" ") ||
		!strings.HasPrefix(stmts[2], "CREATE OR REPLACE VIEW logs ") {
		t.Fatalf("DDL for a change to alpha: %q, want alpha's view, the hot view and logs", stmts)
	}
	stmts = slices.Delete(stmts, 1, 2)
	if !strings.Contains(stmts[0], "stream=alpha") || strings.Contains(stmts[0], "stream=beta") {
		t.Errorf("alpha's view %.200q names files of other streams or none of alpha's", stmts[0])
	}
	for _, want := range []string{"stream=alpha", "stream=beta", "stream=logs"} {
		if !strings.Contains(stmts[1], want) {
			t.Errorf("logs view names no file of %s: %.300q", want, stmts[1])
		}
	}
	if n := strings.Count(stmts[1], "read_parquet("); n != 1 || strings.Contains(stmts[1], "UNION") {
		t.Errorf("logs view reads its files with %d scans: %.300q", n, stmts[1])
	}

	// A stream with no files yet changes neither logs nor the hot view,
	// so making it recreates its own view only, however many streams and
	// files the tenant has; log_counts and log_messages still count every
	// row of logs.
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	c.ddl.Lock()
	c.mu.Lock()
	stmts = c.viewStmtsLocked([]string{"fresh"})
	c.commitLoadLocked(false)
	delete(c.streams, "fresh")
	c.mu.Unlock()
	c.ddl.Unlock()
	if len(stmts) != 1 || !strings.HasPrefix(stmts[0], `CREATE OR REPLACE VIEW weir.main."fresh" AS `+emptyView) {
		t.Errorf("DDL for a new stream: %q, want its own empty view only", stmts)
	}
	if err := e.EnsureStream(record.DefaultTenant, "fresh"); err != nil {
		t.Fatal(err)
	}
	got = queryInts(t, e, `SELECT (SELECT count(*) FROM logs), (SELECT sum(n)::BIGINT FROM log_counts), (SELECT sum(n)::BIGINT FROM log_messages),
		(SELECT count(*) FROM fresh), (SELECT count(DISTINCT "stream") FROM log_counts)`)
	if want := []int64{62, 62, 62, 0, 3}; !slices.Equal(got, want) {
		t.Errorf("logs, log_counts, log_messages, fresh, streams counted = %v, want %v", got, want)
	}
}

// TestViewsSortLargerThanMemory: a stream view and logs sort more rows
// than DuckDB's memory limit holds, spilling, when the rows that a union
// would have read first are few: a stream's hour file beside its day
// files, a small stream beside a large one. DuckDB decides to spill a
// sort only until the first part of a union is sorted, so a union of
// scans (of hour and day files, or of streams) failed with Out of
// Memory here. With promoted columns in the large stream, logs reads
// the streams by name, still in one scan.
func TestViewsSortLargerThanMemory(t *testing.T) {
	for _, promoted := range []bool{false, true} {
		t.Run(fmt.Sprintf("promoted=%v", promoted), func(t *testing.T) { testViewsSortLargerThanMemory(t, promoted) })
	}
}

func testViewsSortLargerThanMemory(t *testing.T, promoted bool) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Threads = 2
	cfg.MemoryLimit = "64MiB"
	e, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	lake := openLake(t, e, dir, func(c *sink.Config) { c.RowGroupRows = 8192 })
	defer lake.Shutdown(context.Background())

	// big: 80 MiB of bodies in day files (2020), and one row in an hour
	// file of today; _small: a few rows, first by name.
	const rows, bodyBytes = 400 << 10, 200
	start := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	big := make([]record.Record, rows)
	for i := range big {
		body := fmt.Sprintf("%08d %x", i, i*2654435761)
		big[i] = record.Record{
			Timestamp: start.Add(time.Duration(i*7919%rows) * time.Second).UnixNano(),
			Body:      body + strings.Repeat(string(rune('a'+i%26)), bodyBytes-len(body)),
		}
		if promoted {
			big[i].Attributes = []record.KV{{Key: "k", Value: fmt.Sprint(i % 5)}}
		}
	}
	big = append(big, record.Record{Timestamp: time.Now().UnixNano(), Body: "today"})
	if promoted {
		// The Batcher promotes k after its first batch.
		tcfg := arrowbatch.DefaultConfig()
		tcfg.MaxColumns = 4
		bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, "big", 0, lake, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range [][]record.Record{big[:1000], big[1000:]} {
			if err := bt.Consume(context.Background(), record.NewBatch(record.DefaultTenant, "big", part)); err != nil {
				t.Fatal(err)
			}
		}
		if err := bt.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	} else {
		stageBatch(t, lake, "big", big)
	}
	stageRecords(t, lake, "_small", 3, 1)
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if promoted {
		if n := queryInts(t, e, "SELECT count(attr_k) FROM logs")[0]; n != rows-1000 {
			t.Fatalf("%d rows with attr_k, want %d", n, rows-1000)
		}
		stmts := viewStmts(t, e, "big")
		if l := stmts[len(stmts)-1]; !strings.HasPrefix(l, "CREATE OR REPLACE VIEW logs ") || strings.Count(l, "read_parquet(") != 1 || strings.Contains(l, "UNION") {
			t.Errorf("logs view %.300q: want one scan", l)
		}
	}
	for _, view := range []string{"big", "logs"} {
		// Over the row limit: DuckDB sorts them all (a top-n of this
		// many rows is not chosen); the answer is cut to MaxRows.
		var w rowsWriter
		q := "SELECT \"timestamp\", body FROM " + view + " ORDER BY \"timestamp\" DESC"
		if _, err := e.Run(context.Background(), q, Options{MaxRows: 20000}, &w); err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		if len(w.rows) != 20000 {
			t.Fatalf("%s: %d rows, want 20000", q, len(w.rows))
		}
		if w.rows[0][1] != "today" {
			t.Errorf("%s: first row %v, want today's", q, w.rows[0])
		}
		for i := 1; i < len(w.rows); i++ {
			if w.rows[i-1][0].(time.Time).Before(w.rows[i][0].(time.Time)) {
				t.Fatalf("%s: row %d at %v before row %d at %v", q, i-1, w.rows[i-1][0], i, w.rows[i][0])
			}
		}
	}
}

// stageBatch stages recs as one batch of stream through the real
// transform stage and lake.
func stageBatch(t testing.TB, lake *sink.Lake, stream string, recs []record.Record) {
	t.Helper()
	bt, err := arrowbatch.NewBatcher(arrowbatch.DefaultConfig(), record.DefaultTenant, stream, 0, lake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bt.Consume(context.Background(), record.NewBatch(record.DefaultTenant, stream, recs)); err != nil {
		t.Fatal(err)
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
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
	// As if no change had been committed: views whose text is unchanged
	// are listed too.
	defs := c.viewDefs
	c.viewDefs = map[string]string{}
	stmts := c.viewStmtsLocked([]string{stream})
	c.commitLoadLocked(false)
	c.viewDefs = defs
	return stmts
}

// TestStagedSegmentsByGlob: views read an unpublished file's segments by
// a glob of their names, so a segment staged into a file the views
// already list is visible at once, with no view change and without its
// path in any DDL. A file's first segment with promoted attribute
// columns waits for the view change that reads the stream by name: a
// query between the two reads the segments it can read correctly.
func TestStagedSegmentsByGlob(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, lake, c := openTenant(t, dir)
	defer lake.Shutdown(ctx)
	hour := time.Date(2020, 1, 1, 5, 0, 0, 0, time.UTC)
	next := 0
	// stage stages n records of one hour through a new Batcher, in
	// segments of 250 rows; with attrs every record has an attribute
	// the Batcher promotes to a column once it has seen enough of them.
	stage := func(n int, attrs bool) {
		t.Helper()
		tcfg := arrowbatch.DefaultConfig()
		tcfg.MaxRows = 250
		tcfg.MaxColumns = 4
		bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, "alpha", 0, lake, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs := make([]record.Record, n)
		for i := range recs {
			recs[i] = record.Record{Timestamp: hour.Add(time.Duration(next) * time.Millisecond).UnixNano(), Body: fmt.Sprint(next)}
			if attrs {
				recs[i].Attributes = []record.KV{{Key: "k", Value: fmt.Sprint(next % 7)}}
			}
			next++
		}
		// In batches of 1000: the Batcher decides on promotion as a
		// batch comes, once it has seen 1000 records.
		for len(recs) > 0 {
			k := min(len(recs), 1000)
			if err := bt.Consume(ctx, record.NewBatch(record.DefaultTenant, "alpha", recs[:k])); err != nil {
				t.Fatal(err)
			}
			recs = recs[k:]
		}
		if err := bt.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := lake.WaitStaged(ctx); err != nil {
			t.Fatal(err)
		}
	}
	changes := func() uint64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.changes
	}
	segments := func(kind string) int {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(dir, "staging", "tenant=default", "stream=alpha", "*", "*", "*-"+kind+"*.parquet"))
		if err != nil {
			t.Fatal(err)
		}
		return len(m)
	}

	stage(100, false)
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := changes()
	stage(400, false) // two more segments of the same file
	if n := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; n != 500 {
		t.Errorf("alpha: %d rows at once after staging 500, want 500", n)
	}
	if got := changes(); got != before {
		t.Errorf("staging into a listed file recorded %d view changes, want none", got-before)
	}
	if segments(narrowKind) != 3 {
		t.Fatalf("%d narrow staging segments, want 3", segments(narrowKind))
	}
	for _, s := range viewStmts(t, e, "alpha") {
		if !strings.Contains(s, "-"+narrowKind+"*.parquet") || strings.Contains(s, "-"+narrowKind+"0") {
			t.Errorf("DDL for alpha: %.300q: want the file's glob, no segment", s)
		}
	}

	// With the view loop held, the promoted segments are staged but not
	// listed: queries read the stream by position and see only the
	// narrow segments, without error.
	c.ddl.Lock()
	stage(2000, true)
	wide := segments(wideKind)
	if wide == 0 {
		c.ddl.Unlock()
		t.Fatal("no staging segment with promoted columns; the test needs some")
	}
	narrow := int64(500 + 2000 - 250*wide)
	if n := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; n != narrow {
		t.Errorf("alpha before the view change: %d rows, want the %d of narrow segments", n, narrow)
	}
	c.ddl.Unlock()
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got := queryInts(t, e, `SELECT count(*), count(attr_k), count(*) FILTER (attr_k = CAST(attributes['k'] AS BIGINT)) FROM alpha`)
	if want := []int64{2500, int64(250 * wide), int64(250 * wide)}; !slices.Equal(got, want) {
		t.Errorf("alpha after the view change: rows, attr_k, attr_k matching = %v, want %v", got, want)
	}

	publishAll(t, lake, e)
	if n := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; n != 2500 {
		t.Errorf("alpha after publishing: %d rows, want 2500", n)
	}
	if n := segments(narrowKind) + segments(wideKind); n != 0 {
		t.Errorf("%d staging segments left after publishing", n)
	}
}

// TestStagedSegmentsWithoutGlobs: a staging root whose path DuckDB would
// read as a glob makes views list every segment, each staged with a view
// change.
func TestStagedSegmentsWithoutGlobs(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data[1]")
	e, lake, c := openTenant(t, dir)
	defer lake.Shutdown(ctx)
	if c.globs {
		t.Fatalf("staging root %s: globs on, want off", c.staging)
	}
	stageRecords(t, lake, "alpha", 30, 1)
	stageRecords(t, lake, "alpha", 30, 1)
	if err := lake.WaitStaged(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; n != 60 {
		t.Errorf("alpha: %d rows, want 60", n)
	}
	for _, s := range viewStmts(t, e, "alpha")[:1] {
		if strings.Contains(s, "*.parquet") || strings.Count(s, "-"+narrowKind+"0") != 2 {
			t.Errorf("DDL for alpha: %.400q: want both segments by name, no glob", s)
		}
	}
	publishAll(t, lake, e)
	if n := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; n != 60 {
		t.Errorf("alpha after publishing: %d rows, want 60", n)
	}
}

// publishAll publishes every file lake holds and waits for e's views to
// show them.
func publishAll(t *testing.T, lake *sink.Lake, e *Engine) {
	t.Helper()
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// openTenant opens an engine and a lake in dir (openEngine, openLake)
// and returns them with the default tenant's catalog. The caller shuts
// the lake down.
func openTenant(t *testing.T, dir string) (*Engine, *sink.Lake, *catalog) {
	t.Helper()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil)
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		lake.Shutdown(context.Background())
		t.Fatal(err)
	}
	return e, lake, c
}

// TestEnsureStreamsAtOnce asks for the views of several new streams
// while a view change holds the DDL: the first call to follow it makes
// every one of them, so each view exists when any call returns; every
// call returns with its view made, and asking again is harmless.
func TestEnsureStreamsAtOnce(t *testing.T) {
	e := openEngine(t, t.TempDir())
	c, err := e.catalog("")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"s1", "s2", "s3", "s4", "s5"}
	c.ddl.Lock() // a view change in progress
	done := make(chan string, len(names))
	errs := make(chan error, len(names))
	for _, s := range names {
		go func() {
			errs <- e.EnsureStream("", s)
			done <- s
		}()
	}
	for {
		c.mu.Lock()
		n := len(c.wanted)
		c.mu.Unlock()
		if n == len(names) {
			break
		}
		runtime.Gosched() // the callers register, then wait for ddl
	}
	c.ddl.Unlock()
	first := <-done
	// Checked with ddl held again, so that no later call adds a view
	// meanwhile: the first made them all.
	c.ddl.Lock()
	for _, s := range names {
		if got := queryInts(t, e, "SELECT count(*) FROM "+s); got[0] != 0 {
			t.Errorf("%s: %d rows", s, got[0])
		}
	}
	c.ddl.Unlock()
	for range names[1:] {
		<-done
	}
	for range names {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if err := e.EnsureStream("", first); err != nil {
		t.Error(err)
	}
	if got := queryInts(t, e, "SELECT count(*) FROM logs"); got[0] != 0 {
		t.Errorf("logs: %d rows", got[0])
	}
}

// TestAddFilesUnreadable: a published file whose footer DuckDB refuses
// fails the view change; AddFiles names it in an UnreadableFilesError,
// adds none of the tenant's new files and leaves the views as they were.
// Called again without it, AddFiles adds the others; files it was given
// before are skipped.
func TestAddFilesUnreadable(t *testing.T) {
	dir := t.TempDir()
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "lake")
	scfg.MaxFileAge = time.Hour
	scfg.DayFilesAfter = 0
	lake, err := sink.New(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Shutdown(context.Background())
	start := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	for i := range 3 {
		rollupRecords(t, lake, "app", start.Add(time.Duration(i)*time.Hour), 100, i)
	}
	if err := lake.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := lake.Files()
	if len(files) != 3 {
		t.Fatalf("%d files, want 3", len(files))
	}
	// In the newest hour, after the file there: the first file a view
	// lists, whose footer DuckDB reads when the view is made.
	bad := files[2]
	bad.ID = "20991231T235959.000000000Z-0badf00d"
	bad.Path = filepath.Join(filepath.Dir(bad.Path), bad.ID+".parquet")
	if err := os.WriteFile(bad.Path, []byte("PAR1 no footer here PAR1"), 0o644); err != nil {
		t.Fatal(err)
	}

	e := openEngine(t, dir)
	err = e.AddFiles(append(slices.Clone(files), bad))
	var ue *UnreadableFilesError
	if !errors.As(err, &ue) || len(ue.Files) != 1 || ue.Files[0].Path != bad.Path || len(ue.Errs) != 1 || ue.Errs[0] == nil {
		t.Fatalf("AddFiles with a file DuckDB cannot read: %v, want an UnreadableFilesError naming it alone", err)
	}
	if n := queryInts(t, e, "SELECT count(*) FROM logs")[0]; n != 0 {
		t.Errorf("logs has %d rows after the failed AddFiles, want none of its files", n)
	}
	for range 2 {
		if err := e.AddFiles(files); err != nil {
			t.Fatal(err)
		}
		if got := queryInts(t, e, "SELECT (SELECT count(*) FROM logs), (SELECT count(*) FROM app)"); got[0] != 300 || got[1] != 300 {
			t.Errorf("logs and app have %v rows, want 300 each", got)
		}
	}
}

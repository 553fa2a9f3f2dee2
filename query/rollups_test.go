package query

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// rollupRecords stages n records of stream at start, one a second:
// three services, severities 9/13/17, a pattern id on two rows of three,
// and 40 distinct bodies (fewer than a rollup keeps per file).
func rollupRecords(t testing.TB, lake *sink.Lake, stream string, start time.Time, n, seed int) {
	t.Helper()
	bt, err := arrowbatch.NewBatcher(arrowbatch.DefaultConfig(), record.DefaultTenant, stream, 0, lake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]record.Record, n)
	for i := range recs {
		j := i + seed
		r := record.Record{
			Timestamp:      start.Add(time.Duration(i) * time.Second).UnixNano(),
			SeverityNumber: []int32{9, 9, 9, 13, 17}[j%5],
			SeverityText:   []string{"INFO", "INFO", "INFO", "WARN", "ERROR"}[j%5],
			Body:           fmt.Sprintf("request %d done", (j*7)%40),
			Resource:       []record.KV{{Key: "service.name", Value: []string{"api", "db", "web"}[j%3]}},
		}
		if j%3 != 0 {
			r.Attributes = []record.KV{{Key: "pattern.id", Value: fmt.Sprintf("%016x", j%4)}}
		}
		recs[i] = r
	}
	if err := bt.Consume(context.Background(), record.NewBatch(record.DefaultTenant, stream, recs)); err != nil {
		t.Fatal(err)
	}
	if err := bt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// queryRows runs sql and returns its rows, each formatted, sorted.
func queryRows(t *testing.T, e *Engine, sql string) []string {
	t.Helper()
	var w rowsWriter
	if _, err := e.Run(context.Background(), sql, Options{}, &w); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out := make([]string, len(w.rows))
	for i, r := range w.rows {
		out[i] = fmt.Sprintf("%v", r)
	}
	slices.Sort(out)
	return out
}

// rollupPairs are queries of the rollup views and the scans of the logs
// view they must equal.
var rollupPairs = []struct{ name, rollup, scan string }{
	{"histogram",
		`SELECT stream, epoch_ms("minute") AS t, severity_text, sum(n)::BIGINT FROM log_counts GROUP BY ALL`,
		`SELECT stream, (epoch_ms("timestamp") // 60000) * 60000 AS t, severity_text, count(*) FROM logs GROUP BY ALL`},
	{"services",
		`SELECT stream, service_name, severity_number, sum(n)::BIGINT FROM log_counts GROUP BY ALL`,
		`SELECT stream, service_name, severity_number, count(*) FROM logs GROUP BY ALL`},
	{"patterns",
		`SELECT stream, pattern_id, sum(n)::BIGINT FROM log_counts GROUP BY ALL`,
		`SELECT stream, attributes['pattern.id'], count(*) FROM logs GROUP BY ALL`},
	{"one stream's minutes",
		`SELECT "minute", service_name, sum(n)::BIGINT FROM log_counts WHERE stream = 'app' GROUP BY ALL`,
		`SELECT to_timestamp((epoch_ms("timestamp") // 60000) * 60), service_name, count(*) FROM app GROUP BY ALL`},
	{"dates",
		`SELECT stream, "date", sum(n)::BIGINT FROM log_counts GROUP BY ALL`,
		`SELECT stream, "date", count(*) FROM logs GROUP BY ALL`},
	{"one date's minutes",
		`SELECT stream, "minute", sum(n)::BIGINT FROM log_counts WHERE "date" = (SELECT max("date") FROM logs) GROUP BY ALL`,
		`SELECT stream, to_timestamp((epoch_ms("timestamp") // 60000) * 60), count(*) FROM logs WHERE "date" = (SELECT max("date") FROM logs) GROUP BY ALL`},
	{"bodies",
		`SELECT stream, body, sum(n)::BIGINT FROM log_messages GROUP BY ALL`,
		`SELECT stream, body, count(*) FROM logs GROUP BY ALL`},
}

// checkRollups fails unless every rollup query answers as its scan, and
// returns the total count.
func checkRollups(t *testing.T, e *Engine, when string) int64 {
	t.Helper()
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range rollupPairs {
		got, want := queryRows(t, e, p.rollup), queryRows(t, e, p.scan)
		if !slices.Equal(got, want) {
			t.Errorf("%s, %s: rollups answer %d rows, the scan %d:\n%.600q\nwant\n%.600q", when, p.name, len(got), len(want), got, want)
		}
	}
	n := queryInts(t, e, "SELECT count(*) FROM logs")[0]
	if got := queryInts(t, e, "SELECT sum(n)::BIGINT FROM log_counts")[0]; got != n {
		t.Errorf("%s: log_counts sums to %d, logs has %d rows", when, got, n)
	}
	return n
}

// rolledFiles returns the lake's files with a rollup and their count.
func rolledFiles(lake *sink.Lake) (rolled []sink.FileInfo, all int) {
	for _, f := range lake.Files() {
		if f.Rollup {
			rolled = append(rolled, f)
		}
	}
	return rolled, len(lake.Files())
}

// openRollupLake opens the lake in dir/lake for e, with its files added:
// files of an hour each, compacted only by Compact, retention of 30 days
// applied only by Retain.
func openRollupLake(t *testing.T, e *Engine, dir string) *sink.Lake {
	t.Helper()
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "lake")
	scfg.MaxFileAge = time.Hour
	scfg.CompactAge = 0    // off: Compact compacts every file
	scfg.DayFilesAfter = 0 // a file per hour: the tests count the files of their hours
	scfg.Retention.Default = 30 * 24 * time.Hour
	scfg.Retention.Interval = time.Hour // Retain runs it
	lake, err := sink.New(scfg, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lake.Shutdown(context.Background()) })
	if err := e.AddFiles(lake.Files()); err != nil {
		t.Fatal(err)
	}
	return lake
}

// TestRollupViewsEqualScans: log_counts and log_messages answer as the
// same counts over the logs view do, over staged rows, published files,
// compacted files with rollups and all of them together; after retention
// removed compacted files, after a deletion rewrote one (its rollup
// rewritten with it) and after a restart that reads rollups from the
// files' footers.
func TestRollupViewsEqualScans(t *testing.T) {
	dir := t.TempDir()
	open := func() (*Engine, *sink.Lake) {
		e := openEngine(t, dir)
		return e, openRollupLake(t, e, dir)
	}
	e, lake := open()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Hour)
	old := now.Add(-60 * 24 * time.Hour) // past retention
	recent := now.Add(-48 * time.Hour)

	// Files that compaction will roll up: two old hours, two recent ones,
	// in two streams.
	rollupRecords(t, lake, "app", old, 5000, 0)
	rollupRecords(t, lake, "app", recent, 7000, 1)
	rollupRecords(t, lake, "app", recent.Add(90*time.Minute), 3000, 2)
	rollupRecords(t, lake, "db", recent, 4000, 3)
	rollupRecords(t, lake, "db", old.Add(time.Hour), 2000, 4)
	if err := lake.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkRollups(t, e, "published, not compacted")
	if _, err := lake.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	rolled, all := rolledFiles(lake)
	if len(rolled) != all || all == 0 {
		t.Fatalf("after compaction %d of %d files have a rollup, want all", len(rolled), all)
	}
	// Hot rows beside the rolled-up ones: published and staged only,
	// in hours that rollups cover too.
	rollupRecords(t, lake, "app", recent.Add(10*time.Minute), 500, 5)
	if err := lake.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rollupRecords(t, lake, "app", recent.Add(20*time.Minute), 300, 6)
	rollupRecords(t, lake, "web", now, 200, 7)
	total := checkRollups(t, e, "compacted, published and staged")
	if total != 5000+7000+3000+4000+2000+500+300+200 {
		t.Fatalf("logs has %d rows", total)
	}
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	loaded := len(c.loaded)
	hot := c.viewDefs[hotView]
	c.mu.Unlock()
	if loaded != len(rolled) {
		t.Errorf("the rollup tables hold %d files, want the %d with a rollup", loaded, len(rolled))
	}
	if !strings.Contains(hot, "read_parquet") || !strings.Contains(hot, "stream=web") || !strings.Contains(hot, "stream=app") {
		t.Errorf("the hot view does not read app's and web's hot files: %.300s", hot)
	}
	for _, f := range rolled {
		if strings.Contains(hot, filepath.Base(f.Path)) {
			t.Errorf("the hot view scans the rolled-up file %s", f.Path)
		}
	}
	// New files, staged and published, change the stream views and the
	// hot view; log_counts and log_messages, which name the hot view and
	// the tables, are never recreated, and still count every row.
	rollupRecords(t, lake, "app", now.Add(-5*time.Hour), 100, 8)
	rollupRecords(t, lake, "web", now.Add(-5*time.Hour), 100, 9)
	if err := lake.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rollupRecords(t, lake, "web", now.Add(-6*time.Hour), 100, 10)
	total = checkRollups(t, e, "after new hot files")
	for _, s := range []string{"app", "web"} {
		for _, stmt := range viewStmts(t, e, s) {
			if strings.Contains(stmt, countsView) || strings.Contains(stmt, messagesView) {
				t.Errorf("%s's view change recreates a rollup view: %.200s", s, stmt)
			}
		}
	}

	removed, err := lake.Retain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Fatalf("retention removed %d files, want the 3 old ones", len(removed))
	}
	if got := checkRollups(t, e, "after retention"); got != total-7000 {
		t.Fatalf("after retention logs has %d rows, want %d", got, total-7000)
	}

	// Delete every third row of the recent compacted hour of db.
	var dbFile sink.FileInfo
	for _, f := range lake.Files() {
		if f.Partition.Stream == "db" && f.Rollup {
			dbFile = f
		}
	}
	var set sink.OffsetSet
	for o := dbFile.MinOffset; o <= dbFile.MaxOffset; o += 3 {
		set = append(set, sink.OffsetRange{From: o, To: o + 1})
	}
	res, err := lake.DeleteRows(ctx, record.DefaultTenant, "db", dbFile.Partition.Hour, map[int32]sink.OffsetSet{dbFile.Partition.Part: set})
	if err != nil || res.Rewritten != 1 || res.Rows == 0 {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	for _, f := range lake.Files() {
		if f.Rollup != f.Compacted {
			t.Errorf("after deletion %s: compacted %v, rollup %v: want a rollup in every compacted file only", f.ID, f.Compacted, f.Rollup)
		}
	}
	afterDelete := checkRollups(t, e, "after deletion")
	if afterDelete != total-7000-res.Rows {
		t.Fatalf("after deletion logs has %d rows, want %d", afterDelete, total-7000-res.Rows)
	}

	// A restart reads rollups from the footers.
	if err := lake.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	e, lake = open()
	if got := checkRollups(t, e, "after a restart"); got != afterDelete {
		t.Fatalf("after a restart logs has %d rows, want %d", got, afterDelete)
	}
	if rolled, _ := rolledFiles(lake); len(rolled) == 0 {
		t.Error("after a restart no file has a rollup")
	}
}

// TestRollupLoadInSteps: a start that finds more rollup counts than one
// view change loads (the catalog's budget, one count here) loads them
// in the view loop over several changes, a file each, while log_counts
// and log_messages count every row of logs; once done, the tables hold
// every file's rollup, compressed.
func TestRollupLoadInSteps(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	e := openEngine(t, dir)
	lake := openRollupLake(t, e, dir)
	start := time.Now().UTC().Truncate(time.Hour).Add(-72 * time.Hour)
	for i, s := range []string{"app", "app", "app", "db", "db"} {
		rollupRecords(t, lake, s, start.Add(time.Duration(i)*time.Hour), 1200, i)
	}
	if err := lake.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lake.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if rolled, all := rolledFiles(lake); len(rolled) != 5 || all != 5 {
		t.Fatalf("after compaction %d of %d files have a rollup, want 5 of 5", len(rolled), all)
	}
	total := checkRollups(t, e, "before the restart")
	if err := lake.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	e = openEngine(t, dir)
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	c.ddl.Lock()
	c.mu.Lock()
	c.loadBudget = 1
	before := c.changes
	c.mu.Unlock()
	c.ddl.Unlock()
	openRollupLake(t, e, dir) // adds the files; the view loop loads their rollups

	// Checked while the view loop loads the rest, and once more after.
	checks := 0
	synced := make(chan error, 1)
	go func() { synced <- e.Sync(ctx) }()
	for done := false; !done; {
		select {
		case err := <-synced:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
		got := queryInts(t, e, "SELECT (SELECT count(*) FROM logs), (SELECT sum(n)::BIGINT FROM log_counts), (SELECT sum(n)::BIGINT FROM log_messages)")
		if !slices.Equal(got, []int64{total, total, total}) {
			t.Fatalf("check %d while loading: logs, log_counts, log_messages count %v, want %d each", checks, got, total)
		}
		checks++
	}
	c.mu.Lock()
	loaded, changes := len(c.loaded), c.changes-before
	c.mu.Unlock()
	if loaded != 5 {
		t.Errorf("after Sync the tables hold the rollups of %d files, want 5", loaded)
	}
	if changes < 4 {
		t.Errorf("the loads took %d more changes, want at least 4 (one file each)", changes)
	}
	checkRollups(t, e, "after the loads")

	// Compressed: DuckDB stores no segment of the tables uncompressed.
	// The last change's checkpoint may have failed while the checks
	// above ran (the view loop tries again every compressRetry); with no
	// query left running, the next attempt succeeds.
	c.ddl.Lock()
	compressed := c.compress(ctx, c.conn, false)
	c.ddl.Unlock()
	if !compressed {
		t.Fatal("a checkpoint with no query running failed")
	}
	for _, table := range []string{countsTable, messagesTable} {
		var segments, plain int64
		c.ddl.Lock()
		err := c.conn.QueryRowContext(ctx, "SELECT count(*), count(*) FILTER (compression = 'Uncompressed') FROM pragma_storage_info("+quoteString(table)+")").Scan(&segments, &plain)
		c.ddl.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if segments == 0 || plain > 0 {
			t.Errorf("%s: %d of %d segments uncompressed, want none of some", table, plain, segments)
		}
	}
}

// TestRollupLoadFailure: a compacted file whose rollup does not parse
// holds back neither the views nor the other files' rollups: its rows
// are counted from the file, the others' from the tables, new rows
// still become visible, and the files are added (as at a start) without
// an error.
func TestRollupLoadFailure(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	e := openEngine(t, dir)
	lake := openRollupLake(t, e, dir)
	start := time.Now().UTC().Truncate(time.Hour).Add(-48 * time.Hour)
	rollupRecords(t, lake, "app", start, 1200, 0)
	rollupRecords(t, lake, "app", start.Add(time.Hour), 600, 1)
	if err := lake.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lake.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	rolled, _ := rolledFiles(lake)
	if len(rolled) != 2 {
		t.Fatalf("%d files with a rollup, want 2", len(rolled))
	}

	// A copy of the second file's rows whose footer's rollup is not
	// JSON, written by DuckDB beside it.
	good := rolled[1]
	bad := good
	bad.ID = "20991231T235959.000000000Z-0badf00d"
	bad.Path = filepath.Join(filepath.Dir(good.Path), bad.ID+".parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, fmt.Sprintf("COPY (FROM read_parquet(%s)) TO %s (FORMAT parquet, KV_METADATA {'weir.rollup': '{\"v\":2,\"n\":[1,'})",
		quoteString(good.Path), quoteString(bad.Path))); err != nil {
		t.Fatal(err)
	}
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.rollupRetry = time.Hour // tried again below, by hand
	c.mu.Unlock()
	if err := e.AddFiles([]sink.FileInfo{bad}); err != nil {
		t.Fatalf("adding a file whose rollup does not parse: %v", err)
	}
	total := checkRollups(t, e, "with a rollup that does not parse")
	if want := int64(1200 + 600 + 600); total != want {
		t.Fatalf("logs has %d rows, want %d", total, want)
	}
	c.mu.Lock()
	_, badLoaded := c.loaded[bad.Path]
	loaded, cost := len(c.loaded), c.rolled[bad.Path]
	hot := c.viewDefs[hotView]
	c.mu.Unlock()
	if badLoaded || loaded != 2 || cost != 0 || !strings.Contains(hot, bad.ID) {
		t.Errorf("bad file loaded %v, %d files loaded, its cost %d, in the hot view %v; want it counted from its rows, the other 2 loaded",
			badLoaded, loaded, cost, strings.Contains(hot, bad.ID))
	}

	// New rows still become visible, compacted ones with their rollup.
	rollupRecords(t, lake, "app", start.Add(2*time.Hour), 300, 2)
	if err := lake.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lake.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if got := checkRollups(t, e, "after new rows"); got != total+300 {
		t.Fatalf("after new rows logs has %d rows, want %d", got, total+300)
	}
	c.mu.Lock()
	loaded = len(c.loaded)
	c.mu.Unlock()
	if loaded != 3 {
		t.Errorf("%d files loaded, want 3", loaded)
	}

	// The failure passes (here: the file is mended): once due, the retry
	// loads the file's rollup, without a restart.
	raw, err := os.ReadFile(good.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad.Path+".tmp", raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bad.Path+".tmp", bad.Path); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.retryRollupsLocked(c.gaveUp[bad.Path].at)
	c.mu.Unlock()
	if got := checkRollups(t, e, "after the retry"); got != total+300 {
		t.Fatalf("after the retry logs has %d rows, want %d", got, total+300)
	}
	c.mu.Lock()
	_, badLoaded = c.loaded[bad.Path]
	gaveUp := len(c.gaveUp)
	c.mu.Unlock()
	if !badLoaded || gaveUp != 0 {
		t.Errorf("after the retry: bad file loaded %v, %d given up; want it loaded, none", badLoaded, gaveUp)
	}
}

// TestRollupLoadOrder: one change loads the newest rollups of the
// changed streams first, up to the budget and at least one file, and
// leaves the others' streams to be changed again.
func TestRollupLoadOrder(t *testing.T) {
	c := &catalog{
		files: map[string][]string{
			"app": {"/l/stream=app/date=2026-01-01/hour=01/a.parquet", "/l/stream=app/date=2026-01-03/hour=01/b.parquet", "/l/stream=app/date=2026-01-02/hour=24/c.parquet", "/l/stream=app/date=2026-01-04/hour=02/hot.parquet"},
			"db":  {"/l/stream=db/date=2026-01-05/hour=01/d.parquet"},
		},
		rolled: map[string]int64{
			"/l/stream=app/date=2026-01-01/hour=01/a.parquet": 10,
			"/l/stream=app/date=2026-01-03/hour=01/b.parquet": 30,
			"/l/stream=app/date=2026-01-02/hour=24/c.parquet": 20,
			"/l/stream=db/date=2026-01-05/hour=01/d.parquet":  5,
		},
		loaded:   map[string]loadedRollup{"/l/stream=app/date=2025-12-01/hour=01/gone.parquet": {stream: "app", id: 7}},
		suspect:  map[string]int{},
		gaveUp:   map[string]gaveUpRollup{},
		log:      slog.New(slog.DiscardHandler),
		staged:   map[string]*stagedFile{},
		dirty:    map[string]bool{},
		viewDefs: map[string]string{},
		kick:     make(chan struct{}, 1),
	}
	step := func(budget int64, streams ...string) (add []string, drop []string, later []string) {
		c.loadBudget = budget
		c.rollupLoadStmtsLocked(streams)
		for p := range c.load.add {
			add = append(add, filepath.Base(p))
		}
		for p := range c.load.drop {
			drop = append(drop, filepath.Base(p))
		}
		slices.Sort(add)
		slices.Sort(drop)
		later = c.load.later
		return
	}
	add, drop, later := step(25, "app", "db")
	if !slices.Equal(add, []string{"b.parquet"}) || !slices.Equal(drop, []string{"gone.parquet"}) || !slices.Equal(later, []string{"app", "db"}) {
		t.Errorf("budget 25: add %v, drop %v, later %v; want b (newest, over the budget but first), gone, and app and db later", add, drop, later)
	}
	c.commitLoadLocked(true)
	if len(c.dirty) != 0 || !slices.Equal(c.later, []string{"app", "db"}) || !c.loadingLocked() {
		t.Errorf("after the change: dirty %v, later %v, loading %v; want app and db left for later", c.dirty, c.later, c.loadingLocked())
	}
	c.resumeLoadsLocked() // once compressed
	if !c.dirty["app"] || !c.dirty["db"] || len(c.later) != 0 || !c.loadingLocked() {
		t.Errorf("resumed: dirty %v, later %v, loading %v; want app and db changed again, and loading", c.dirty, c.later, c.loadingLocked())
	}
	c.applied = c.changes

	// While a checkpoint is owed, a change loads nothing.
	c.compressDue.Store(true)
	if add, _, later = step(25, "app", "db"); len(add) != 0 || !slices.Equal(later, []string{"app", "db"}) {
		t.Errorf("checkpoint owed: add %v, later %v; want nothing, app and db later", add, later)
	}
	c.commitLoadLocked(false)
	c.compressDue.Store(false)

	add, drop, later = step(25, "app", "db")
	if !slices.Equal(add, []string{"c.parquet", "d.parquet"}) || len(drop) != 0 || !slices.Equal(later, []string{"app"}) {
		t.Errorf("second change: add %v, drop %v, later %v; want c and d (20 and 5 of 25; a's 10 would exceed it), app later", add, drop, later)
	}
	c.commitLoadLocked(true)
	c.resumeLoadsLocked()
	c.applied = c.changes
	add, _, later = step(100, "app")
	if !slices.Equal(add, []string{"a.parquet"}) || len(later) != 0 {
		t.Errorf("third change: add %v, later %v; want a, nothing later", add, later)
	}
	c.commitLoadLocked(true)
	c.resumeLoadsLocked()
	if c.loadingLocked() || len(c.loaded) != 4 {
		t.Errorf("after the last change: loading %v, %d files loaded; want not loading, 4", c.loadingLocked(), len(c.loaded))
	}
	ids := map[int64]bool{}
	for p, l := range c.loaded {
		if l.id <= 0 || ids[l.id] || l.stream != strings.Split(strings.Split(p, "stream=")[1], "/")[0] {
			t.Errorf("%s loaded as %+v: want a new id and its stream", p, l)
		}
		ids[l.id] = true
	}

	// A load that fails makes its files suspects, loaded with at most
	// half as many files; one that fails alone is counted from its rows
	// until it is tried again, alone.
	c.rollupRetry = time.Minute
	db := func(name string, hour int) string {
		return fmt.Sprintf("/l/stream=db/date=2026-01-06/hour=%02d/%s.parquet", hour, name)
	}
	for i, name := range []string{"e", "f", "g", "h", "i"} {
		c.files["db"] = append(c.files["db"], db(name, i+1))
		c.rolled[db(name, i+1)] = 5
	}
	if add, _, _ = step(100, "db"); !slices.Equal(add, []string{"e.parquet", "f.parquet", "g.parquet", "h.parquet", "i.parquet"}) {
		t.Fatalf("new files: add %v, want e to i", add)
	}
	c.commitLoadLocked(false)
	if len(c.suspect) != 5 || c.suspect[db("e", 1)] != 3 {
		t.Fatalf("after a failed load of five files: suspects %v, want five with room for 3", c.suspect)
	}
	add, _, later = step(100, "db")
	if !slices.Equal(add, []string{"g.parquet", "h.parquet", "i.parquet"}) || !slices.Equal(later, []string{"db"}) {
		t.Errorf("suspects: add %v, later %v; want the newest three, db later", add, later)
	}
	c.commitLoadLocked(false) // g, h or i fails
	add, _, _ = step(100, "db")
	if !slices.Equal(add, []string{"h.parquet", "i.parquet"}) {
		t.Errorf("after three failed: add %v, want the newest two", add)
	}
	c.commitLoadLocked(true)
	add, _, _ = step(100, "db")
	if !slices.Equal(add, []string{"f.parquet", "g.parquet"}) {
		t.Errorf("after two loaded: add %v, want f and g (g's room is 2)", add)
	}
	c.commitLoadLocked(false) // f or g fails
	if add, _, _ = step(100, "db"); !slices.Equal(add, []string{"g.parquet"}) {
		t.Errorf("after f and g failed: add %v, want g alone", add)
	}
	before := time.Now()
	c.commitLoadLocked(false) // g fails alone
	gu, ok := c.gaveUp[db("g", 3)]
	if _, sus := c.suspect[db("g", 3)]; sus || !ok || c.rolled[db("g", 3)] != 0 || gu.cost != 5 || gu.wait != time.Minute || gu.at.Before(before.Add(time.Minute)) {
		t.Errorf("g failed alone: suspect %v, given up %+v, cost %d; want given up for a minute, counted from its rows", c.suspect, gu, c.rolled[db("g", 3)])
	}
	if at, ok := c.nextRollupRetryLocked(); !ok || at != gu.at {
		t.Errorf("next retry %v %v, want %v", at, ok, gu.at)
	}
	for _, want := range []string{"f.parquet", "e.parquet"} {
		add, _, _ = step(100, "db")
		if !slices.Equal(add, []string{want}) {
			t.Errorf("after g: add %v, want %s alone", add, want)
		}
		c.commitLoadLocked(true)
	}
	if len(c.suspect) != 0 {
		t.Errorf("e and f loaded: suspects %v", c.suspect)
	}

	// The retry: not before it is due, then g alone; failing again
	// doubles the wait; loaded, it is forgotten.
	clear(c.dirty)
	c.retryRollupsLocked(gu.at.Add(-time.Second))
	if c.dirty["db"] || c.rolled[db("g", 3)] != 0 {
		t.Errorf("retried before due: dirty %v, cost %d", c.dirty, c.rolled[db("g", 3)])
	}
	c.retryRollupsLocked(gu.at)
	if !c.dirty["db"] || c.rolled[db("g", 3)] != 5 || c.suspect[db("g", 3)] != 1 {
		t.Errorf("retried when due: dirty %v, cost %d, suspects %v", c.dirty, c.rolled[db("g", 3)], c.suspect)
	}
	if _, ok := c.nextRollupRetryLocked(); ok {
		t.Error("a retry is due while g is being tried")
	}
	if add, _, _ = step(100, "db"); !slices.Equal(add, []string{"g.parquet"}) {
		t.Errorf("retry: add %v, want g", add)
	}
	c.commitLoadLocked(false)
	if gu = c.gaveUp[db("g", 3)]; gu.wait != 2*time.Minute || c.rolled[db("g", 3)] != 0 {
		t.Errorf("g failed again: %+v, cost %d; want a wait of two minutes", gu, c.rolled[db("g", 3)])
	}
	c.retryRollupsLocked(gu.at)
	step(100, "db")
	c.commitLoadLocked(true)
	if _, ok := c.gaveUp[db("g", 3)]; ok || c.loaded[db("g", 3)].id == 0 || len(c.suspect) != 0 {
		t.Errorf("g loaded: given up %v, loaded %v, suspects %v", c.gaveUp, c.loaded, c.suspect)
	}

	// A given-up file that leaves the lake is forgotten.
	c.files["db"] = append(c.files["db"], db("j", 6))
	c.rolled[db("j", 6)] = 5
	step(100, "db")
	c.commitLoadLocked(false)
	step(100, "db")
	c.commitLoadLocked(false)
	if _, ok := c.gaveUp[db("j", 6)]; !ok {
		t.Fatalf("j failed twice, alone: not given up: %v", c.gaveUp)
	}
	delete(c.rolled, db("j", 6))
	c.retryRollupsLocked(time.Now())
	if len(c.gaveUp) != 0 {
		t.Errorf("j left the lake: given up %v", c.gaveUp)
	}
}

// rollupDB returns a connection to a new DuckDB database with the rollup
// tables and views, and a function that writes a Parquet file of one row
// whose footer holds the given weir.rollup value and returns its path.
func rollupDB(t *testing.T) (*sql.Conn, func(name, rollup string) string) {
	t.Helper()
	connector, err := duckdb.NewConnector("", useCatalogDB)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, s := range rollupSchemaStmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	dir := t.TempDir()
	return conn, func(name, rollup string) string {
		t.Helper()
		path := filepath.Join(dir, name+".parquet")
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("COPY (SELECT 1 AS x) TO %s (FORMAT parquet, KV_METADATA {'weir.rollup': %s})", quoteString(path), quoteString(rollup))); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

// TestRollupVersions: the rollup tables take a footer's rollup of either
// version (docs/format.md, "Rollups") as the same rows: version 1's
// counts as objects, and version 2's parallel arrays with their
// dictionaries, pattern ids absent or null, minutes before 1970, and no
// counts at all.
func TestRollupVersions(t *testing.T) {
	ctx := context.Background()
	conn, writeFile := rollupDB(t)
	docs := map[string]string{
		"v1": `{"v":1,"rows":6,"counts":[` +
			`{"m":-120000,"s":"api","sn":9,"st":"INFO","p":null,"n":1},` +
			`{"m":60000,"s":"api","sn":9,"st":"INFO","p":null,"n":2},` +
			`{"m":60000,"s":"db","sn":17,"st":"ERROR","p":"p1","n":3}],` +
			`"bodies":[{"b":"done","n":4},{"b":"failed","n":2}],"bodies_exact":true}`,
		"v2": `{"v":2,"rows":6,"m0":-2,"m":[0,3,3],"s":[0,0,1],"sn":[9,9,17],"st":[0,0,1],"p":[null,null,0],"n":[1,2,3],` +
			`"services":["api","db"],"severity_texts":["INFO","ERROR"],"patterns":["p1"],` +
			`"bodies":[{"b":"done","n":4},{"b":"failed","n":2}],"bodies_exact":true}`,
		"v2 without patterns": `{"v":2,"rows":3,"m0":1,"m":[0,0],"s":[0,1],"sn":[9,17],"st":[0,1],"n":[2,1],` +
			`"services":["api","db"],"severity_texts":["INFO","ERROR"],"bodies":[{"b":"done","n":3}],"bodies_exact":true}`,
		"v2 empty": `{"v":2,"rows":0,"m0":0,"m":[],"s":[],"sn":[],"st":[],"n":[],"services":[],"severity_texts":[],"bodies":[],"bodies_exact":true}`,
	}
	want := map[string][]string{
		"v1":                  {"-2 api 9 INFO <nil> 1", "1 api 9 INFO <nil> 2", "1 db 17 ERROR p1 3", "body done 4", "body failed 2"},
		"v2 without patterns": {"1 api 9 INFO <nil> 2", "1 db 17 ERROR <nil> 1", "body done 3"},
		"v2 empty":            nil,
	}
	want["v2"] = want["v1"]
	var id int64
	for name, doc := range docs {
		path := writeFile(strings.ReplaceAll(name, " ", "_"), doc)
		id++
		for _, s := range rollupInsertStmts(map[string][]string{"app": {path}}, map[string]int64{path: id}) {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		var got []string
		rows, err := conn.QueryContext(ctx, `SELECT epoch("minute")::BIGINT // 60, service_name, severity_number, severity_text, pattern_id, n, "date" = CAST("minute" AS DATE), "stream" FROM `+countsTable+` WHERE file_id = ?`, id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var m, sn, n int64
			var svc, st, stream string
			var p sql.NullString
			var dateOK bool
			if err := rows.Scan(&m, &svc, &sn, &st, &p, &n, &dateOK, &stream); err != nil {
				t.Fatal(err)
			}
			if !dateOK || stream != "app" {
				t.Errorf("%s: a count of minute %d has date matching %v, stream %q", name, m, dateOK, stream)
			}
			pat := "<nil>"
			if p.Valid {
				pat = p.String
			}
			got = append(got, fmt.Sprintf("%d %s %d %s %s %d", m, svc, sn, st, pat, n))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows, err = conn.QueryContext(ctx, "SELECT body, n FROM "+messagesTable+" WHERE file_id = ?", id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b string
			var n int64
			if err := rows.Scan(&b, &n); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("body %s %d", b, n))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want[name]) {
			t.Errorf("%s: the tables hold\n%q\nwant\n%q", name, got, want[name])
		}
	}
}

// TestRollupLoadOneInsert: a change that loads more rollup rows than a
// DuckDB row group holds, after files whose rollups add none, keeps
// every row once committed. DuckDB 1.5.5 drops the rows of such an
// INSERT when an earlier INSERT of the transaction into the same table
// added none (rollupInsertStmts).
func TestRollupLoadOneInsert(t *testing.T) {
	ctx := context.Background()
	conn, writeFile := rollupDB(t)
	const perFile, files = 16000, 9 // 144,000 rows: more than a row group
	var b strings.Builder
	list := func(v string) string { return "[" + strings.TrimSuffix(strings.Repeat(v+",", perFile), ",") + "]" }
	for i := range perFile {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, i)
	}
	full := `{"v":2,"rows":16000,"m0":0,"m":[` + b.String() + `],"s":` + list("0") + `,"sn":` + list("9") + `,"st":` + list("0") + `,"n":` + list("1") +
		`,"services":["api"],"severity_texts":["INFO"],"bodies":[],"bodies_exact":true}`
	add := map[string][]string{
		"a": {writeFile("empty", `{"v":2,"rows":0,"m0":0,"m":[],"s":[],"sn":[],"st":[],"n":[],"services":[],"severity_texts":[],"bodies":[],"bodies_exact":true}`)},
	}
	for i := range files {
		add["b"] = append(add["b"], writeFile(fmt.Sprintf("full%d", i), full))
	}
	ids := map[string]int64{}
	for _, files := range add {
		for _, p := range files {
			ids[p] = int64(len(ids) + 1)
		}
	}
	if err := execViews(ctx, conn, rollupInsertStmts(add, ids)); err != nil {
		t.Fatal(err)
	}
	var n, sum int64
	if err := conn.QueryRowContext(ctx, "SELECT count(*), sum(n) FROM "+countsTable+" WHERE stream = 'b'").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != perFile*files || sum != perFile*files {
		t.Fatalf("the counts table holds %d rows summing to %d after the change, want %d", n, sum, perFile*files)
	}
}

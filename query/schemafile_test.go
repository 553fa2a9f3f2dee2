package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// TestSchemaFile: partitions of a stream that promoted different
// attributes write files that differ in their columns. Counts that
// filter on the path down to the newest file and on a column it lacks
// are answered, staged and published, through the stream's view and
// logs (DuckDB failed them with an internal error while the view listed
// that file first); the stream's views list one schema file, which a
// new set of schemas replaces and which is then deleted.
func TestSchemaFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openEngine(t, dir)
	// A file per hour, so that a filter on the hour keeps one file.
	lake := openLake(t, e, dir, func(c *sink.Config) { c.DayFilesAfter = 0 })
	defer lake.Shutdown(ctx)
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}

	stage := func(part int32, day int, key string) { stageWide(t, lake, e, part, day, key) }
	// schemaFiles returns the schema files of alpha and of logs, which
	// must be the only ones on disk and listed first by the views.
	schemaFiles := func(when string) (alpha, logs string) {
		t.Helper()
		c.mu.Lock()
		alpha, logs = c.schemaFiles["alpha"].path, c.schemaFiles[allStreams].path
		c.mu.Unlock()
		if alpha == "" || logs == "" || alpha == logs {
			t.Fatalf("%s: schema files of alpha %q and of logs %q, want one each", when, alpha, logs)
		}
		m, err := filepath.Glob(filepath.Join(c.results, schemaDir, "*", "*", "*", "*", "*.parquet"))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Sort(m); !slices.Equal(m, slices.Sorted(slices.Values([]string{alpha, logs}))) {
			t.Errorf("%s: schema files on disk %v, want %s and %s", when, m, alpha, logs)
		}
		for _, s := range viewStmts(t, e, "alpha") {
			first := alpha
			if strings.HasPrefix(s, "CREATE OR REPLACE VIEW logs ") || strings.HasPrefix(s, "CREATE OR REPLACE VIEW "+hotView+" ") {
				first = logs // the tenant's
			}
			if strings.Contains(s, "read_parquet([") && !strings.Contains(s, "read_parquet(["+quoteString(first)) {
				t.Errorf("%s: DDL %.300q: want %s listed first", when, s, first)
			}
		}
		return alpha, logs
	}
	// check asks for the rows of day's 05:00 file without the column
	// attr_<other> (all of them: the file lacks it), and with its own.
	check := func(when string, day int, own, other string) {
		t.Helper()
		where := fmt.Sprintf(`"date" = DATE '2020-01-%02d' AND "hour" = 5`, day)
		for _, q := range []struct {
			sql  string
			want int64
		}{
			{"SELECT count(*) FROM alpha WHERE " + where + " AND attr_" + other + " IS NULL", wideRows},
			{"SELECT count(*) FROM alpha WHERE " + where + " AND attr_" + other + " = 1", 0},
			{"SELECT count(*) FROM logs WHERE stream = 'alpha' AND " + where + " AND attr_" + other + " IS NULL", wideRows},
			{"SELECT count(*) FROM alpha WHERE " + where + " AND attr_" + own + " IS NOT NULL", wideRows},
			{"SELECT count(*) FROM alpha WHERE " + where, wideRows},
		} {
			if got := queryInts(t, e, q.sql)[0]; got != q.want {
				t.Errorf("%s: %s = %d, want %d", when, q.sql, got, q.want)
			}
		}
		if got := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; got != int64(day*(narrowRows+wideRows)) {
			t.Errorf("%s: alpha has %d rows, want %d", when, got, day*(narrowRows+wideRows))
		}
	}

	stage(0, 1, "k1")
	stage(1, 2, "k2")
	check("staged", 2, "k2", "k1")
	alpha, logs := schemaFiles("staged")
	publishAll(t, lake, e)
	check("published", 2, "k2", "k1")
	if a, l := schemaFiles("published"); a != alpha || l != logs {
		t.Errorf("schema files after publishing %s, %s, want %s, %s: the schemas did not change", a, l, alpha, logs)
	}

	// A query that lists the files itself, the day's 05:00 file first,
	// trips DuckDB as the views did: DuckDB's own failure, not the
	// query's (HTTP 500, not 400).
	first, err := filepath.Glob(filepath.Join(dir, "lake", "tenant=default", "stream=alpha", "date=2020-01-02", "hour=05", "*.parquet"))
	if err != nil || len(first) != 1 {
		t.Fatalf("files of 2020-01-02 05:00: %v, %v; want one", first, err)
	}
	rest, err := filepath.Glob(filepath.Join(dir, "lake", "tenant=default", "stream=alpha", "date=2020-01-01", "*", "*.parquet"))
	if err != nil || len(rest) == 0 {
		t.Fatalf("files of 2020-01-01: %v, %v", rest, err)
	}
	own := fmt.Sprintf(`SELECT count(*) FROM read_parquet([%s], union_by_name = true, hive_partitioning = true, hive_types = {'date': DATE, 'hour': INTEGER})
		WHERE "date" = DATE '2020-01-02' AND "hour" = 5 AND attr_k1 IS NULL`, quoteList(append(first, rest...)))
	var w rowsWriter
	if _, err := e.Run(ctx, own, Options{}, &w); err != nil {
		if status, _ := httpStatus(err); errors.Is(err, ErrInvalid) || status != http.StatusInternalServerError {
			t.Errorf("DuckDB's failure on %s: %v, HTTP %d: want it reported as the server's", own, err, status)
		}
	} else if len(w.rows) != 1 || w.rows[0][0] != int64(wideRows) {
		t.Errorf("%s = %v, want %d", own, w.rows, wideRows)
	}

	// A third schema: new schema files, and the old ones deleted.
	stage(2, 3, "k3")
	check("a third schema", 3, "k3", "k1")
	publishAll(t, lake, e)
	check("a third schema, published", 3, "k3", "k2")
	if a, l := schemaFiles("a third schema"); a == alpha || l == logs {
		t.Errorf("schema files after a third schema %s, %s, want others than %s, %s", a, l, alpha, logs)
	}

	// A stream read by position has none.
	stageRecords(t, lake, "beta", 10, 2)
	publishAll(t, lake, e)
	for _, s := range viewStmts(t, e, "beta") {
		if strings.Contains(s, string(filepath.Separator)+schemaDir+string(filepath.Separator)) && strings.HasPrefix(s, "CREATE OR REPLACE VIEW weir.main.\"beta\"") {
			t.Errorf("DDL for beta %.300q lists a schema file", s)
		}
	}
}

// narrowRows and wideRows are what stageWide stages at 03:00 and 05:00.
const narrowRows, wideRows = 1000, 600

// stageWide stages into stream alpha, through a new Batcher of part,
// narrowRows records at 03:00 on day, which decide the Batcher's
// promoted column (attr_ + key), then wideRows at 05:00 that get it, and
// waits until e's views have them.
func stageWide(t *testing.T, lake *sink.Lake, e *Engine, part int32, day int, key string) {
	t.Helper()
	ctx := context.Background()
	tcfg := arrowbatch.DefaultConfig()
	tcfg.MaxColumns = 4
	bt, err := arrowbatch.NewBatcher(tcfg, record.DefaultTenant, "alpha", part, lake, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ hour, n int }{{3, narrowRows}, {5, wideRows}} {
		recs := make([]record.Record, r.n)
		for i := range recs {
			ts := time.Date(2020, 1, day, r.hour, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
			recs[i] = record.Record{Timestamp: ts.UnixNano(), Body: fmt.Sprint(i), Attributes: []record.KV{{Key: key, Value: fmt.Sprint(i % 7)}}}
		}
		if err := bt.Consume(ctx, record.NewBatch(record.DefaultTenant, "alpha", recs)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bt.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lake.WaitStaged(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaFileRetry: a schema file that cannot be made (here a file
// stands where its directory would be) is logged once per stream and
// not tried again while the schemas stay the same, however often the
// views change, until schemaRetry has passed; a change of the schemas
// tries at once. The views answer meanwhile, and list the schema file
// once it can be made.
func TestSchemaFileRetry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var warned atomic.Int64
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Threads = 2
	e, err := Open(cfg, slog.New(counter{prefix: "query: schema file", n: &warned}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(ctx)
	lake := openLake(t, e, dir, func(c *sink.Config) { c.DayFilesAfter = 0 })
	defer lake.Shutdown(ctx)
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	setRetry := func(d time.Duration) {
		c.mu.Lock()
		c.schemaRetry = d
		c.mu.Unlock()
	}
	setRetry(time.Hour)
	block := filepath.Join(c.results, schemaDir)
	if err := os.WriteFile(block, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// check checks that more failures were logged since the last check
	// (atLeast to atMost more), the rows of days, and the schema files.
	logged := 0
	check := func(when string, atLeast, atMost, days int, made bool) {
		t.Helper()
		got := int(warned.Load())
		if got < logged+atLeast || got > logged+atMost {
			t.Errorf("%s: %d more schema file failures logged, want %d to %d", when, got-logged, atLeast, atMost)
		}
		logged = got
		if got := queryInts(t, e, "SELECT count(*) FROM alpha")[0]; got != int64(days*(narrowRows+wideRows)) {
			t.Errorf("%s: alpha has %d rows, want %d", when, got, days*(narrowRows+wideRows))
		}
		// Days 1 to 4 promoted k1.
		if got, want := queryInts(t, e, "SELECT count(*) FROM logs WHERE attr_k1 IS NOT NULL")[0], int64(min(days, 4)*wideRows); got != want {
			t.Errorf("%s: logs has %d rows with attr_k1, want %d", when, got, want)
		}
		c.mu.Lock()
		alpha, logs := c.schemaFiles["alpha"].path, c.schemaFiles[allStreams].path
		c.mu.Unlock()
		if (alpha != "" && logs != "") != made {
			t.Errorf("%s: schema files of alpha %q and of logs %q, want them made: %v", when, alpha, logs, made)
		}
	}

	// Two schemas (the 03:00 rows have no promoted column): alpha's and
	// logs' schema files fail.
	stageWide(t, lake, e, 0, 1, "k1")
	check("first failure", 2, 2, 1, false)
	// The same schemas, new files: not tried again.
	stageWide(t, lake, e, 0, 2, "k1")
	publishAll(t, lake, e)
	check("same schemas", 0, 0, 2, false)
	// Once the retry is due, changes of the views try again (each change
	// while it is due): still failing, they are logged again.
	setRetry(0)
	stageWide(t, lake, e, 0, 3, "k1")
	check("retry due", 2, 1000, 3, false)
	setRetry(time.Hour)
	stageWide(t, lake, e, 1, 4, "k1")
	check("same schemas after a retry", 0, 0, 4, false)
	// A third schema tries at once, even before the retry is due.
	stageWide(t, lake, e, 1, 5, "k2")
	check("new schemas", 2, 2, 5, false)
	// Once the directory can be made and the retry is due, the next
	// change makes the schema files.
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	setRetry(0)
	stageWide(t, lake, e, 1, 6, "k2")
	check("unblocked", 0, 0, 6, true)
}

// counter is a slog.Handler that counts the records whose message
// starts with prefix.
type counter struct {
	prefix string
	n      *atomic.Int64
}

func (h counter) Enabled(context.Context, slog.Level) bool { return true }

func (h counter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}

func (h counter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h counter) WithGroup(string) slog.Handler      { return h }

// BenchmarkSchemaFile: what making a schema file costs over a view of n
// paths (15 hour files of a stream listed over and over, footers
// cached): DuckDB's DESCRIBE of the scan by name, and the write of the
// file with no rows, which is new each time.
func BenchmarkSchemaFile(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	e := openEngine(b, dir)
	lake := openLake(b, e, dir, func(c *sink.Config) { c.DayFilesAfter = 0 })
	defer lake.Shutdown(ctx)
	stageRecords(b, lake, "alpha", 15000, 15)
	if err := lake.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	c, err := e.catalog(record.DefaultTenant)
	if err != nil {
		b.Fatal(err)
	}
	c.mu.Lock()
	files := slices.Clone(c.files["alpha"])
	c.mu.Unlock()
	for _, n := range []int{15, 150, 1500} {
		var paths []string
		for len(paths) < n {
			paths = append(paths, files...)
		}
		b.Run(fmt.Sprintf("paths=%d", n), func(b *testing.B) {
			c.ddl.Lock()
			defer c.ddl.Unlock()
			for b.Loop() {
				path, _, err := c.makeSchemaFile(ctx, c.conn, paths[:n], schemaFile{})
				if err != nil {
					b.Fatal(err)
				}
				if err := os.Remove(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

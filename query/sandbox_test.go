package query

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// snapshot lists every file under dir with its size and modification
// time, to show that refused statements changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = info.ModTime().String() + " " + info.Mode().String()
		if !d.IsDir() {
			out[p] += " " + strconv.FormatInt(info.Size(), 10)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSandboxRefusesWrites runs the statements that got past a check of
// the leading keyword: each must be refused as invalid, and neither the
// data directory nor the catalog may change.
func TestSandboxRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	victim := filepath.Join(dir, "lake", "victim.parquet")
	if err := os.MkdirAll(filepath.Dir(victim), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, []byte("not touched"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	attacks := []string{
		"EXPLAIN ANALYZE CREATE TABLE logs2 AS SELECT 1",
		"EXPLAIN ANALYZE CREATE VIEW app AS SELECT 1",
		"EXPLAIN ANALYZE CREATE MACRO read_parquet(x) AS TABLE SELECT 1",
		"EXPLAIN ANALYZE CREATE OR REPLACE VIEW logs AS SELECT 1",
		"EXPLAIN ANALYZE DROP VIEW logs",
		"EXPLAIN ANALYZE INSERT INTO logs (body) VALUES ('x')",
		"EXPLAIN ANALYZE COPY (SELECT 1 AS forged) TO '" + victim + "' (FORMAT parquet)",
		"EXPLAIN ANALYZE COPY (SELECT 1) TO '" + filepath.Join(dir, "wal", "x") + "'",
		"explain /* c */ analyze\n-- c\nCOPY (SELECT 1) TO '" + victim + "'",
		"EXPLAIN (FORMAT json) COPY (SELECT 1) TO '" + victim + "'",
		"EXPLAIN (FORMAT ')') COPY (SELECT 1) TO '" + victim + "'",
		"EXPLAIN EXPLAIN ANALYZE COPY (SELECT 1) TO '" + victim + "'",
		"EXPLAIN ANALYZE ANALYZE",
		"EXPLAIN ANALYZE SELECT 1; COPY (SELECT 1) TO '" + victim + "'",
		"EXPLAIN ANALYZE /* */ (SELECT 1); DROP VIEW logs",
		"SELECT * FROM enable_logging('QueryLog')",
		"SELECT * FROM duckdb_logs",
		"SELECT * FROM duckdb_logs()",
		"SELECT * FROM query('CREATE TABLE t AS SELECT 1')",
		"SELECT * FROM query_table('logs')",
		"SELECT (SELECT count(*) FROM query('DROP VIEW logs'))",
		"WITH x AS (SELECT * FROM system.main.query('SELECT 1')) SELECT * FROM x",
		"SELECT * FROM read_text('" + victim + "')",
		"SELECT * FROM read_csv('" + victim + "')",
		"SELECT * FROM '" + filepath.Join(dir, "lake", "victim.csv") + "'",
		"FROM 'victim.json'",
		"SELECT * FROM glob('" + dir + "/*')",
		"SELECT * FROM checkpoint()",
		"SELECT * FROM duckdb_settings()",
		"SET threads = 1",
		"PRAGMA threads = 1",
		"CALL enable_logging()",
		"SELECT 1; SELECT 2",
		"SELECT 1; DROP VIEW logs",
	}
	for _, q := range attacks {
		var w rowsWriter
		if _, err := e.Run(context.Background(), q, Options{}, &w); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", q, err)
		}
	}
	if after := snapshot(t, dir); !equalMaps(before, after) {
		t.Errorf("refused statements changed the data directory:\nbefore %v\nafter  %v", before, after)
	}
	// The catalog holds weir's views and rollup tables only, and logs is
	// still weir's.
	if n := queryInts(t, e, "SELECT count(*) FROM duckdb_tables() WHERE NOT internal AND schema_name <> '"+rollupSchema+"'")[0]; n != 0 {
		t.Errorf("%d tables were created", n)
	}
	if n := queryInts(t, e, "SELECT count(*) FROM duckdb_functions() WHERE function_type = 'macro' AND NOT internal")[0]; n != 0 {
		t.Errorf("%d macros were created", n)
	}
	if n := queryInts(t, e, "SELECT count(*) FROM logs")[0]; n != 0 {
		t.Errorf("logs has %d rows", n)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSandboxAllowsReading keeps the reading forms that users rely on.
func TestSandboxAllowsReading(t *testing.T) {
	e := openEngine(t, t.TempDir())
	for _, q := range []string{
		"SELECT 1;",
		"SELECT 1 -- a trailing comment",
		"SELECT 1 /* a trailing comment */ ;",
		"FROM logs",
		"WITH x AS (SELECT 1 AS a) SELECT * FROM x",
		"SELECT * FROM logs UNION ALL SELECT * FROM logs",
		"DESCRIBE logs",
		"SHOW TABLES",
		"SUMMARIZE SELECT 1 AS a",
		"EXPLAIN SELECT count(*) FROM logs",
		"EXPLAIN ANALYZE SELECT count(*) FROM logs",
		"explain\n  analyze -- why\n select 1",
		"EXPLAIN (FORMAT json) SELECT 1",
		"SELECT * FROM range(3)",
		"SELECT * FROM generate_series(1, 3)",
		"SELECT * FROM duckdb_columns() WHERE table_name = 'logs'",
		"SELECT * FROM pragma_table_info('logs')",
		"SELECT table_name FROM information_schema.tables",
		"SELECT list_transform([1, 2], x -> x + 1)",
		`SELECT from_json('{"a": [1, 2]}', '{"a": ["INTEGER"]}')`,
		`SELECT json_transform('{"a": 1}', '{"a": "VARCHAR"}')`,
		`SELECT json_extract(repeat('[', 100000) || '1' || repeat(']', 100000), '$[0]') IS NULL`,
		`SELECT json_keys('{"a": {"b": 1}}'), json_type('[1]'), json_valid('{')`,
	} {
		var w rowsWriter
		if _, err := e.Run(context.Background(), q, Options{}, &w); err != nil {
			t.Errorf("%s: %v", q, err)
		} else if w.cols == nil {
			t.Errorf("%s: no result", q)
		}
	}
	// EXPLAIN ANALYZE runs the query it explains and says so.
	var w rowsWriter
	if _, err := e.Run(context.Background(), "EXPLAIN ANALYZE SELECT count(*) FROM range(10)", Options{}, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.rows) == 0 || !strings.Contains(strings.ToLower(w.rows[0][len(w.rows[0])-1].(string)), "analyze") {
		t.Errorf("EXPLAIN ANALYZE answered %v", w.rows)
	}
}

// TestSandboxRefusesDeepRecursion: DuckDB runs some JSON functions and
// the VARIANT type recursively over their input's nesting on a thread's
// stack, so a value nested 100,000 deep ends the process (a crash here
// ends the test binary). They are refused, whether their input is a
// constant or a column, called as functions, methods or in lambdas.
func TestSandboxRefusesDeepRecursion(t *testing.T) {
	e := openEngine(t, t.TempDir())
	const deep = `repeat('[', 100000) || '1' || repeat(']', 100000)`
	const deepObject = `repeat('{"a":', 100000) || '1' || repeat('}', 100000)`
	const deepType = `repeat('[', 100000) || '"INTEGER"' || repeat(']', 100000)`
	for _, q := range []string{
		"SELECT json_structure(" + deep + ")",
		"SELECT json_contains(" + deep + ", '1')",
		"SELECT JSON_CONTAINS(" + deepObject + ", '1')",
		"SELECT json_merge_patch(" + deepObject + ", " + deepObject + ")",
		"SELECT json_pretty(" + deep + ")",
		"SELECT json_group_structure(j) FROM (SELECT " + deep + " AS j)",
		"SELECT j.json_structure() FROM (SELECT " + deep + " AS j)",
		"SELECT list_transform([" + deep + "], x -> json_structure(x))",
		"SELECT json_structure(i::VARCHAR || " + deep + ") FROM range(1) t(i)",
		"SELECT (" + deep + ")::JSON::VARIANT",
		"SELECT TRY_CAST((" + deep + ")::JSON AS VARIANT[])",
		"SELECT variant_typeof((" + deep + ")::JSON)",
		"SELECT 1::VARIANT",
		"SELECT from_json('1', " + deepType + ")",
		"SELECT json_transform('1', " + deepType + ")",
		"SELECT json_transform_strict('1', " + deepType + ")",
		"SELECT from_json('1', '" + strings.Repeat("[", 65) + `"INTEGER"` + strings.Repeat("]", 65) + "')",
		`SELECT from_json('1', '"VARIANT"')`,
		"SELECT json_serialize_plan('SELECT 1')",
		`SELECT json_deserialize_sql(json_serialize_sql('SELECT 1'))`,
	} {
		var w rowsWriter
		if _, err := e.Run(context.Background(), q, Options{Timeout: time.Minute}, &w); !errors.Is(err, ErrInvalid) {
			t.Errorf("%.80s: %v, want ErrInvalid", q, err)
		}
	}
	// A shallow structure is fine, and the depth counts nesting, not
	// brackets inside strings.
	var w rowsWriter
	q := `SELECT from_json('["[{"]', '` + strings.Repeat("[", 64) + `"VARCHAR"` + strings.Repeat("]", 64) + `') IS NULL, from_json('{"k": "]]]"}', '{"k": "VARCHAR"}').k`
	if _, err := e.Run(context.Background(), q, Options{}, &w); err != nil {
		t.Fatalf("%.80s: %v", q, err)
	}
	if len(w.rows) != 1 || w.rows[0][1] != "]]]" {
		t.Errorf("rows %v", w.rows)
	}
}

// TestSandboxPatterns: ILIKE, GLOB and LIKE … ESCAPE backtrack, so
// their patterns are bounded to those matched in time linear in the
// text's length times the pattern's; plain LIKE is linear anyway.
func TestSandboxPatterns(t *testing.T) {
	e := openEngine(t, t.TempDir())
	for _, q := range []string{
		`SELECT repeat('a', 3000) ILIKE '%a%a%b'`,
		`SELECT repeat('a', 100000) ILIKE '%a%b'`,
		`SELECT repeat('a', 100000) NOT ILIKE '_%a%b'`,
		`SELECT repeat('a', 100000) ILIKE '%a%b' ESCAPE '!'`,
		`SELECT repeat('a', 100000) GLOB '*a*b'`,
		`SELECT glob(repeat('a', 100000), '*a*b')`,
		`SELECT like_escape(repeat('a', 3000), '%a%a%b', '!')`,
		`SELECT not_like_escape(repeat('a', 3000), '%a%a%b', '!')`,
		`SELECT 'x' ILIKE '%' || 'a%b'`,
		`SELECT 'x' ILIKE p FROM (SELECT '%a%b' AS p)`,
		`SELECT 'x' ILIKE '%` + strings.Repeat("a", maxPatternBytes) + `%'`,
		`SELECT 'x' ILIKE '%a!%%b' ESCAPE '!'`,
	} {
		var w rowsWriter
		if _, err := e.Run(context.Background(), q, Options{Timeout: time.Minute}, &w); !errors.Is(err, ErrInvalid) {
			t.Errorf("%.80s: %v, want ErrInvalid", q, err)
		}
	}
	for q, want := range map[string]bool{
		`SELECT 'Abc' ILIKE '%B%'`:                  true,
		`SELECT 'Abc' ILIKE 'a%C'`:                  true,
		`SELECT 'Abc' ILIKE 'a_c%%'`:                true,
		`SELECT 'a%c' ILIKE '%\%%' ESCAPE '\'`:      true,
		`SELECT 'abc' ILIKE '%\%%' ESCAPE '\'`:      false,
		`SELECT 'a%b%c' ILIKE 'a!%b!%%' ESCAPE '!'`: true,
		`SELECT 'abc' GLOB 'a*'`:                    true,
		`SELECT 'abc' NOT ILIKE '%X%'`:              true,
		`SELECT 'aXbXc' LIKE '%X%X%c'`:              true,
	} {
		var w rowsWriter
		if _, err := e.Run(context.Background(), q, Options{}, &w); err != nil {
			t.Errorf("%s: %v", q, err)
		} else if len(w.rows) != 1 || w.rows[0][0] != want {
			t.Errorf("%s = %v, want %v", q, w.rows, want)
		}
	}
}

// TestVetOutOfMemory: a statement too large to check within DuckDB's
// memory limit is the server's limit (ErrResources, 429), not a mistake
// in the statement.
func TestVetOutOfMemory(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Threads, cfg.MemoryLimit = 1, "8MB"
	e, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	var in strings.Builder
	in.WriteString("SELECT 1 IN (0")
	for i := range 150_000 {
		in.WriteString("," + strconv.Itoa(i))
	}
	in.WriteString(")")
	var w rowsWriter
	if _, err := e.Run(context.Background(), in.String(), Options{Timeout: time.Minute}, &w); !errors.Is(err, ErrResources) {
		t.Errorf("%v, want ErrResources", err)
	}
}

func TestWildcardRuns(t *testing.T) {
	for _, c := range []struct {
		pattern string
		escape  byte
		want    int
	}{
		{"", 0, 0}, {"%", 0, 0}, {"%%", 0, 0}, {"abc", 0, 0}, {"abc%", 0, 0},
		{"%abc", 0, 1}, {"%abc%", 0, 1}, {"%%abc%%", 0, 1}, {"a%b", 0, 1},
		{"%a%b", 0, 2}, {"%a%b%", 0, 2}, {"a%b%c", 0, 2},
		{`%a\%b%`, '\\', 1}, {`\%\%%`, '\\', 0}, {`%a\\%b`, '\\', 2},
	} {
		if got := wildcardRuns(c.pattern, '%', c.escape); got != c.want {
			t.Errorf("wildcardRuns(%q, %q) = %d, want %d", c.pattern, c.escape, got, c.want)
		}
	}
}

func TestJSONDepth(t *testing.T) {
	for text, want := range map[string]int{
		``:                  0,
		`"INTEGER"`:         0,
		`["INTEGER"]`:       1,
		`{"a": [{"b": 1}]}`: 3,
		`["[[[", "\"[["]`:   1,
		`[[]][[[]]]`:        3,
		`]]]`:               0,
	} {
		if got := jsonDepth(text); got != want {
			t.Errorf("jsonDepth(%s) = %d, want %d", text, got, want)
		}
	}
}

// TestHugeResultIsBounded: a result far larger than memory is cut at the
// row limit while DuckDB computes it, not after, so the query finishes
// quickly and says it was truncated.
func TestHugeResultIsBounded(t *testing.T) {
	e := openEngine(t, t.TempDir())
	var w rowsWriter
	st, err := e.Run(context.Background(), "SELECT * FROM generate_series(1, 1e12::BIGINT)", Options{MaxRows: 5, Timeout: time.Minute}, &w)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Truncated || len(w.rows) != 5 || w.rows[4][0] != int64(5) {
		t.Errorf("stats %+v, rows %v", st, w.rows)
	}
	// A query that must hold more than the memory limit fails with
	// ErrResources instead of growing the process.
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Threads = 1
	cfg.MemoryLimit = "64MB"
	cfg.MaxSpill = "16MB"
	small, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Shutdown(context.Background())
	_, err = small.Run(context.Background(), "SELECT count(DISTINCT i::VARCHAR || 'some padding to make it wide') FROM range(100000000) t(i)", Options{Timeout: time.Minute}, &w)
	if !errors.Is(err, ErrResources) {
		t.Errorf("over the memory limit: %v, want ErrResources", err)
	}
}

// TestSystemSlot: user queries holding every slot do not lock out a
// system query.
func TestSystemSlot(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MaxConcurrent = 1
	e, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(ctx, "SELECT count(*) FROM range(1000000000000) a", Options{Timeout: time.Minute}, &startWriter{started: started})
		done <- err
	}()
	// The slow query holds the only user slot once it is registered.
	for {
		c, _ := e.catalog("")
		c.mu.Lock()
		n := 0
		for _, k := range c.active {
			n += k
		}
		c.mu.Unlock()
		if n == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("slow query ended early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	var w rowsWriter
	if _, err := e.Run(context.Background(), "SELECT 1", Options{Timeout: 200 * time.Millisecond}, &w); !errors.Is(err, ErrBusy) {
		t.Errorf("second user query: %v, want ErrBusy", err)
	}
	if _, err := e.Run(context.Background(), "DESCRIBE logs", Options{System: true, Timeout: 10 * time.Second}, &w); err != nil {
		t.Errorf("system query: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrCanceled) {
		t.Errorf("slow query: %v, want ErrCanceled", err)
	}
	select {
	case <-started:
		t.Error("the slow query produced rows")
	default:
	}
}

// startWriter closes started when a result begins.
type startWriter struct {
	rowsWriter
	started chan struct{}
}

func (s *startWriter) Begin(cols []Column) error {
	close(s.started)
	return nil
}

// TestSettingsBindEveryConnection: the time zone, the footer cache, the
// file cache being off and the sandbox hold on the connections queries
// run on, not only on the one the catalog set them on.
func TestSettingsBindEveryConnection(t *testing.T) {
	e := openEngine(t, t.TempDir())
	const q = `SELECT current_setting('TimeZone'), current_setting('parquet_metadata_cache'),
		current_setting('enable_external_file_cache'), current_setting('enable_external_access'),
		current_setting('lock_configuration')`
	for range 3 {
		got := queryRows(t, e, q)
		if want := "[UTC true false false true]"; len(got) != 1 || got[0] != want {
			t.Fatalf("time zone, footer cache, file cache, external access, locked = %v, want %s", got, want)
		}
	}
}

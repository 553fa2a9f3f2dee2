package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// readParquet reads a Parquet answer with arrow-go, a reader apart from
// the DuckDB that wrote it, into one record. The caller releases it.
func readParquet(t *testing.T, b []byte) arrow.RecordBatch {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	pf, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a Parquet file (%d bytes): %v: %.200q", len(b), err, b)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, tbl.NumRows()+1)
	defer tr.Release()
	if !tr.Next() {
		cols := make([]arrow.Array, tbl.NumCols())
		for i, f := range tbl.Schema().Fields() {
			b := array.NewBuilder(memory.DefaultAllocator, f.Type)
			cols[i] = b.NewArray()
			b.Release()
			defer cols[i].Release()
		}
		return array.NewRecordBatch(tbl.Schema(), cols, 0)
	}
	rec := tr.RecordBatch()
	rec.Retain()
	return rec
}

// colsWriter records the columns Begin gets and passes the result on,
// taking it as a file or nested columns as JSON text when what it wraps
// does.
type colsWriter struct {
	ResultWriter
	cols []Column
}

func (w *colsWriter) Begin(cols []Column) error {
	w.cols = cols
	return w.ResultWriter.Begin(cols)
}

func (w *colsWriter) nestedAsJSON() bool { return wantsJSONText(w.ResultWriter) }

func (w *colsWriter) parquetOptions() string {
	if cw, ok := w.ResultWriter.(columnarWriter); ok {
		return cw.parquetOptions()
	}
	return ""
}

func (w *colsWriter) writeParquet(r *parquetResult) error {
	return w.ResultWriter.(columnarWriter).writeParquet(r)
}

// answerFiles lists what is left in the engine's answer directory.
func answerFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(dataDir, "tmp", "query", "tenant=default", "results", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// TestParquetAnswers: DuckDB writes a Parquet answer with its own types
// (nested values nested, decimals decimal), values it cannot write
// faithfully as its text, the columns reported as for rows; the row
// limit cuts the file and says so; errors come back before anything is
// written; no answer file outlives its query.
func TestParquetAnswers(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	ctx := context.Background()
	run := func(sql string, maxRows uint64) (Stats, []Column, []byte, error) {
		var buf bytes.Buffer
		w := &colsWriter{ResultWriter: NewWriter(FormatParquet, &buf)}
		st, err := e.Run(ctx, sql, Options{MaxRows: maxRows}, w)
		return st, w.cols, buf.Bytes(), err
	}

	const typed = `SELECT i::INTEGER AS i, 'r' || i AS s, NULL::VARCHAR AS n, TIMESTAMPTZ '2024-01-02 03:04:05.123456+00' AS ts,
		[i, i + 1] AS l, MAP {'k': 'v' || i} AS m, {'x': i, 'y': ['a']} AS st, (i + 0.25)::DECIMAL(10,2) AS dec,
		170141183460469231731687303715884105727::HUGEINT AS h, INTERVAL 2 DAY AS iv, to_json([i]) AS j
		FROM range(3) t(i) ORDER BY i`
	st, cols, raw, err := run(typed, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 3 || st.Truncated {
		t.Errorf("stats %+v, want 3 rows whole", st)
	}
	var rw rowsWriter
	if _, err := e.Run(ctx, typed, Options{}, &rw); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cols, rw.cols) {
		t.Errorf("columns\n got %v\nwant %v (as for rows)", cols, rw.cols)
	}
	rec := readParquet(t, raw)
	defer rec.Release()
	wantTypes := map[string]string{
		"i": "int32", "s": "utf8", "n": "utf8", "ts": "timestamp[us, tz=UTC]", "l": "list<element: int64, nullable>",
		"m": "map<utf8, utf8, items_nullable>", "st": "struct<x: int64 nullable, y: list<element: utf8, nullable> nullable>", "dec": "decimal(10, 2)",
		"h": "utf8", "iv": "utf8", "j": "binary",
	}
	for i, f := range rec.Schema().Fields() {
		if f.Name != cols[i].Name || f.Type.String() != wantTypes[f.Name] {
			t.Errorf("column %d: %s %s, want %s %s", i, f.Name, f.Type, cols[i].Name, wantTypes[cols[i].Name])
		}
	}
	if rec.NumRows() != 3 || rec.NumCols() != int64(len(wantTypes)) {
		t.Fatalf("%d rows, %d columns", rec.NumRows(), rec.NumCols())
	}
	col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
	for r := range 3 {
		got := fmt.Sprintf("%v %v %v %v %v %v %v %v %v",
			col("i").GetOneForMarshal(r), col("s").GetOneForMarshal(r), col("n").IsNull(r), col("l").ValueStr(r),
			col("m").ValueStr(r), col("dec").ValueStr(r), col("h").ValueStr(r), col("iv").ValueStr(r), col("st").ValueStr(r))
		want := fmt.Sprintf(`%d r%d true [%d,%d] [{"key":"k","value":"v%d"}] %d.25 170141183460469231731687303715884105727 2 days {"x":%d,"y":["a"]}`, r, r, r, r+1, r, r, r)
		if got != want {
			t.Errorf("row %d:\n got %s\nwant %s", r, got, want)
		}
		if ts := col("ts").(*array.Timestamp).Value(r); ts != 1704164645123456 {
			t.Errorf("row %d: timestamp %d µs", r, ts)
		}
	}

	// The row limit: cut to the first rows, in order, and said.
	for _, c := range []struct {
		max       uint64
		rows      int64
		truncated bool
	}{{10, 10, true}, {100, 100, false}, {1000, 100, false}} {
		st, _, raw, err := run("SELECT i FROM range(100) t(i) ORDER BY i", c.max)
		if err != nil {
			t.Fatal(err)
		}
		rec := readParquet(t, raw)
		if st.Rows != uint64(c.rows) || st.Truncated != c.truncated || rec.NumRows() != c.rows {
			t.Errorf("max %d: stats %+v, %d rows in the file; want %d rows, truncated %t", c.max, st, rec.NumRows(), c.rows, c.truncated)
		}
		for r := range int(rec.NumRows()) {
			if v := rec.Column(0).(*array.Int64).Value(r); v != int64(r) {
				t.Fatalf("max %d: row %d is %d", c.max, r, v)
			}
		}
		rec.Release()
	}

	// No rows: a file of the columns. EXPLAIN comes row by row.
	for _, sql := range []string{"SELECT i FROM range(0) t(i)", "EXPLAIN SELECT 1"} {
		st, _, raw, err := run(sql, 0)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		rec := readParquet(t, raw)
		if rec.NumCols() == 0 || rec.NumRows() != int64(st.Rows) {
			t.Errorf("%s: %d columns, %d rows, stats %+v", sql, rec.NumCols(), rec.NumRows(), st)
		}
		rec.Release()
	}

	// Errors in binding and in running come back before anything is
	// written, classified as for rows.
	// Nor can SQL reach the COPY around it.
	for _, sql := range []string{
		"SELECT nope FROM range(3)", "SELECT CAST('x' || i AS INTEGER) FROM range(3) t(i)", "COPY (SELECT 1) TO 'x.parquet'",
		"SELECT 1)) TO 'x.csv' (FORMAT csv); SELECT ((1", "SELECT 1 /*", "SELECT 1 --\n)) TO 'x.csv' (FORMAT csv)",
	} {
		_, _, raw, err := run(sql, 0)
		if !errors.Is(err, ErrInvalid) || len(raw) != 0 {
			t.Errorf("%s: %v after %d bytes, want ErrInvalid before any", sql, err, len(raw))
		}
	}
	if left := answerFiles(t, dir); len(left) != 0 {
		t.Errorf("answer files left behind: %v", left)
	}
}

// TestParquetAnswerCanceled: a query canceled while DuckDB writes its
// answer fails as canceled and leaves no file.
func TestParquetAnswerCanceled(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	var buf bytes.Buffer
	_, err := e.Run(context.Background(), "SELECT sum(a.range * b.range) AS x FROM range(300000) a, range(300000) b", Options{Timeout: 200 * time.Millisecond}, NewWriter(FormatParquet, &buf))
	if !errors.Is(err, ErrTimeout) || buf.Len() != 0 {
		t.Errorf("%v after %d bytes, want ErrTimeout before any", err, buf.Len())
	}
	if left := answerFiles(t, dir); len(left) != 0 {
		t.Errorf("answer files left behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "query", "tenant=default", "results")); err != nil {
		t.Errorf("answer directory: %v", err)
	}
}

// TestParquetAnswerTooLarge: a Parquet answer whose file would pass
// MaxAnswerBytes fails with ErrResources before anything is written,
// whether DuckDB is stopped while writing or has finished, and leaves no
// file; a smaller answer still goes through.
func TestParquetAnswerTooLarge(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Threads = 2
	cfg.MaxAnswerBytes = 256 << 10
	e, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	// 20,000 rows (~700 KB) are written before the first watch; a million
	// (~35 MB, a second's work for DuckDB) are stopped while being written.
	for _, rows := range []int{20_000, 1_000_000} {
		var buf bytes.Buffer
		_, err := e.Run(context.Background(), fmt.Sprintf("SELECT md5(i::VARCHAR) || md5((i + 1)::VARCHAR) AS s FROM range(%d) t(i)", rows),
			Options{MaxRows: uint64(rows), Timeout: time.Minute}, NewWriter(FormatParquet, &buf))
		if !errors.Is(err, ErrResources) || buf.Len() != 0 {
			t.Errorf("%d rows: %v after %d bytes, want ErrResources before any", rows, err, buf.Len())
		}
		if stopped := err != nil && strings.Contains(err.Error(), "while DuckDB wrote it"); rows == 1_000_000 && !stopped {
			t.Errorf("%d rows: %v; want DuckDB stopped while writing", rows, err)
		}
	}
	if left := answerFiles(t, cfg.DataDir); len(left) != 0 {
		t.Errorf("answer files left behind: %v", left)
	}
	var buf bytes.Buffer
	if st, err := e.Run(context.Background(), "SELECT md5(i::VARCHAR) AS s FROM range(1000) t(i)", Options{}, NewWriter(FormatParquet, &buf)); err != nil || st.Rows != 1000 {
		t.Fatalf("a small answer: %+v, %v", st, err)
	}
}

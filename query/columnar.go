package query

import (
	"context"
	"database/sql/driver"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// columnarWriter is a ResultWriter that can take a whole result at once,
// as the Parquet file DuckDB's COPY wrote, instead of row by row: the
// Parquet encoding. Run then calls Begin, writeParquet once, and End.
type columnarWriter interface {
	ResultWriter
	// parquetOptions are the COPY options (compression, row group size)
	// the writer wants the file written with, or "" if it takes rows
	// (wrappers take files when what they wrap does).
	parquetOptions() string
	// writeParquet writes the result in r.
	writeParquet(r *parquetResult) error
}

// parquetResult is a result DuckDB wrote to a Parquet file.
type parquetResult struct {
	f    *os.File
	size int64
}

// textTypes are the DuckDB types whose Parquet form would lose their
// value or meaning (HUGEINT becomes DOUBLE, INTERVAL twelve raw bytes,
// TIME WITH TIME ZONE a plain time); columnar answers carry them, and
// anything nesting them, as DuckDB's text for them, as row answers do.
var textTypes = map[duckdb.Type]bool{
	duckdb.TYPE_HUGEINT:  true,
	duckdb.TYPE_UHUGEINT: true,
	duckdb.TYPE_INTERVAL: true,
	duckdb.TYPE_TIME_TZ:  true,
	duckdb.TYPE_UNION:    true,
	duckdb.TYPE_BIT:      true,
	duckdb.TYPE_BIGNUM:   true,
	duckdb.TYPE_SQLNULL:  true,
	duckdb.TYPE_GEOMETRY: true,
	duckdb.TYPE_VARIANT:  true,
}

// asText reports whether a column of type t is sent as text.
func asText(t duckdb.TypeInfo, depth int) bool {
	if depth > maxSQLDepth {
		return true
	}
	if textTypes[t.InternalType()] {
		return true
	}
	switch d := t.Details().(type) {
	case *duckdb.ListDetails:
		return asText(d.Child, depth+1)
	case *duckdb.ArrayDetails:
		return asText(d.Child, depth+1)
	case *duckdb.MapDetails:
		return asText(d.Key, depth+1) || asText(d.Value, depth+1)
	case *duckdb.StructDetails:
		for _, e := range d.Entries {
			if asText(e.Info(), depth+1) {
				return true
			}
		}
	}
	return false
}

// columnar runs the vetted SELECT in stmt (whose text is sqlText) as a
// COPY to a Parquet file in dir, and hands the file to w: DuckDB encodes
// the result column by column, with its own types, instead of weir
// rebuilding it from rows. sqlText's LIMIT lets at most maxRows+1 rows
// through; when the extra row came, DuckDB copies the first maxRows rows
// of its file to a second file, which is the answer. The files, in a
// directory of the query's own, are removed on return. errTypesUnknown
// means nothing ran and the statement is to be run for rows.
func (e *Engine) columnar(ctx context.Context, conn *duckdb.Conn, stmt *duckdb.Stmt, sqlText, dir string, maxRows uint64, w columnarWriter) (Stats, error) {
	n := 0
	sel, text, err := projection(stmt, func(ref string, t duckdb.TypeInfo) string {
		n++
		if asText(t, 0) {
			return "CAST(" + ref + " AS VARCHAR)"
		}
		return ""
	})
	if err != nil {
		return Stats{}, err
	}
	// The column names and DuckDB's type names, as the row path reports
	// them: from the same statement under LIMIT 0, which DuckDB answers
	// without reading anything.
	cols, err := columnsOf(ctx, conn, sqlText)
	if err != nil {
		return Stats{}, e.classify(ctx, err)
	}
	if len(cols) != n {
		return Stats{}, errTypesUnknown
	}
	if !text {
		sel = "*"
	}
	// The query's own directory: DuckDB writes each file under a
	// temporary name first, which a failed COPY leaves behind.
	qdir, err := os.MkdirTemp(dir, "answer-")
	if err != nil {
		return Stats{}, fmt.Errorf("answer directory: %w", err)
	}
	defer os.RemoveAll(qdir)
	ctx, stop := e.watchAnswer(ctx, qdir)
	defer stop()
	opts := w.parquetOptions()
	name := filepath.Join(qdir, "all.parquet")
	written, err := e.copyTo(ctx, conn, "SELECT "+sel+" FROM (\n"+sqlText+"\n)", name, opts)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Rows: min(written, maxRows), Truncated: written > maxRows}
	if st.Truncated {
		cut := filepath.Join(qdir, "cut.parquet")
		if _, err := e.copyTo(ctx, conn, "SELECT * FROM read_parquet("+quoteString(name)+") LIMIT "+strconv.FormatUint(maxRows, 10), cut, opts); err != nil {
			return Stats{}, err
		}
		name = cut
	}
	f, err := os.Open(name)
	if err != nil {
		return Stats{}, fmt.Errorf("answer file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Stats{}, fmt.Errorf("answer file: %w", err)
	}
	if fi.Size() > e.cfg.MaxAnswerBytes {
		return Stats{}, e.answerTooLarge()
	}
	if err := w.Begin(cols); err != nil {
		return st, err
	}
	if err := w.writeParquet(&parquetResult{f: f, size: fi.Size()}); err != nil {
		return st, err
	}
	return st, w.End(st.Truncated)
}

// answerWatchEvery is how often a Parquet answer's files are measured
// while DuckDB writes them.
const answerWatchEvery = 20 * time.Millisecond

// watchAnswer returns ctx, canceled with answerTooLarge's error once the
// files in dir pass MaxAnswerBytes, and stop, which ends the watch and
// waits for it: DuckDB's COPY would otherwise fill the disk the lake and
// the log share with an answer of any size.
func (e *Engine) watchAnswer(ctx context.Context, dir string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(answerWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if dirBytes(dir) > e.cfg.MaxAnswerBytes {
				cancel(fmt.Errorf("%w (stopped while DuckDB wrote it)", e.answerTooLarge()))
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		wg.Wait()
		cancel(nil)
	}
}

func (e *Engine) answerTooLarge() error {
	return fmt.Errorf("%w: the Parquet answer is larger than %d bytes (query.max_answer); ask for fewer rows or columns", ErrResources, e.cfg.MaxAnswerBytes)
}

// dirBytes returns the bytes of the files in dir.
func dirBytes(dir string) int64 {
	ents, _ := os.ReadDir(dir)
	var n int64
	for _, d := range ents {
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// copyTo has DuckDB write the result of query to the Parquet file name
// with the COPY options opts, and returns the rows written.
func (e *Engine) copyTo(ctx context.Context, conn *duckdb.Conn, query, name, opts string) (uint64, error) {
	res, err := conn.ExecContext(ctx, "COPY ("+query+") TO "+quoteString(name)+" (FORMAT parquet, "+opts+")", nil)
	if err != nil {
		return 0, e.classify(ctx, err)
	}
	n, err := res.RowsAffected()
	if err != nil || n < 0 {
		return 0, fmt.Errorf("answer file: rows written: %d, %v", n, err)
	}
	return uint64(n), nil
}

// columnsOf returns the columns of the SELECT sqlText.
func columnsOf(ctx context.Context, conn *duckdb.Conn, sqlText string) ([]Column, error) {
	rows, err := conn.QueryContext(ctx, "SELECT * FROM (\n"+sqlText+"\n) LIMIT 0", nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return columnsOfRows(rows), nil
}

// columnsOfRows returns the columns of a result.
func columnsOfRows(rows driver.Rows) []Column {
	names := rows.Columns()
	cols := make([]Column, len(names))
	typed, _ := rows.(driver.RowsColumnTypeDatabaseTypeName)
	for i, n := range names {
		cols[i].Name = n
		if typed != nil {
			cols[i].Type = typed.ColumnTypeDatabaseTypeName(i)
		}
	}
	return cols
}

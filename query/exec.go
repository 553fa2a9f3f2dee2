package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Errors of Run. Callers match them with errors.Is and map them to their
// protocol's codes.
var (
	// ErrInvalid marks SQL that is refused or fails to parse or bind: the
	// caller's fault.
	ErrInvalid = errors.New("invalid query")
	// ErrBusy marks a query that found no free slot before its deadline.
	ErrBusy = errors.New("too many concurrent queries")
	// ErrTimeout marks a query that ran past its timeout.
	ErrTimeout = errors.New("query timed out")
	// ErrCanceled marks a query whose caller went away.
	ErrCanceled = errors.New("query canceled")
	// ErrResources marks a query that ran out of memory.
	ErrResources = errors.New("query exceeded its resources")
)

// Options bound one query. Zero values take the engine's defaults; values
// above the engine's maximums are lowered to them.
type Options struct {
	MaxRows uint64
	Timeout time.Duration
	// Tenant is whose data the query reads: it runs in that tenant's
	// database and sees nothing of any other. "" is the default tenant.
	Tenant string
	// System runs the query in the engine's own slot, apart from user
	// queries, so that weir's short internal queries (the UI's schema)
	// are never locked out by slow user SQL. Never set it for SQL a user
	// sent.
	System bool
}

// Column describes one result column.
type Column struct {
	Name string `json:"name"`
	// Type is DuckDB's type name, such as "VARCHAR".
	Type string `json:"type"`
	// jsonText is set when the column's values are the JSON text DuckDB
	// wrote for them (strings; see jsonTextWriter).
	jsonText bool
}

// ResultWriter receives a result. Begin is called once, before any row
// and only after the query has produced its first row or finished, so
// errors in planning and in the first chunk come back from Run before
// anything is written. Row's values are only valid during the call. The
// Parquet writer of NewWriter takes a SELECT's result as the file DuckDB
// wrote instead of through Row (Begin and End are called all the same);
// ResultWriters made elsewhere get rows.
type ResultWriter interface {
	Begin(cols []Column) error
	Row(vals []driver.Value) error
	End(truncated bool) error
}

// Stats describes a finished query.
type Stats struct {
	Rows      uint64
	Truncated bool
	Elapsed   time.Duration
}

// allowedStatements are the statement types user SQL may run: SELECT
// (which covers WITH, FROM-first, DESCRIBE, SHOW, SUMMARIZE and reading
// PRAGMAs) and EXPLAIN.
var allowedStatements = map[duckdb.StmtType]bool{
	duckdb.STATEMENT_TYPE_SELECT:  true,
	duckdb.STATEMENT_TYPE_EXPLAIN: true,
}

// Run executes one read-only statement and writes its result to w. It
// returns errors wrapping ErrInvalid, ErrBusy, ErrTimeout, ErrCanceled or
// ErrResources for the caller's and the load's faults; other errors are
// the engine's. If Begin was called, the error happened mid-stream.
func (e *Engine) Run(ctx context.Context, query string, opt Options, w ResultWriter) (Stats, error) {
	maxRows := opt.MaxRows
	if maxRows == 0 {
		maxRows = e.cfg.DefaultRows
	}
	maxRows = min(maxRows, e.cfg.MaxRows)
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = e.cfg.DefaultTimeout
	}
	timeout = min(timeout, e.cfg.MaxTimeout)
	return e.run(ctx, query, opt, maxRows, timeout, nil, w)
}

// run is Run with the bounds worked out. check, when set, runs on the
// query's connection before the statement is vetted; its error is
// returned as is.
func (e *Engine) run(ctx context.Context, query string, opt Options, maxRows uint64, timeout time.Duration, check func(context.Context, *sql.Conn) error, w ResultWriter) (_ Stats, err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()

	c, err := e.catalog(opt.Tenant)
	if err != nil {
		return Stats{}, err
	}
	defer func() {
		if err != nil {
			err = c.serverFault(query, err)
			var fe *fileError
			if errors.As(err, &fe) {
				e.mend(fe.lake)
			}
		}
	}()
	release, err := e.acquire(ctx, c.tenant, opt.System)
	if err != nil {
		return Stats{}, err
	}
	defer release()
	relieveNativeMemory()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return Stats{}, e.classify(ctx, fmt.Errorf("connect: %w", err))
	}
	defer conn.Close()
	// Evicted files the query may read are fetched before it is entered:
	// eviction waits for entered queries.
	exit, err := e.prepareFiles(ctx, c, func() []tableRef { return statementRefs(ctx, conn, query) })
	if err != nil {
		return Stats{}, e.classify(ctx, err)
	}
	defer exit()

	if check != nil {
		if err := check(ctx, conn); err != nil {
			return Stats{}, e.classify(ctx, err)
		}
	}
	v, err := vet(ctx, conn, query, maxRows)
	if err != nil {
		return Stats{}, e.classify(ctx, err)
	}
	var st Stats
	err = conn.Raw(func(dc any) error {
		// Prepare, unlike PrepareContext, refuses several statements at
		// once instead of running all but the last.
		prepared, err := dc.(*duckdb.Conn).Prepare(v.sql)
		if err != nil {
			return e.prepareErr(ctx, err)
		}
		stmt := prepared.(*duckdb.Stmt)
		defer stmt.Close()
		typ, err := stmt.StatementType()
		if err != nil {
			return e.prepareErr(ctx, err)
		}
		if !allowedStatements[typ] {
			return fmt.Errorf("%w: only reading statements (SELECT, WITH, EXPLAIN, DESCRIBE, SHOW, SUMMARIZE) are allowed; this one changes state or reaches outside the lake", ErrInvalid)
		}
		if stmt.NumInput() > 0 {
			return fmt.Errorf("%w: the statement has parameters; inline their values", ErrInvalid)
		}
		if cw, ok := w.(columnarWriter); ok && !v.explain && cw.parquetOptions() != "" {
			st, err = e.columnar(ctx, dc.(*duckdb.Conn), stmt, v.sql, c.results, maxRows, cw)
			if !errors.Is(err, errTypesUnknown) {
				return err
			}
		}
		var text []Column
		if wantsJSONText(w) && !v.explain {
			if sel, cols := nestedAsText(stmt); sel != "" {
				wrapped, err := dc.(*duckdb.Conn).Prepare("SELECT " + sel + " FROM (\n" + v.sql + "\n)")
				if err != nil {
					return e.classify(ctx, err)
				}
				defer wrapped.Close()
				stmt, text = wrapped.(*duckdb.Stmt), cols
			}
		}
		rows, err := stmt.QueryContext(ctx, nil)
		if err != nil {
			return e.classify(ctx, err)
		}
		defer rows.Close()
		st, err = e.stream(ctx, rows, maxRows, text, w)
		return err
	})
	st.Elapsed = time.Since(start)
	return st, err
}

// stream writes rows to w. text, if set, has the type names of the
// columns that come as JSON text.
func (e *Engine) stream(ctx context.Context, rows driver.Rows, maxRows uint64, text []Column, w ResultWriter) (Stats, error) {
	cols := columnsOfRows(rows)
	for i, c := range text {
		if c.Type != "" && i < len(cols) {
			cols[i].Type, cols[i].jsonText = c.Type, true
		}
	}
	vals := make([]driver.Value, len(cols))
	var st Stats
	begun := false
	for {
		err := rows.Next(vals)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, e.classify(ctx, err)
		}
		if !begun {
			if err := w.Begin(cols); err != nil {
				return st, err
			}
			begun = true
		}
		if st.Rows == maxRows {
			st.Truncated = true
			break
		}
		if err := w.Row(vals); err != nil {
			return st, err
		}
		st.Rows++
	}
	if !begun {
		if err := w.Begin(cols); err != nil {
			return st, err
		}
	}
	return st, w.End(st.Truncated)
}

// prepareErr maps an error of preparing a statement, where DuckDB parses,
// binds and plans it: the query's (ErrInvalid; a file it names that
// cannot be read too) unless the context ended or DuckDB failed in
// itself or ran out of memory (classify).
func (e *Engine) prepareErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return e.classify(ctx, err)
	}
	var de *duckdb.Error
	if errors.As(err, &de) {
		switch de.Type {
		case duckdb.ErrorTypeInternal, duckdb.ErrorTypeFatal, duckdb.ErrorTypeOutOfMemory, duckdb.ErrorTypeInterrupt:
			return e.classify(ctx, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

// classify maps a DuckDB or context error to the package's errors. An
// "Invalid Error" while a query runs is DuckDB finding data it cannot
// decode (a lake file damaged at rest: "TProtocolException: Invalid
// data"), the server's failure rather than the query's; a query's own
// mistakes are the other types ("Invalid Input", "Conversion", ...).
func (e *Engine) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return e.ctxErr(ctx, err)
	}
	var de *duckdb.Error
	if errors.As(err, &de) {
		switch de.Type {
		case duckdb.ErrorTypeOutOfMemory:
			return fmt.Errorf("%w: %v", ErrResources, err)
		case duckdb.ErrorTypeInterrupt:
			return fmt.Errorf("%w: %v", ErrCanceled, err)
		case duckdb.ErrorTypeFatal, duckdb.ErrorTypeInternal, duckdb.ErrorTypeConnection, duckdb.ErrorTypeIO, duckdb.ErrorTypeInvalid:
			return err
		default:
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return err
}

func (e *Engine) ctxErr(ctx context.Context, err error) error {
	if errors.Is(err, ErrBusy) {
		return fmt.Errorf("%w: no free query slot before the deadline", ErrBusy)
	}
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, ErrTimeout):
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	case errors.Is(cause, ErrResources):
		return cause
	}
	return fmt.Errorf("%w: %v", ErrCanceled, cause)
}

package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// Config sets the engine's resources and the bounds of user queries.
type Config struct {
	// DataDir is the only directory user SQL may read from. It must contain
	// the lake.
	DataDir string
	// Threads is DuckDB's worker thread count; 0 means one per core.
	Threads int
	// MemoryLimit is DuckDB's memory limit, such as "2GB"; "" means
	// DuckDB's default (80% of RAM).
	MemoryLimit string
	// MaxConcurrent bounds queries running at once; more wait for a slot
	// until their deadline.
	MaxConcurrent int
	// DefaultRows and MaxRows bound the rows a query returns when it asks
	// for none and at most.
	DefaultRows, MaxRows uint64
	// DefaultTimeout and MaxTimeout bound a query's run time when it asks
	// for none and at most.
	DefaultTimeout, MaxTimeout time.Duration
}

// DefaultConfig returns bounds suited to an interactive endpoint.
func DefaultConfig() Config {
	return Config{
		MaxConcurrent:  4,
		DefaultRows:    10_000,
		MaxRows:        1_000_000,
		DefaultTimeout: 30 * time.Second,
		MaxTimeout:     10 * time.Minute,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("query: DataDir is required")
	case c.Threads < 0:
		return fmt.Errorf("query: Threads must not be negative, got %d", c.Threads)
	case c.MaxConcurrent < 1:
		return fmt.Errorf("query: MaxConcurrent must be positive, got %d", c.MaxConcurrent)
	case c.DefaultRows < 1 || c.MaxRows < c.DefaultRows:
		return fmt.Errorf("query: want 1 <= DefaultRows (%d) <= MaxRows (%d)", c.DefaultRows, c.MaxRows)
	case c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout:
		return fmt.Errorf("query: want 0 < DefaultTimeout (%s) <= MaxTimeout (%s)", c.DefaultTimeout, c.MaxTimeout)
	case strings.ContainsAny(c.MemoryLimit, "'\\"):
		return fmt.Errorf("query: invalid MemoryLimit %q", c.MemoryLimit)
	}
	return nil
}

const hotTable = "weir_hot"

// reservedViews are names a stream view may not take.
var reservedViews = []string{"logs", hotTable}

// Engine runs SQL over the lake and the staged records. It implements
// sink.Observer. All methods are safe for concurrent use.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	db    *sql.DB
	slots chan struct{}

	// mu serialises writes to the catalog: appends to the memory table and
	// view changes. Queries never take it.
	mu      sync.Mutex
	conn    *sql.Conn
	files   map[string][]string // published file paths by stream (default tenant)
	streams map[string]bool     // streams that have a view
	hotCols []hotColumn
}

// Open starts an in-memory DuckDB database, creates the memory table and
// the views, and locks the database down for user SQL.
func Open(cfg Config, log *slog.Logger) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("query: data dir: %w", err)
	}
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, fmt.Errorf("query: open duckdb: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(cfg.MaxConcurrent + 1)
	db.SetMaxIdleConns(cfg.MaxConcurrent + 1)
	e := &Engine{
		cfg:     cfg,
		log:     log,
		db:      db,
		slots:   make(chan struct{}, cfg.MaxConcurrent),
		files:   map[string][]string{},
		streams: map[string]bool{},
	}
	if err := e.init(dataDir); err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

func (e *Engine) init(dataDir string) error {
	ctx := context.Background()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("query: connect: %w", err)
	}
	e.conn = conn
	e.hotCols = hotColumns()
	var ddl strings.Builder
	ddl.WriteString("CREATE TABLE " + hotTable + " (")
	for i, c := range e.hotCols {
		if i > 0 {
			ddl.WriteString(", ")
		}
		ddl.WriteString(quoteIdent(c.name) + " " + c.sqlType)
	}
	ddl.WriteString(")")
	stmts := []string{ddl.String(), "SET TimeZone = 'UTC'"}
	if e.cfg.Threads > 0 {
		stmts = append(stmts, fmt.Sprintf("SET threads = %d", e.cfg.Threads))
	}
	if e.cfg.MemoryLimit != "" {
		stmts = append(stmts, fmt.Sprintf("SET memory_limit = '%s'", e.cfg.MemoryLimit))
	}
	// The sandbox: these settings are global, so they bind every
	// connection, and lock_configuration stops user SQL from undoing them.
	stmts = append(stmts,
		"SET allowed_directories = ["+quoteString(dataDir+string(filepath.Separator))+"]",
		"SET enable_external_access = false",
		"SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false",
		"SET lock_configuration = true",
	)
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("query: %s: %w", s, err)
		}
	}
	return e.rebuildViewsLocked(ctx, nil)
}

// Close releases the database. Queries still running fail.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if e.conn != nil {
		errs = append(errs, e.conn.Close())
		e.conn = nil
	}
	errs = append(errs, e.db.Close())
	return errors.Join(errs...)
}

// AddFiles makes already published files visible, such as those found in
// the lake at start-up. Files of other tenants than the default one are
// kept out of the views.
func (e *Engine) AddFiles(files []sink.FileInfo) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range files {
		e.addFileLocked(f)
	}
	streams := make([]string, 0, len(e.files))
	for s := range e.files {
		streams = append(streams, s)
	}
	return e.rebuildViewsLocked(context.Background(), streams)
}

func (e *Engine) addFileLocked(f sink.FileInfo) {
	if f.Partition.Tenant != record.DefaultTenant {
		return
	}
	e.files[f.Partition.Stream] = append(e.files[f.Partition.Stream], f.Path)
}

// Staged adds the rows of rec, staged into the unpublished file f, to the
// memory table. It implements sink.Observer.
func (e *Engine) Staged(f sink.FileInfo, rec arrow.RecordBatch) error {
	if f.Partition.Tenant != record.DefaultTenant {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return errors.New("query: engine closed")
	}
	ctx := context.Background()
	if !e.streams[f.Partition.Stream] {
		if err := e.rebuildViewsLocked(ctx, []string{f.Partition.Stream}); err != nil {
			return err
		}
	}
	cols, err := e.hotSources(f, rec)
	if err != nil {
		return err
	}
	return e.conn.Raw(func(dc any) error {
		app, err := duckdb.NewAppenderFromConn(dc.(driver.Conn), "", hotTable)
		if err != nil {
			return fmt.Errorf("query: appender: %w", err)
		}
		row := make([]driver.Value, len(cols))
		n := int(rec.NumRows())
		for i := 0; i < n; i++ {
			for j, c := range cols {
				row[j] = c(i)
			}
			if err := app.AppendRow(row...); err != nil {
				app.Close()
				return fmt.Errorf("query: append staged row: %w", err)
			}
		}
		if err := app.Close(); err != nil {
			return fmt.Errorf("query: flush staged rows: %w", err)
		}
		return nil
	})
}

// Published swaps the staged rows of f for the file itself, atomically for
// every query. It implements sink.Observer.
func (e *Engine) Published(f sink.FileInfo) error {
	if f.Partition.Tenant != record.DefaultTenant {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return errors.New("query: engine closed")
	}
	e.addFileLocked(f)
	ctx := context.Background()
	tx, err := e.conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("query: begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+hotTable+" WHERE _file = ?", f.ID); err != nil {
		return fmt.Errorf("query: drop staged rows of %s: %w", f.ID, err)
	}
	for _, s := range e.viewDDLLocked([]string{f.Partition.Stream}) {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("query: %s: %w", s, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("query: commit publish of %s: %w", f.ID, err)
	}
	return nil
}

// rebuildViewsLocked recreates the views, adding views for newStreams.
func (e *Engine) rebuildViewsLocked(ctx context.Context, newStreams []string) error {
	for _, s := range e.viewDDLLocked(newStreams) {
		if _, err := e.conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("query: %s: %w", s, err)
		}
	}
	return nil
}

// viewColumns is the column list of the logs view, in order.
var viewColumns = []string{
	"stream", "timestamp", "observed_timestamp", "severity_number", "severity_text", "body",
	"attributes", "resource", "service_name", "trace_id", "span_id", "flags",
	"_partition", "_offset", "date", "hour",
}

// viewDDLLocked returns the statements that recreate the logs view and
// the views of the given streams, adding those streams to the known set.
// Each stream view reads its own files only, so it does not depend on the
// logs view.
func (e *Engine) viewDDLLocked(streams []string) []string {
	for _, s := range streams {
		e.streams[s] = true
	}
	var all []string
	for _, ps := range e.files {
		all = append(all, ps...)
	}
	out := []string{"CREATE OR REPLACE VIEW logs AS " + viewQuery("", all)}
	for _, s := range streams {
		if slices.Contains(reservedViews, s) {
			continue
		}
		out = append(out, fmt.Sprintf("CREATE OR REPLACE VIEW %s AS %s", quoteIdent(s), viewQuery(s, e.files[s])))
	}
	return out
}

// viewQuery is the SELECT behind a view: the memory table's rows (of one
// stream, if stream is set) and the given Parquet files.
func viewQuery(stream string, paths []string) string {
	cols := make([]string, len(viewColumns))
	for i, c := range viewColumns {
		cols[i] = quoteIdent(c)
	}
	list := strings.Join(cols, ", ")
	var q strings.Builder
	fmt.Fprintf(&q, "SELECT %s FROM %s", list, hotTable)
	if stream != "" {
		q.WriteString(" WHERE stream = " + quoteString(stream))
	}
	if len(paths) > 0 {
		paths = slices.Clone(paths)
		sort.Strings(paths)
		q.WriteString(" UNION ALL BY NAME SELECT " + list + " FROM read_parquet([")
		for i, p := range paths {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(quoteString(p))
		}
		q.WriteString("], hive_partitioning = true, union_by_name = true, " +
			"hive_types = {'tenant': VARCHAR, 'stream': VARCHAR, 'date': DATE, 'hour': INTEGER})")
	}
	return q.String()
}

// Streams returns the streams that have data, sorted.
func (e *Engine) Streams() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.streams))
	for s := range e.streams {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// hotColumn is one column of the memory table.
type hotColumn struct {
	name    string
	sqlType string
}

// hotColumns lists the memory table's columns: the partition columns that
// the lake keeps in directory names, the staging file, and the log schema.
func hotColumns() []hotColumn {
	return []hotColumn{
		{"tenant", "VARCHAR"}, {"stream", "VARCHAR"}, {"date", "DATE"}, {"hour", "INTEGER"}, {"_file", "VARCHAR"},
		{"timestamp", "TIMESTAMPTZ"}, {"observed_timestamp", "TIMESTAMPTZ"},
		{"severity_number", "INTEGER"}, {"severity_text", "VARCHAR"}, {"body", "VARCHAR"},
		{"attributes", "MAP(VARCHAR, VARCHAR)"}, {"resource", "MAP(VARCHAR, VARCHAR)"},
		{"service_name", "VARCHAR"}, {"trace_id", "VARCHAR"}, {"span_id", "VARCHAR"},
		{"flags", "UINTEGER"}, {"_partition", "INTEGER"}, {"_offset", "BIGINT"},
	}
}

// hotSources returns, for each memory table column, a function giving the
// value of row i of rec.
func (e *Engine) hotSources(f sink.FileInfo, rec arrow.RecordBatch) ([]func(int) driver.Value, error) {
	p := f.Partition
	hour := p.Hour.UTC()
	date := time.Date(hour.Year(), hour.Month(), hour.Day(), 0, 0, 0, 0, time.UTC)
	constant := func(v driver.Value) func(int) driver.Value { return func(int) driver.Value { return v } }
	out := make([]func(int) driver.Value, len(e.hotCols))
	for j, c := range e.hotCols {
		switch c.name {
		case "tenant":
			out[j] = constant(p.Tenant)
		case "stream":
			out[j] = constant(p.Stream)
		case "date":
			out[j] = constant(date)
		case "hour":
			out[j] = constant(int32(hour.Hour()))
		case "_file":
			out[j] = constant(f.ID)
		default:
			idx := rec.Schema().FieldIndices(c.name)
			if len(idx) != 1 {
				return nil, fmt.Errorf("query: staged batch has no column %q", c.name)
			}
			get, err := arrowGetter(rec.Column(idx[0]))
			if err != nil {
				return nil, fmt.Errorf("query: column %q: %w", c.name, err)
			}
			out[j] = get
		}
	}
	return out, nil
}

// arrowGetter returns a function giving the value of row i of col as the
// Go type the DuckDB appender wants.
func arrowGetter(col arrow.Array) (func(int) driver.Value, error) {
	nullable := func(f func(int) driver.Value) func(int) driver.Value {
		return func(i int) driver.Value {
			if col.IsNull(i) {
				return nil
			}
			return f(i)
		}
	}
	switch a := col.(type) {
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return nullable(func(i int) driver.Value { return a.Value(i).ToTime(unit) }), nil
	case *array.String:
		return nullable(func(i int) driver.Value { return a.Value(i) }), nil
	case *array.Int32:
		return nullable(func(i int) driver.Value { return a.Value(i) }), nil
	case *array.Int64:
		return nullable(func(i int) driver.Value { return a.Value(i) }), nil
	case *array.Uint32:
		return nullable(func(i int) driver.Value { return a.Value(i) }), nil
	case *array.Map:
		keys, ok1 := a.Keys().(*array.String)
		items, ok2 := a.Items().(*array.String)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("unsupported map type %s", a.DataType())
		}
		return nullable(func(i int) driver.Value {
			var m duckdb.OrderedMap
			start, end := a.ValueOffsets(i)
			for k := start; k < end; k++ {
				m.Set(keys.Value(int(k)), items.Value(int(k)))
			}
			return m
		}), nil
	}
	return nil, fmt.Errorf("unsupported type %s", col.DataType())
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

package query

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform"
)

// Config sets the engine's resources and the bounds of user queries.
type Config struct {
	// DataDir holds the engine's staging and spill directories. It must
	// contain the lake.
	DataDir string
	// LakeDir is the lake's root, which user SQL may read besides the
	// staged rows; "" means DataDir. Nothing else under DataDir (the
	// write-ahead log, state files) is readable by user SQL.
	LakeDir string
	// Threads is DuckDB's worker thread count; 0 means one per core.
	Threads int
	// MemoryLimit is DuckDB's memory limit for all queries together,
	// such as "2GB"; past it a query spills to disk or fails with
	// ErrResources. It must be set: DuckDB's own default, 80% of RAM, is
	// no bound for a shared server.
	MemoryLimit string
	// MaxSpill bounds the disk that queries may spill to, under
	// DataDir's tmp/query folder, such as "4GB".
	MaxSpill string
	// MaxConcurrent bounds user queries running at once; more wait for a
	// slot until their deadline. System queries (Options.System) have one
	// more slot of their own, so slow user queries never lock out the
	// UI's schema.
	MaxConcurrent int
	// DefaultRows and MaxRows bound the rows a query returns when it asks
	// for none and at most.
	DefaultRows, MaxRows uint64
	// DefaultTimeout and MaxTimeout bound a query's run time when it asks
	// for none and at most.
	DefaultTimeout, MaxTimeout time.Duration
	// Streams have views from the start, empty until records arrive (such
	// as the dead-letter stream, so that queries of it never fail).
	// Other streams get theirs with their first records.
	Streams []string
}

// DefaultConfig returns bounds suited to an interactive endpoint.
func DefaultConfig() Config {
	return Config{
		MemoryLimit:    "1GB",
		MaxSpill:       "4GB",
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
	case c.MemoryLimit == "" || strings.ContainsAny(c.MemoryLimit, "'\\"):
		return fmt.Errorf("query: invalid MemoryLimit %q", c.MemoryLimit)
	case c.MaxSpill == "" || strings.ContainsAny(c.MaxSpill, "'\\"):
		return fmt.Errorf("query: invalid MaxSpill %q", c.MaxSpill)
	}
	return nil
}

// stagingDir is where the engine keeps staged rows, under the data
// directory, in the lake's partition layout.
const stagingDir = "staging"

// reservedViews are names a stream view may not take.
var reservedViews = []string{"logs"}

// Engine runs SQL over the lake and the staged records. It implements
// sink.Observer. All methods are safe for concurrent use.
//
// Staged rows are kept as small Parquet segments under the data
// directory's staging/ folder, so DuckDB reads memory-fresh and published
// data the same, fast, way. Views list their files explicitly; a publish
// swaps a file's segments for the file in one view change, and segments
// are deleted only once no query that may have seen them is running.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	db      *sql.DB
	slots   chan struct{}
	system  chan struct{} // the slot of system queries
	staging string

	// mu guards the catalog below and serialises view changes. Queries
	// take it only briefly, to register and unregister.
	mu      sync.Mutex
	conn    *sql.Conn
	files   map[string][]string    // published file paths by stream (default tenant)
	staged  map[string]*stagedFile // by sink file ID
	streams map[string]bool        // streams that have a view
	wide    map[string]bool        // streams with files of promoted attribute columns
	gen     uint64                 // bumped by every change that retires files
	active  map[uint64]int         // running queries by the gen they started at
	retired []retiredSegment       // segments to delete once unseen
	seq     atomic.Uint64          // names segments

	// View changes are applied by a background loop, at a bounded rate:
	// rebuilding a view costs time in the number of its files, so one
	// rebuild per change would be quadratic when many small files come
	// at once (a backfill spread over many hours). Changes are recorded
	// under mu and applied together, so a publish still swaps a file's
	// segments for the file in one view change.
	dirty    map[string]bool // streams whose views are out of date
	retiring []*stagedFile   // out of the catalog; retire once the views drop them
	applied  uint64          // changes applied so far
	changes  uint64          // changes recorded so far
	settled  *sync.Cond      // signalled after each apply, on mu
	kick     chan struct{}
	stop     chan struct{}
	loopDone chan struct{}
}

// minViewInterval spaces view rebuilds; a rebuild that took d is followed
// by a pause of at least 2d, which bounds rebuilding to a third of a core.
const minViewInterval = 20 * time.Millisecond

// stagedFile is the staged rows of one unpublished sink file.
type stagedFile struct {
	stream   string
	segments []string
}

type retiredSegment struct {
	path string
	gen  uint64 // visible to queries that started before gen
}

// Open starts an in-memory DuckDB database, creates the views and locks the
// database down for user SQL. It empties the staging directory: staged
// rows of a previous run belong to files that were never published.
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
	staging := filepath.Join(dataDir, stagingDir)
	if err := os.RemoveAll(staging); err != nil {
		return nil, fmt.Errorf("query: clear staging: %w", err)
	}
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, fmt.Errorf("query: staging: %w", err)
	}
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, fmt.Errorf("query: open duckdb: %w", err)
	}
	db := sql.OpenDB(connector)
	// One connection for each slot, the system slot and the catalog.
	db.SetMaxOpenConns(cfg.MaxConcurrent + 2)
	db.SetMaxIdleConns(cfg.MaxConcurrent + 2)
	e := &Engine{
		cfg:     cfg,
		log:     log,
		db:      db,
		slots:   make(chan struct{}, cfg.MaxConcurrent),
		system:  make(chan struct{}, 1),
		staging: staging,
		files:   map[string][]string{},
		staged:  map[string]*stagedFile{},
		streams: map[string]bool{},
		wide:    map[string]bool{},
		active:  map[uint64]int{},
	}
	e.dirty = map[string]bool{}
	e.settled = sync.NewCond(&e.mu)
	e.kick = make(chan struct{}, 1)
	e.stop = make(chan struct{})
	e.loopDone = make(chan struct{})
	if err := e.init(dataDir); err != nil {
		db.Close()
		return nil, err
	}
	go e.viewLoop()
	return e, nil
}

// viewLoop applies recorded view changes until Close.
func (e *Engine) viewLoop() {
	defer close(e.loopDone)
	for {
		select {
		case <-e.kick:
		case <-e.stop:
			return
		}
		start := time.Now()
		e.mu.Lock()
		e.applyPendingLocked()
		e.mu.Unlock()
		pause := max(minViewInterval, 2*time.Since(start))
		select {
		case <-time.After(pause):
		case <-e.stop:
			return
		}
	}
}

// noteColumns remembers that stream has a file with promoted attribute
// columns if it has more than the log schema's; its views then read
// their files by name. Called with mu held.
func (e *Engine) noteColumns(stream string, columns int) {
	if columns > len(transform.Schema().Fields()) {
		e.wide[stream] = true
	}
}

// changedLocked records a change to the views of stream and wakes the
// view loop.
func (e *Engine) changedLocked(stream string) {
	e.dirty[stream] = true
	e.changes++
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// applyPendingLocked rebuilds the out-of-date views and then retires the
// segments they no longer list. On error the changes stay pending and the
// next kick retries them.
func (e *Engine) applyPendingLocked() {
	if e.conn == nil || len(e.dirty) == 0 {
		return
	}
	streams := make([]string, 0, len(e.dirty))
	for s := range e.dirty {
		streams = append(streams, s)
	}
	target := e.changes
	if err := e.applyViewsLocked(context.Background(), streams); err != nil {
		e.log.Error("query: update views; retrying", "err", err)
		select {
		case e.kick <- struct{}{}:
		default:
		}
		return
	}
	clear(e.dirty)
	for _, sf := range e.retiring {
		e.retireLocked(sf)
	}
	e.retiring = e.retiring[:0]
	e.applied = target
	e.settled.Broadcast()
}

// Sync returns once every change made before the call (records staged,
// files published or abandoned) is visible to queries, or ctx is done.
func (e *Engine) Sync(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.settled.Broadcast()
	})
	defer stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	target := e.changes
	for e.applied < target && e.conn != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.settled.Wait()
	}
	if e.conn == nil {
		return errors.New("query: engine closed")
	}
	return nil
}

func (e *Engine) init(dataDir string) error {
	ctx := context.Background()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("query: connect: %w", err)
	}
	e.conn = conn
	// Views read files by name (union_by_name), which needs every file's
	// footer at bind time: keep footers cached.
	stmts := []string{"SET TimeZone = 'UTC'", "SET parquet_metadata_cache = true"}
	if e.cfg.Threads > 0 {
		stmts = append(stmts, fmt.Sprintf("SET threads = %d", e.cfg.Threads))
	}
	spill := filepath.Join(dataDir, "tmp", "query")
	if err := os.RemoveAll(spill); err != nil {
		return fmt.Errorf("query: clear spill directory: %w", err)
	}
	if err := os.MkdirAll(spill, 0o755); err != nil {
		return fmt.Errorf("query: spill directory: %w", err)
	}
	lakeDir := dataDir
	if e.cfg.LakeDir != "" {
		if lakeDir, err = filepath.Abs(e.cfg.LakeDir); err != nil {
			return fmt.Errorf("query: lake dir: %w", err)
		}
	}
	// The sandbox: these settings are global, so they bind every
	// connection, and lock_configuration stops user SQL from undoing them.
	// User SQL may read the lake and the staged rows and nothing else;
	// what it may run at all is decided by vet.
	stmts = append(stmts,
		fmt.Sprintf("SET memory_limit = '%s'", e.cfg.MemoryLimit),
		"SET temp_directory = "+quoteString(spill),
		fmt.Sprintf("SET max_temp_directory_size = '%s'", e.cfg.MaxSpill),
		"SET allowed_directories = ["+quoteString(lakeDir+string(filepath.Separator))+", "+quoteString(e.staging+string(filepath.Separator))+"]",
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
	return e.applyViewsLocked(ctx, e.cfg.Streams)
}

// Close releases the database and removes the staging segments. Queries
// still running fail.
func (e *Engine) Close() error {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.loopDone
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.settled.Broadcast()
	var errs []error
	if e.conn != nil {
		errs = append(errs, e.conn.Close())
		e.conn = nil
	}
	errs = append(errs, e.db.Close())
	errs = append(errs, os.RemoveAll(e.staging))
	return errors.Join(errs...)
}

// AddFiles makes already published files visible, such as those found in
// the lake at start-up. Files of other tenants than the default one are
// kept out of the views.
func (e *Engine) AddFiles(files []sink.FileInfo) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var streams []string
	for _, f := range files {
		if f.Partition.Tenant != record.DefaultTenant {
			continue
		}
		e.files[f.Partition.Stream] = append(e.files[f.Partition.Stream], f.Path)
		e.noteColumns(f.Partition.Stream, f.Columns)
		if !slices.Contains(streams, f.Partition.Stream) {
			streams = append(streams, f.Partition.Stream)
		}
	}
	return e.applyViewsLocked(context.Background(), streams)
}

// Staged makes the rows of seg, staged into the unpublished file f,
// visible to queries: it hard-links the segment (a complete Parquet file)
// under staging/, copying it only where a link is impossible, and adds it
// to the views within moments (see Sync). The rows are not encoded again.
// It implements sink.Observer.
func (e *Engine) Staged(f sink.FileInfo, seg sink.Segment) error {
	p := f.Partition
	if p.Tenant != record.DefaultTenant {
		return nil
	}
	dir := filepath.Join(e.staging, p.Dir())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("query: staging: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.parquet", f.ID, e.seq.Add(1)))
	if err := linkOrCopy(seg.Path, path); err != nil {
		os.Remove(path)
		return fmt.Errorf("query: stage rows of %s: %w", f.ID, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		os.Remove(path)
		return errors.New("query: engine closed")
	}
	sf := e.staged[f.ID]
	if sf == nil {
		sf = &stagedFile{stream: p.Stream}
		e.staged[f.ID] = sf
	}
	sf.segments = append(sf.segments, path)
	e.noteColumns(p.Stream, f.Columns)
	e.changedLocked(p.Stream)
	return nil
}

// linkOrCopy makes dst a hard link to src, or a copy of it where links
// are not possible (another file system).
func linkOrCopy(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil {
		return nil
	}
	in, oerr := os.Open(src)
	if oerr != nil {
		return errors.Join(err, oerr)
	}
	defer in.Close()
	out, cerr := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Published swaps the staged segments of f for the file itself, in one
// view change (within moments, see Sync), so every query sees its rows
// exactly once. It implements sink.Observer.
func (e *Engine) Published(f sink.FileInfo) error {
	p := f.Partition
	if p.Tenant != record.DefaultTenant {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return errors.New("query: engine closed")
	}
	sf := e.staged[f.ID]
	delete(e.staged, f.ID)
	e.files[p.Stream] = append(e.files[p.Stream], f.Path)
	e.noteColumns(p.Stream, f.Columns)
	if sf != nil {
		e.retiring = append(e.retiring, sf)
	}
	e.changedLocked(p.Stream)
	return nil
}

// Replaced swaps the files of old for f, their compacted replacement, in
// one view change (within moments, see Sync), and deletes them once no
// running query can see them. It implements sink.Observer.
func (e *Engine) Replaced(f sink.FileInfo, old []sink.FileInfo) {
	p := f.Partition
	e.mu.Lock()
	defer e.mu.Unlock()
	if p.Tenant != record.DefaultTenant || e.conn == nil {
		for _, o := range old {
			if err := os.Remove(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				e.log.Warn("remove compacted file", "path", o.Path, "err", err)
			}
		}
		return
	}
	gone := make(map[string]bool, len(old))
	sf := &stagedFile{stream: p.Stream}
	for _, o := range old {
		gone[o.Path] = true
		sf.segments = append(sf.segments, o.Path)
	}
	e.files[p.Stream] = append(slices.DeleteFunc(e.files[p.Stream], func(path string) bool { return gone[path] }), f.Path)
	e.noteColumns(p.Stream, f.Columns)
	// Retired like staging links: deleted once the views no longer list
	// them and no query that started before is running.
	e.retiring = append(e.retiring, sf)
	e.changedLocked(p.Stream)
}

// Abandoned forgets the staged rows of f, which will never be published.
// It implements sink.Observer.
func (e *Engine) Abandoned(f sink.FileInfo) {
	if f.Partition.Tenant != record.DefaultTenant {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	sf := e.staged[f.ID]
	if sf == nil || e.conn == nil {
		return
	}
	delete(e.staged, f.ID)
	e.retiring = append(e.retiring, sf)
	e.changedLocked(f.Partition.Stream)
}

// retireLocked schedules the segments of sf for deletion once no running
// query can see them. The views must no longer list them.
func (e *Engine) retireLocked(sf *stagedFile) {
	e.gen++
	for _, s := range sf.segments {
		e.retired = append(e.retired, retiredSegment{path: s, gen: e.gen})
	}
	e.sweepLocked()
}

// enter registers a running query; the returned func unregisters it.
// Segments retired after a query started are kept until it ends.
func (e *Engine) enter() func() {
	e.mu.Lock()
	g := e.gen
	e.active[g]++
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		if e.active[g]--; e.active[g] == 0 {
			delete(e.active, g)
		}
		e.sweepLocked()
		e.mu.Unlock()
	}
}

// sweepLocked deletes the retired segments no running query can see.
func (e *Engine) sweepLocked() {
	oldest := e.gen
	for g := range e.active {
		oldest = min(oldest, g)
	}
	keep := e.retired[:0]
	for _, r := range e.retired {
		if r.gen <= oldest {
			if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				e.log.Warn("remove staging segment", "path", r.path, "err", err)
			}
			continue
		}
		keep = append(keep, r)
	}
	e.retired = keep
}

// applyViewsLocked recreates the logs view and the views of the given
// streams in one transaction.
func (e *Engine) applyViewsLocked(ctx context.Context, streams []string) error {
	for _, s := range streams {
		e.streams[s] = true
	}
	var all []string
	for _, ps := range e.files {
		all = append(all, ps...)
	}
	for _, sf := range e.staged {
		all = append(all, sf.segments...)
	}
	anyWide := false
	for _, w := range e.wide {
		anyWide = anyWide || w
	}
	stmts := []string{"CREATE OR REPLACE VIEW logs AS " + viewQuery(all, anyWide)}
	for _, s := range streams {
		if slices.Contains(reservedViews, s) {
			continue
		}
		paths := slices.Clone(e.files[s])
		for _, sf := range e.staged {
			if sf.stream == s {
				paths = append(paths, sf.segments...)
			}
		}
		stmts = append(stmts, fmt.Sprintf("CREATE OR REPLACE VIEW %s AS %s", quoteIdent(s), viewQuery(paths, e.wide[s])))
	}
	tx, err := e.conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("query: begin: %w", err)
	}
	defer tx.Rollback()
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("query: update views: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("query: update views: %w", err)
	}
	return nil
}

// emptyView has the views' columns and no rows, for views with no files.
const emptyView = `SELECT NULL::VARCHAR AS "stream", NULL::TIMESTAMPTZ AS "timestamp",
NULL::TIMESTAMPTZ AS "observed_timestamp", NULL::INTEGER AS "severity_number",
NULL::VARCHAR AS "severity_text", NULL::VARCHAR AS "body",
NULL::MAP(VARCHAR, VARCHAR) AS "attributes", NULL::MAP(VARCHAR, VARCHAR) AS "resource",
NULL::VARCHAR AS "service_name", NULL::VARCHAR AS "trace_id", NULL::VARCHAR AS "span_id",
NULL::UINTEGER AS "flags", NULL::INTEGER AS "_partition", NULL::BIGINT AS "_offset",
NULL::DATE AS "date", NULL::INTEGER AS "hour" WHERE false`

// viewQuery is the SELECT behind a view over the given Parquet files:
// the columns of emptyView in that order, with the attribute columns
// that files promoted (transform.ColumnPrefix) after _offset. With wide,
// files may differ in those columns and DuckDB reads them together by
// name, NULL where a file lacks one; that costs a look at every file's
// footer, so views of streams without such columns go by position.
func viewQuery(paths []string, wide bool) string {
	if len(paths) == 0 {
		return emptyView
	}
	paths = slices.Clone(paths)
	sort.Strings(paths)
	var q strings.Builder
	q.WriteString(`SELECT "stream", * EXCLUDE ("tenant", "stream", "date", "hour"), "date", "hour" FROM system.main.read_parquet([`)
	for i, p := range paths {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(quoteString(p))
	}
	q.WriteString("], hive_partitioning = true, ")
	if wide {
		q.WriteString("union_by_name = true, ")
	}
	q.WriteString("hive_types = {'tenant': VARCHAR, 'stream': VARCHAR, 'date': DATE, 'hour': INTEGER})")
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

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

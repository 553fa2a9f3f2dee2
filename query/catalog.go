package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/sink"
)

// reservedViews are names a stream view may not take.
var reservedViews = []string{"logs", countsView, messagesView}

// catalog is one tenant's query database: an in-memory DuckDB whose views
// read that tenant's published files and staged segments, and which may
// read nothing else (allowed_directories names the tenant's lake and
// staging folders, and the folder its own Parquet answers are written
// to). Tenants never share a database, so no statement, catalog function
// or file path of one can reach another's data.
//
// Staged rows are kept as small Parquet segments under the data
// directory's staging/ folder, so DuckDB reads memory-fresh and published
// data the same, fast, way. Views list published files by name and an
// unpublished file's segments by a glob of their names (segmentGlobs), so
// the view text does not grow with the segments and a segment is visible
// as soon as it is linked into place, without a view change. A publish
// swaps a file's globs for the file in one view change, and segments are
// deleted only once no query that may have seen them is running.
type catalog struct {
	cfg     *Config
	log     *slog.Logger
	tenant  string
	db      *sql.DB
	staging string // the engine's staging root; this tenant's is staging/tenant=<id>
	// results is the directory DuckDB writes Parquet answers to (see
	// columnar), inside the tenant's spill directory. It is one
	// of the sandbox's allowed directories: user SQL could read the
	// tenant's own answers there, never write (vet allows no COPY).
	results string
	// globs is whether views may read segments by glob: false when the
	// staging root's path has glob metacharacters, and views then list
	// every segment, rebuilt at each.
	globs bool
	// ownDirs are the tenant's lake and staging folders, with the names
	// errors call them by (fault.go).
	ownDirs []ownDir

	// ddl serialises the view DDL, so views change in the order of the
	// catalog states they were built from. It is taken before mu and held
	// while the DDL runs; mu is not, so staging rows (the sink's write
	// path) and starting queries never wait for DDL.
	ddl sync.Mutex
	// compressDue is set, under ddl, while rows a change added to the
	// rollup tables or deleted wait for a checkpoint (compress).
	compressDue atomic.Bool
	// mu guards the catalog below. Queries take it only briefly, to
	// register and unregister.
	mu     sync.Mutex
	conn   *sql.Conn
	files  map[string][]string     // published file paths by stream
	rolled map[string]int64        // published files with a rollup, by path: rollupCost
	loaded map[string]loadedRollup // files whose rollups the tables hold, by path
	// lastFileID is the last file id given to a rollup load.
	lastFileID int64
	// suspect are files whose rollup was in a load that failed, with the
	// most files a change may load with it since: half the failed load's
	// (suspectLoadLocked). gaveUp are those whose rollup failed alone,
	// counted from their rows until retried (retryRollupsLocked), and
	// rollupRetry the first wait before a retry (doubling).
	suspect     map[string]int
	gaveUp      map[string]gaveUpRollup
	rollupRetry time.Duration
	// deferLoads is set while a change leaves every rollup to later ones.
	deferLoads bool
	load       rollupLoad // the change of the view change being made
	// loadBudget bounds the rollup counts one change loads:
	// rollupLoadBudget, smaller in tests.
	loadBudget int64
	viewDefs   map[string]string      // the hot and logs views' SELECTs as last committed, by name
	staged     map[string]*stagedFile // by sink file ID
	streams    map[string]bool        // streams that have a view (or whose DDL is running: ddl is held)
	wanted     map[string]bool        // streams EnsureStream waits to make views of
	wide       map[string]bool        // streams with files of promoted attribute columns
	schemas    map[string]uint64      // published files' sink.FileInfo.SchemaID, by path
	// schemaFiles are the schema files of streams whose files differ in
	// their columns (schemafile.go); schemaFailed the keys whose schema
	// file could not be made, by stream, and schemaRetry how long such a
	// key waits before it is tried again.
	schemaFiles  map[string]schemaFile
	schemaFailed map[string]schemaFailure
	schemaRetry  time.Duration
	gen          uint64           // bumped by every change that retires files
	active       map[uint64]int   // running queries by the gen they started at
	retired      []retiredSegment // segments to delete once unseen
	// doomed are retired segments no query can see any more, for the
	// remover to delete without mu: a publish retires every staging
	// segment of its file at once (hundreds a minute per stream), and
	// unlinking them under mu would hold up stage, which the sink's
	// encoders call on the write path, and the view loop.
	doomed []string
	// doomedN counts the paths ever doomed and removedN those the remover
	// has deleted since (settled is signalled), for sync.
	doomedN, removedN uint64
	seq               atomic.Uint64 // names segments

	// evicted are the files kept in object storage only (evict.go), by
	// stream and ID; nEvicted counts them for queries to read without
	// mu.
	evicted  map[string]map[string]sink.FileInfo
	nEvicted atomic.Int64
	restored uint64 // changes up to the latest putting back of fetched files

	// View changes are applied by a background loop, at a bounded rate:
	// rebuilding a view costs time in the number of its files, so one
	// rebuild per change would be quadratic when many small files come
	// at once (a backfill spread over many hours). Changes are recorded
	// under mu and applied together, so a publish still swaps a file's
	// segments for the file in one view change.
	dirty map[string]bool // streams whose views are out of date
	// later are the streams with rollups left to load (loadBudget) once
	// the tables are compressed, and loadTarget the changes that load
	// them once they are resumed (resumeLoadsLocked).
	later      []string
	loadTarget uint64
	retiring   []*stagedFile // out of the catalog; retire once the views drop them
	applied    uint64        // changes applied so far
	changes    uint64        // changes recorded so far
	settled    *sync.Cond    // signalled after each apply, on mu
	kick       chan struct{}
	stop       chan struct{}
	loopDone   chan struct{}

	// The remover deletes doomed segments in the background: woken by
	// sweep, it stops at stop and closes removerDone.
	sweep       chan struct{}
	removerDone chan struct{}
}

// minViewInterval spaces view rebuilds; a rebuild that took d is followed
// by a pause of at least 2d, which bounds rebuilding to a third of a core,
// except while rollups are left to load (loadBudget): that work is
// finite, and the sooner it is done the less queries scan.
const minViewInterval = 20 * time.Millisecond

// catalogDB is the database of a tenant's DuckDB that holds its views and
// rollup tables, and every connection's default: in memory like DuckDB's
// own, but attached with COMPRESS, so that a checkpoint compresses its
// tables, which DuckDB never does in its default in-memory database
// (rollups.go). The views live there too because DuckDB lets one
// transaction write to one database only, and a view change writes the
// views and the rollup tables together.
const catalogDB = "weir"

// useCatalogDB is run on every new connection of a tenant's database.
// The first attaches catalogDB; user SQL can do neither (vet).
func useCatalogDB(e driver.ExecerContext) error {
	for _, s := range []string{"ATTACH IF NOT EXISTS ':memory:' AS " + catalogDB + " (COMPRESS)", "USE " + catalogDB} {
		if _, err := e.ExecContext(context.Background(), s, nil); err != nil {
			return fmt.Errorf("query: %s: %w", s, err)
		}
	}
	return nil
}

// stagedFile is the staged rows of one unpublished sink file.
type stagedFile struct {
	stream   string
	segments []string // every segment, for partition scans and retiring
	// prefix is the segments' path up to the kind letter (see stage).
	// narrow and wide record whether a segment of each kind has been
	// staged; the views list a kind's glob from the first view change
	// made after its first segment, and its later segments are visible
	// once linked.
	prefix       string
	narrow, wide bool
	schema       uint64 // the file's sink.FileInfo.SchemaID
}

// Segment kinds: the letter after the file ID in a staging segment's
// name. A narrow segment has exactly the log schema's columns, a wide
// one promoted attribute columns too. Views read a stream's files by
// position until it has a wide file, and by name after (viewQuery), so
// a wide segment must not match a glob the views listed while the
// stream was narrow: the two kinds have globs of their own.
const (
	narrowKind = "n"
	wideKind   = "w"
)

// segmentGlobs returns the globs (or, without globs, the paths) by which
// views read sf's segments.
func (c *catalog) segmentGlobs(sf *stagedFile) []string {
	if !c.globs {
		return sf.segments
	}
	var out []string
	if sf.narrow {
		out = append(out, sf.prefix+narrowKind+"*.parquet")
	}
	if sf.wide {
		out = append(out, sf.prefix+wideKind+"*.parquet")
	}
	return out
}

// hasGlobMeta reports whether path has characters DuckDB's glob reads as
// patterns.
func hasGlobMeta(path string) bool { return strings.ContainsAny(path, "*?[]{}\\") }

type retiredSegment struct {
	path string
	gen  uint64 // visible to queries that started before gen
}

// newCatalog starts tenant's database, creates its views and locks it
// down for user SQL. dataDir, lakeDir and staging are absolute.
func newCatalog(cfg *Config, log *slog.Logger, tenant, dataDir, lakeDir, staging string) (*catalog, error) {
	connector, err := duckdb.NewConnector("", useCatalogDB)
	if err != nil {
		return nil, fmt.Errorf("query: open duckdb: %w", err)
	}
	db := sql.OpenDB(connector)
	// One connection for each slot, the system slot and the catalog.
	db.SetMaxOpenConns(cfg.MaxConcurrent + 2)
	db.SetMaxIdleConns(cfg.MaxConcurrent + 2)
	c := &catalog{
		cfg:         cfg,
		log:         log.With("tenant", tenant),
		tenant:      tenant,
		db:          db,
		staging:     staging,
		globs:       !hasGlobMeta(staging),
		files:       map[string][]string{},
		rolled:      map[string]int64{},
		loaded:      map[string]loadedRollup{},
		suspect:     map[string]int{},
		gaveUp:      map[string]gaveUpRollup{},
		rollupRetry: rollupRetryMin,
		loadBudget:  rollupLoadBudget,
		viewDefs:    map[string]string{},
		staged:      map[string]*stagedFile{},
		streams:     map[string]bool{},
		wanted:      map[string]bool{},
		wide:        map[string]bool{},
		schemas:     map[string]uint64{},
		active:      map[uint64]int{},
		schemaFiles: map[string]schemaFile{},
		evicted:     map[string]map[string]sink.FileInfo{},

		schemaFailed: map[string]schemaFailure{},
		schemaRetry:  schemaRetry,
	}
	c.dirty = map[string]bool{}
	c.settled = sync.NewCond(&c.mu)
	c.kick = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.loopDone = make(chan struct{})
	c.sweep = make(chan struct{}, 1)
	c.removerDone = make(chan struct{})
	if err := c.init(dataDir, lakeDir); err != nil {
		db.Close()
		return nil, err
	}
	go c.viewLoop()
	go c.remover()
	return c, nil
}

// viewLoop applies recorded view changes until Close.
func (c *catalog) viewLoop() {
	defer close(c.loopDone)
	for {
		var retry, rollups <-chan time.Time
		if c.compressDue.Load() {
			retry = time.After(compressRetry)
		}
		c.mu.Lock()
		if at, ok := c.nextRollupRetryLocked(); ok {
			rollups = time.After(time.Until(at))
		}
		c.mu.Unlock()
		select {
		case <-c.kick:
		case <-retry:
		case <-rollups:
		case <-c.stop:
			return
		}
		c.mu.Lock()
		c.retryRollupsLocked(time.Now())
		c.mu.Unlock()
		start := time.Now()
		c.applyPending() // logs its error and marks the change to redo
		pause := max(minViewInterval, 2*time.Since(start))
		c.mu.Lock()
		if c.loadingLocked() {
			pause = minViewInterval
		}
		c.mu.Unlock()
		select {
		case <-time.After(pause):
		case <-c.stop:
			return
		}
	}
}

// noteColumns remembers that stream has a file with promoted attribute
// columns if it has more than the log schema's; its views then read
// their files by name. Called with mu held.
func (c *catalog) noteColumns(stream string, columns int) {
	if columns > len(logschema.Arrow().Fields()) {
		c.wide[stream] = true
	}
}

// changedLocked records a change to the views of stream and wakes the
// view loop.
func (c *catalog) changedLocked(stream string) {
	c.dirty[stream] = true
	c.changes++
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// applyPending rebuilds the out-of-date views from a snapshot of the
// catalog, with those of the wanted streams that have none yet
// (EnsureStream), then retires the staged segments that the snapshot no
// longer shows. The DDL runs without mu; changes recorded meanwhile are
// applied by the next round. A failed change is logged, its streams are
// marked for the view loop to try again, and its error is returned.
func (c *catalog) applyPending() error {
	c.ddl.Lock()
	defer c.ddl.Unlock()
	c.mu.Lock()
	if conn := c.conn; conn != nil && c.compressDue.Load() {
		c.mu.Unlock()
		done := c.compress(context.Background(), conn, false)
		c.mu.Lock()
		if done {
			c.resumeLoadsLocked()
		}
	}
	// After the change that held ddl: a stream it made is in c.streams.
	for s := range c.wanted {
		if !c.streams[s] {
			c.dirty[s] = true
		}
	}
	clear(c.wanted)
	if c.conn == nil || len(c.dirty) == 0 {
		c.mu.Unlock()
		return nil
	}
	streams := make([]string, 0, len(c.dirty))
	for s := range c.dirty {
		streams = append(streams, s)
	}
	clear(c.dirty)
	sort.Strings(streams)
	target := c.changes
	conn := c.conn
	if jobs := c.schemaJobsLocked(streams); len(jobs) > 0 {
		// Made without mu: DuckDB reads the footers of the streams' files.
		c.mu.Unlock()
		c.makeSchemaFiles(context.Background(), conn, jobs)
		c.mu.Lock()
		if c.conn == nil {
			c.mu.Unlock()
			return nil
		}
		c.setSchemaFilesLocked(jobs, time.Now())
	}
	stmts := c.viewStmtsLocked(streams)
	alters := c.load.altersTables()
	retiring := c.retiring
	c.retiring = nil
	c.mu.Unlock()

	err := execViews(context.Background(), conn, stmts)
	compressed := err == nil && c.compress(context.Background(), conn, alters)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.commitLoadLocked(err == nil)
	if compressed {
		c.resumeLoadsLocked()
	}
	if err != nil {
		c.log.Error("query: update views; retrying", "err", err)
		c.retiring = append(retiring, c.retiring...)
		c.redoLocked(streams)
		return fmt.Errorf("query: update the views of %d streams: %w", len(streams), err)
	}
	for _, sf := range retiring {
		c.retireLocked(sf)
	}
	c.applied = target
	c.settled.Broadcast()
	return nil
}

// sync: see Engine.Sync.
func (c *catalog) sync(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.settled.Broadcast()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.changes
	// Rollups left for later changes (loadBudget) are loaded too.
	for (c.applied < target || c.loadingLocked()) && c.conn != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.settled.Wait()
	}
	// And what those changes made unseen is deleted.
	doomed := c.doomedN
	for c.removedN < doomed && c.conn != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.settled.Wait()
	}
	if c.conn == nil {
		return errors.New("query: engine closed")
	}
	return nil
}

func (c *catalog) init(dataDir, lakeDir string) error {
	ctx := context.Background()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("query: connect: %w", err)
	}
	c.conn = conn
	// Every setting is GLOBAL: a plain SET of some (the time zone, the
	// footer cache) binds only this connection, not those queries run on.
	// Views read files by name (union_by_name), which needs every file's
	// footer at bind time, and every query reads footers (a compacted
	// file's carries its rollup): keep them cached.
	// DuckDB's cache of file contents is off: the lake's files are local
	// (a lake in object storage is read through weir's local cache), so
	// the kernel's page cache holds them already, and DuckDB's copy kept
	// its memory at memory_limit for good, past the share of the one
	// memory setting that counts on it only while queries need it
	// (bench/RESULTS.md, "The one memory setting, measured again").
	stmts := []string{"SET GLOBAL TimeZone = 'UTC'", "SET GLOBAL parquet_metadata_cache = true", "SET GLOBAL enable_external_file_cache = false"}
	threads := c.cfg.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	stmts = append(stmts, fmt.Sprintf("SET GLOBAL threads = %d", threads))
	spill := filepath.Join(dataDir, "tmp", "query", "tenant="+c.tenant)
	if err := os.RemoveAll(spill); err != nil {
		return fmt.Errorf("query: clear spill directory: %w", err)
	}
	c.results = filepath.Join(spill, "results")
	if err := os.MkdirAll(c.results, 0o755); err != nil {
		return fmt.Errorf("query: spill directory: %w", err)
	}
	tenantDir := "tenant=" + c.tenant + string(filepath.Separator)
	c.ownDirs = []ownDir{
		{path: filepath.Join(lakeDir, tenantDir) + string(filepath.Separator), name: "lake/"},
		{path: filepath.Join(c.staging, tenantDir) + string(filepath.Separator), name: "staging/"},
	}
	// The sandbox: these settings bind every connection of the tenant's
	// database, and lock_configuration stops user SQL from undoing them.
	// User SQL may read the tenant's lake and staged rows and nothing
	// else; what it may run at all is decided by vet.
	stmts = append(stmts,
		fmt.Sprintf("SET GLOBAL memory_limit = '%s'", c.cfg.MemoryLimit),
		"SET GLOBAL temp_directory = "+quoteString(spill),
		fmt.Sprintf("SET GLOBAL max_temp_directory_size = '%s'", c.cfg.MaxSpill))
	stmts = append(stmts, rollupSchemaStmts...)
	stmts = append(stmts,
		"SET GLOBAL allowed_directories = ["+quoteString(c.ownDirs[0].path)+", "+quoteString(c.ownDirs[1].path)+", "+quoteString(c.results+string(filepath.Separator))+"]",
		"SET GLOBAL enable_external_access = false",
		"SET GLOBAL autoinstall_known_extensions = false",
		"SET GLOBAL autoload_known_extensions = false",
		"SET GLOBAL lock_configuration = true",
	)
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("query: %s: %w", s, err)
		}
	}
	return c.applyViewsLocked(ctx, c.cfg.Streams)
}

// close releases the database. Queries still running fail.
func (c *catalog) close() error {
	// What queries still running when the remover stopped doomed; the
	// first deferred call runs last, once mu is released.
	defer c.removeDoomed()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.loopDone
	<-c.removerDone
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.settled.Broadcast()
	var errs []error
	if c.conn != nil {
		errs = append(errs, c.conn.Close())
		c.conn = nil
	}
	errs = append(errs, c.db.Close())
	return errors.Join(errs...)
}

// addFiles makes already published files of the tenant visible, and has
// the view loop load their rollups.
func (c *catalog) addFiles(files []sink.FileInfo) error {
	c.ddl.Lock()
	defer c.ddl.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	var streams []string
	var added []sink.FileInfo
	for _, f := range files {
		if c.knownLocked(f) {
			continue
		}
		added = append(added, f)
		if f.Evicted {
			s := f.Partition.Stream
			if c.evicted[s] == nil {
				c.evicted[s] = map[string]sink.FileInfo{}
			}
			c.evicted[s][f.ID] = f
			c.nEvicted.Store(int64(c.evictedCountLocked()))
			if !c.streams[s] && !slices.Contains(streams, s) {
				streams = append(streams, s)
			}
			continue
		}
		c.files[f.Partition.Stream] = append(c.files[f.Partition.Stream], f.Path)
		c.rolled[f.Path] = rollupCost(f)
		c.schemas[f.Path] = f.SchemaID()
		c.noteColumns(f.Partition.Stream, f.Columns)
		if !slices.Contains(streams, f.Partition.Stream) {
			streams = append(streams, f.Partition.Stream)
		}
	}
	// The files are visible once this returns; their rollups are loaded
	// by the view loop (Sync waits for them), so that a start waits for
	// none and a rollup that fails to load cannot fail it.
	c.deferLoads = true
	defer func() { c.deferLoads = false }()
	ctx := context.Background()
	err := c.applyViewsLocked(ctx, streams)
	if err == nil {
		return nil
	}
	bad := c.unreadableLocked(ctx, added)
	if bad == nil {
		return err
	}
	// None of the new files, and the views as they were.
	c.forgetLocked(added)
	if rerr := c.applyViewsLocked(ctx, streams); rerr != nil {
		return errors.Join(err, rerr)
	}
	return bad
}

// isDataError reports whether err, from DuckDB reading a file, is about
// the file's bytes rather than DuckDB's memory, an interrupt or DuckDB
// itself failing.
func isDataError(err error) bool {
	var de *duckdb.Error
	if !errors.As(err, &de) {
		return false
	}
	switch de.Type {
	case duckdb.ErrorTypeOutOfMemory, duckdb.ErrorTypeInterrupt, duckdb.ErrorTypeConnection, duckdb.ErrorTypeFatal:
		return false
	}
	return true
}

// knownLocked reports whether f was added before. mu must be held.
func (c *catalog) knownLocked(f sink.FileInfo) bool {
	if f.Evicted {
		_, ok := c.evicted[f.Partition.Stream][f.ID]
		return ok
	}
	_, ok := c.schemas[f.Path]
	return ok
}

// forgetLocked takes files that addFiles added out of the catalog again,
// before any view change listed them. mu must be held.
func (c *catalog) forgetLocked(files []sink.FileInfo) {
	for _, f := range files {
		s := f.Partition.Stream
		if f.Evicted {
			delete(c.evicted[s], f.ID)
			continue
		}
		c.files[s] = slices.DeleteFunc(c.files[s], func(p string) bool { return p == f.Path })
		delete(c.rolled, f.Path)
		delete(c.schemas, f.Path)
	}
	c.nEvicted.Store(int64(c.evictedCountLocked()))
}

// unreadableLocked has DuckDB read the footer of each of files that is on
// disk, alone, and returns those it cannot read, or nil when it reads
// them all. ddl and mu must be held.
func (c *catalog) unreadableLocked(ctx context.Context, files []sink.FileInfo) *UnreadableFilesError {
	var bad *UnreadableFilesError
	for _, f := range files {
		if f.Evicted {
			continue
		}
		rows, err := c.conn.QueryContext(ctx, "SELECT * FROM system.main.read_parquet("+quoteString(f.Path)+") LIMIT 0")
		if err == nil {
			err = rows.Close()
		}
		if err == nil || !isDataError(err) {
			continue
		}
		if bad == nil {
			bad = &UnreadableFilesError{}
		}
		bad.Files = append(bad.Files, f)
		bad.Errs = append(bad.Errs, err)
	}
	return bad
}

// staged: see Engine.Staged.
func (c *catalog) stage(f sink.FileInfo, seg sink.Segment) error {
	p := f.Partition
	dir := filepath.Join(c.staging, p.Dir())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("query: staging: %w", err)
	}
	kind := narrowKind
	if f.Columns > len(logschema.Arrow().Fields()) {
		kind = wideKind
	}
	// The segment's name: <ID>-<kind><seq>.parquet, seq fixed width so a
	// glob lists a file's segments in the order they were staged.
	prefix := filepath.Join(dir, f.ID+"-")
	path := fmt.Sprintf("%s%s%012d.parquet", prefix, kind, c.seq.Add(1))
	// The link makes the segment visible at once to views that list its
	// kind's glob: the sink staged it in order, so its rows are the next
	// of their file.
	if err := linkOrCopy(seg.Path, path); err != nil {
		os.Remove(path)
		return fmt.Errorf("query: stage rows of %s: %w", f.ID, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		os.Remove(path)
		return errors.New("query: engine closed")
	}
	sf := c.staged[f.ID]
	if sf == nil {
		sf = &stagedFile{stream: p.Stream, prefix: prefix, schema: f.SchemaID()}
		c.staged[f.ID] = sf
	}
	sf.segments = append(sf.segments, path)
	c.noteColumns(p.Stream, f.Columns)
	// The views need a change for a file's first segment of each kind
	// (its glob), and for every segment without globs.
	first := kind == narrowKind && !sf.narrow || kind == wideKind && !sf.wide
	sf.narrow = sf.narrow || kind == narrowKind
	sf.wide = sf.wide || kind == wideKind
	if first || !c.globs {
		c.changedLocked(p.Stream)
	}
	return nil
}

// linkOrCopy makes dst a hard link to src, or a copy of it where links
// are not possible (another file system). Either way dst appears
// complete: a copy is written beside it and renamed into place, so a
// glob never lists a part-written segment.
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
	tmp := dst + ".tmp"
	out, cerr := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// published: see Engine.Published.
func (c *catalog) published(f sink.FileInfo) error {
	p := f.Partition
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errors.New("query: engine closed")
	}
	sf := c.staged[f.ID]
	delete(c.staged, f.ID)
	c.files[p.Stream] = append(c.files[p.Stream], f.Path)
	c.rolled[f.Path] = rollupCost(f)
	c.schemas[f.Path] = f.SchemaID()
	c.noteColumns(p.Stream, f.Columns)
	if sf != nil {
		c.retiring = append(c.retiring, sf)
	}
	c.changedLocked(p.Stream)
	return nil
}

// replaced: see Engine.Replaced.
func (c *catalog) replaced(f sink.FileInfo, old []sink.FileInfo) {
	p := f.Partition
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		for _, o := range old {
			if err := os.Remove(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				c.log.Warn("remove compacted file", "path", o.Path, "err", err)
			}
		}
		return
	}
	c.forgetEvictedLocked(old)
	gone := make(map[string]bool, len(old))
	sf := &stagedFile{stream: p.Stream}
	for _, o := range old {
		gone[o.Path] = true
		delete(c.rolled, o.Path)
		delete(c.schemas, o.Path)
		sf.segments = append(sf.segments, o.Path)
	}
	c.files[p.Stream] = append(slices.DeleteFunc(c.files[p.Stream], func(path string) bool { return gone[path] }), f.Path)
	c.rolled[f.Path] = rollupCost(f)
	c.schemas[f.Path] = f.SchemaID()
	c.noteColumns(p.Stream, f.Columns)
	// Retired like staging links: deleted once the views no longer list
	// them and no query that started before is running.
	c.retiring = append(c.retiring, sf)
	c.changedLocked(p.Stream)
}

// removed: see Engine.Removed.
func (c *catalog) removed(files []sink.FileInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		for _, f := range files {
			if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				c.log.Warn("remove expired file", "path", f.Path, "err", err)
			}
		}
		return
	}
	c.forgetEvictedLocked(files)
	byStream := map[string]map[string]bool{}
	for _, f := range files {
		s := f.Partition.Stream
		if byStream[s] == nil {
			byStream[s] = map[string]bool{}
		}
		byStream[s][f.Path] = true
		delete(c.rolled, f.Path)
		delete(c.schemas, f.Path)
	}
	for s, gone := range byStream {
		c.files[s] = slices.DeleteFunc(c.files[s], func(path string) bool { return gone[path] })
		sf := &stagedFile{stream: s}
		for p := range gone {
			sf.segments = append(sf.segments, p)
		}
		// Retired like staging links: deleted once the views no longer
		// list them and no query that started before is running.
		c.retiring = append(c.retiring, sf)
		c.changedLocked(s)
	}
}

// abandoned: see Engine.Abandoned.
func (c *catalog) abandoned(f sink.FileInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sf := c.staged[f.ID]
	if sf == nil || c.conn == nil {
		return
	}
	delete(c.staged, f.ID)
	c.retiring = append(c.retiring, sf)
	c.changedLocked(f.Partition.Stream)
}

// retireLocked schedules the segments of sf for deletion once no running
// query can see them. The views must no longer list them.
func (c *catalog) retireLocked(sf *stagedFile) {
	c.gen++
	for _, s := range sf.segments {
		c.retired = append(c.retired, retiredSegment{path: s, gen: c.gen})
	}
	c.sweepLocked()
}

// enter registers a running query; the returned func unregisters it.
// Segments retired after a query started are kept until it ends.
func (c *catalog) enter() func() {
	c.mu.Lock()
	g := c.gen
	c.active[g]++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.active[g]--; c.active[g] == 0 {
			delete(c.active, g)
			c.settled.Broadcast() // for evict
		}
		c.sweepLocked()
		closed := c.conn == nil
		c.mu.Unlock()
		if closed { // the remover has stopped
			c.removeDoomed()
		}
	}
}

// sweepLocked hands the retired segments no running query can see to the
// remover.
func (c *catalog) sweepLocked() {
	oldest := c.gen
	for g := range c.active {
		oldest = min(oldest, g)
	}
	keep := c.retired[:0]
	for _, r := range c.retired {
		if r.gen <= oldest {
			c.doomed = append(c.doomed, r.path)
			c.doomedN++
			continue
		}
		keep = append(keep, r)
	}
	clear(c.retired[len(keep):])
	c.retired = keep
	if len(c.doomed) > 0 {
		select {
		case c.sweep <- struct{}{}:
		default:
		}
	}
}

// remover deletes doomed segments until close; what is doomed when close
// stops it is deleted before it returns.
func (c *catalog) remover() {
	defer close(c.removerDone)
	for {
		select {
		case <-c.sweep:
			c.removeDoomed()
		case <-c.stop:
			c.removeDoomed()
			return
		}
	}
}

// removeFile deletes a segment or file no query can see; tests replace it.
var removeFile = os.Remove

// removeDoomed deletes the segments sweepLocked found unseen, without mu.
func (c *catalog) removeDoomed() {
	c.mu.Lock()
	doomed := c.doomed
	c.doomed = nil
	c.mu.Unlock()
	if len(doomed) == 0 {
		return
	}
	for _, path := range doomed {
		if err := removeFile(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("remove staging segment", "path", path, "err", err)
		}
	}
	c.mu.Lock()
	c.removedN += uint64(len(doomed))
	c.settled.Broadcast()
	c.mu.Unlock()
}

// redoLocked has the view loop make the views of streams, the hot view
// and logs again after a view change that failed. mu must be held.
func (c *catalog) redoLocked(streams []string) {
	for _, s := range streams {
		c.dirty[s] = true
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// applyViewsLocked recreates the views of the given streams and logs
// (see viewStmtsLocked) from the catalog as it stands. ddl and mu must
// be held (ddl first).
func (c *catalog) applyViewsLocked(ctx context.Context, streams []string) error {
	if jobs := c.schemaJobsLocked(streams); len(jobs) > 0 {
		c.makeSchemaFiles(ctx, c.conn, jobs)
		c.setSchemaFilesLocked(jobs, time.Now())
	}
	err := execViews(ctx, c.conn, c.viewStmtsLocked(streams))
	compressed := err == nil && c.compress(ctx, c.conn, c.load.altersTables())
	c.commitLoadLocked(err == nil)
	if compressed {
		c.resumeLoadsLocked()
	}
	return err
}

// compress checkpoints catalogDB after a change that altered the rollup
// tables (altered), or while an earlier checkpoint is owed, which
// compresses the rows the changes added and frees those they deleted
// (rollups.go). It reports whether no checkpoint is owed any more. DuckDB
// refuses a checkpoint while a transaction that wrote is still kept, and
// it keeps one while any query that started before its commit runs, so
// the checkpoint right after a change often fails; the view loop tries
// again every compressRetry until one succeeds, and loads no more
// rollups meanwhile. A checkpoint frees the rows as loaded, and their
// pages are given back to the system at once. ddl must be held.
func (c *catalog) compress(ctx context.Context, conn *sql.Conn, altered bool) bool {
	if !altered && !c.compressDue.Load() {
		return true
	}
	_, err := conn.ExecContext(ctx, "CHECKPOINT "+catalogDB)
	c.compressDue.Store(err != nil)
	if err != nil {
		c.log.Debug("query: compress the rollup tables; trying again", "err", err)
		return false
	}
	// The rows as loaded are freed now: hand their pages back.
	purgeNativeMemory()
	return true
}

// compressRetry is how often the view loop tries again a checkpoint
// that failed (compress).
const compressRetry = 50 * time.Millisecond

// resumeLoadsLocked has the view loop load the rollups that changes left
// for later (loadBudget), once the tables are compressed. mu must be
// held.
func (c *catalog) resumeLoadsLocked() {
	if len(c.later) == 0 {
		return
	}
	for _, s := range c.later {
		c.changedLocked(s)
	}
	c.later = nil
	c.loadTarget = c.changes
}

// loadingLocked reports whether rollups are left to load. mu must be
// held.
func (c *catalog) loadingLocked() bool { return len(c.later) > 0 || c.applied < c.loadTarget }

// viewStmtsLocked returns the DDL that recreates the views of streams
// from the catalog as it stands, with the rollup loads of their files,
// the hot view (rollups.go) and the logs view, and records that those
// streams have views. mu must be held.
//
// The logs view lists the files of every stream itself, in one scan
// (logsQueryLocked), so every change recreates it with the changed
// stream's view and its DDL grows with the tenant's files (DuckDB looks
// at each listed path when a view is made, ~30 µs a path by position;
// bench/RESULTS.md, "One scan per view"). A union of
// the stream views would name streams instead, but DuckDB cannot sort a
// union larger than its memory limit once the union's first part has
// been sorted in memory, and logs is what users sort; binding a union
// also costs in the number of its parts at every query.
func (c *catalog) viewStmtsLocked(streams []string) []string {
	for _, s := range streams {
		c.streams[s] = true
	}
	var stmts []string
	for _, s := range streams {
		if slices.Contains(reservedViews, s) {
			continue
		}
		stmts = append(stmts, fmt.Sprintf("CREATE OR REPLACE VIEW %s AS %s", viewName(s), c.scanLocked(s, c.pathsLocked(s))))
	}
	stmts = append(stmts, c.rollupLoadStmtsLocked(streams)...)
	stmts = c.hotViewStmtsLocked(stmts)
	// A new stream has no files yet: logs and the hot view stay as they
	// are until its first rows are staged.
	return c.defineLocked(stmts, "logs", c.logsQueryLocked())
}

// pathsLocked returns the published files of stream and the globs (or
// paths) of its staged segments. mu must be held.
func (c *catalog) pathsLocked(stream string) []string {
	paths := slices.Clone(c.files[stream])
	for _, sf := range c.staged {
		if sf.stream == stream {
			paths = append(paths, c.segmentGlobs(sf)...)
		}
	}
	return paths
}

// logsQueryLocked is the SELECT behind the logs view: one scan of the
// files and staged segments of every stream (streams named like a
// reserved view included), in the columns of viewQuery, by position
// while no stream has promoted attribute columns and by name, with the
// schema file of all streams first (schemafile.go), once one has. mu
// must be held.
//
// One scan, because DuckDB sorts the rows of a scan larger than its
// memory limit by spilling but not those of a union whose first part it
// sorted in memory (viewQuery).
func (c *catalog) logsQueryLocked() string {
	names, wide := c.logsStreamsLocked(nil)
	var paths []string
	for _, s := range names {
		paths = append(paths, c.pathsLocked(s)...)
	}
	return viewQuery(paths, wide, c.schemaFiles[allStreams].path)
}

// viewName is the qualified name of a stream's view, so that nothing a
// query could name first is read instead.
func viewName(stream string) string { return catalogDB + ".main." + quoteIdent(stream) }

// execViews runs view DDL in one transaction, so queries see all of the
// change or none of it.
func execViews(ctx context.Context, conn *sql.Conn, stmts []string) error {
	tx, err := conn.BeginTx(ctx, nil)
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

// emptyView has the views' columns (logschema.ViewColumns) and no rows,
// for views with no files.
var emptyView = logschema.EmptyView()

// viewQuery is the SELECT behind a view over the given Parquet files:
// the columns of emptyView in that order, with the attribute columns
// that files promoted (logschema.AttributePrefix) after _offset. With
// wide, files may differ in those columns and DuckDB reads them together
// by name, NULL where a file lacks one; that costs a look at every
// file's footer, so views of streams without such columns go by
// position.
//
// All files are read by one scan: DuckDB sorts the rows of a scan
// larger than its memory limit by spilling, but not those of a union
// whose first part it sorted in memory (its sort decides to spill only
// until the first of the union's parts is done), and the views are what
// users sort. A day file's rows (hour=24, sink.Partition.Day) take their
// hour from their timestamp; a filter on hour then prunes files by
// their directory only in views that list no day file.
//
// A wide view lists schemaFile, when not "", before the files: see
// schemafile.go.
func viewQuery(paths []string, wide bool, schemaFile string) string {
	if len(paths) == 0 {
		return emptyView
	}
	hour := `"hour"`
	if slices.ContainsFunc(paths, isDayFile) {
		hour = dayFileHour
	}
	// Newest first, whatever their stream: DuckDB starts reading files in
	// the list's order, so a query for the newest rows (ORDER BY
	// timestamp DESC LIMIT n) finds them in the first files, and the
	// top-n's dynamic filter on timestamp then skips the older row groups
	// by their statistics.
	paths = slices.Clone(paths)
	slices.SortFunc(paths, newestFirst)
	if wide && schemaFile != "" {
		paths = append([]string{schemaFile}, paths...)
	}
	var q strings.Builder
	q.WriteString(`SELECT "stream", * EXCLUDE ("tenant", "stream", "date", "hour"), "date", ` + hour + ` FROM system.main.read_parquet([`)
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

// dayFileHour is the hour column of a view that lists day files: the
// UTC hour of a day file's rows' timestamp (its path says hour=24), the
// partition's hour for the rows of other files.
const dayFileHour = `CASE WHEN "hour" = 24 THEN CAST(date_part('hour', timezone('UTC', "timestamp")) AS INTEGER) ELSE "hour" END AS "hour"`

// dayDir is the directory name of day files (sink.DayHour).
var dayDir = "hour=" + strconv.Itoa(sink.DayHour)

// isDayFile reports whether path, a published file or a staging link,
// is in a day file's directory.
func isDayFile(path string) bool { return filepath.Base(filepath.Dir(path)) == dayDir }

// newestFirst orders paths of files and staged segments by date, hour
// and file ID (creation time), descending, whatever their stream; a day
// file's hour=24 comes before its date's hour files. Paths without a
// date directory come last.
func newestFirst(a, b string) int {
	ka, kb := a[strings.Index(a, dateSep)+1:], b[strings.Index(b, dateSep)+1:]
	if c := strings.Compare(kb, ka); c != 0 {
		return c
	}
	return strings.Compare(b, a)
}

// dateSep starts the date directory of a path (sink's layout).
const dateSep = string(filepath.Separator) + "date="

// streamNames returns the streams that have views, sorted.
func (c *catalog) streamNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.streams))
	for s := range c.streams {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

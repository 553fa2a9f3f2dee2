package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// Config sets the engine's resources and the bounds of user queries.
type Config struct {
	// DataDir holds the engine's staging and spill directories. It must
	// contain the lake.
	DataDir string
	// LakeDir is the lake's root; "" means DataDir's lake folder. A
	// tenant's queries may read its folder there (tenant=<id>) and its
	// staged rows, nothing else: not the write-ahead log, not state
	// files, not other tenants' data.
	LakeDir string
	// Threads is DuckDB's worker thread count; 0 means GOMAXPROCS: one
	// per CPU the process may use, a container's CPU limit included,
	// where DuckDB's own default counts the host's cores.
	Threads int
	// MemoryLimit is DuckDB's memory limit for all queries of one tenant
	// together, such as "2GB"; past it a query spills to disk or fails
	// with ErrResources. It must be set: DuckDB's own default, 80% of
	// RAM, is no bound for a shared server. Since each tenant has its own
	// database, the process holds at most MemoryLimit times the number
	// of tenants whose queries run at once (at most MaxConcurrent + 1).
	MemoryLimit string
	// MaxSpill bounds the disk that queries may spill to, under
	// DataDir's tmp/query folder, such as "4GB".
	MaxSpill string
	// MaxAnswerBytes bounds the Parquet file DuckDB writes for one
	// Parquet answer (under the same folder) before it is sent; a larger
	// answer fails with ErrResources.
	MaxAnswerBytes int64
	// MaxConcurrent bounds user queries running at once; more wait for a
	// slot until their deadline. System queries (Options.System) have one
	// more slot of their own, so slow user queries never lock out the
	// UI's schema.
	MaxConcurrent int
	// TenantConcurrent bounds the user queries of one tenant running at
	// once; above MaxConcurrent it is lowered to it. Below it, one
	// tenant's slow queries always leave slots to the others.
	TenantConcurrent int
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
		MemoryLimit: "1GB",
		MaxSpill:    "4GB",
		// A million rows of the lake's log records take ~30 MB.
		MaxAnswerBytes: 1 << 30,
		MaxConcurrent:  4,
		// One slot stays free for other tenants.
		TenantConcurrent: 3,
		DefaultRows:      10_000,
		MaxRows:          1_000_000,
		DefaultTimeout:   30 * time.Second,
		MaxTimeout:       10 * time.Minute,
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
	case c.TenantConcurrent < 1:
		return fmt.Errorf("query: TenantConcurrent must be positive, got %d", c.TenantConcurrent)
	case c.DefaultRows < 1 || c.MaxRows < c.DefaultRows:
		return fmt.Errorf("query: want 1 <= DefaultRows (%d) <= MaxRows (%d)", c.DefaultRows, c.MaxRows)
	case c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout:
		return fmt.Errorf("query: want 0 < DefaultTimeout (%s) <= MaxTimeout (%s)", c.DefaultTimeout, c.MaxTimeout)
	case c.MemoryLimit == "" || strings.ContainsAny(c.MemoryLimit, "'\\"):
		return fmt.Errorf("query: invalid MemoryLimit %q", c.MemoryLimit)
	case c.MaxSpill == "" || strings.ContainsAny(c.MaxSpill, "'\\"):
		return fmt.Errorf("query: invalid MaxSpill %q", c.MaxSpill)
	case c.MaxAnswerBytes < 1:
		return fmt.Errorf("query: MaxAnswerBytes must be positive, got %d", c.MaxAnswerBytes)
	}
	return nil
}

// stagingDir is where the engine keeps staged rows, under the data
// directory, in the lake's partition layout.
const stagingDir = "staging"

// Engine runs SQL over the lake and the staged records, each tenant in a
// database of its own (see catalog) that is opened with the tenant's
// first file or query. It implements sink.Observer. All methods are safe
// for concurrent use.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	dataDir string
	lakeDir string
	staging string
	slots   chan struct{} // user queries of every tenant
	system  chan struct{} // the slot of system queries
	scans   *scanCache    // footers and decoded row groups of partition scans

	mu       sync.Mutex
	catalogs map[string]*catalog      // by tenant
	busy     map[string]chan struct{} // slots per tenant
	closed   bool
	fetcher  Fetcher        // see SetFetcher
	releases sync.WaitGroup // fetched files being handed back
	// mending are the lake files being mended (mend), mends their
	// goroutines, which mendCtx's cancel (stopMends) ends at Shutdown.
	mending   map[string]bool
	mends     sync.WaitGroup
	mendCtx   context.Context
	stopMends context.CancelFunc
}

// Open prepares the engine and the default tenant's database. It empties
// the staging directory: staged rows of a previous run belong to files
// that were never published.
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
	lakeDir := filepath.Join(dataDir, "lake")
	if cfg.LakeDir != "" {
		if lakeDir, err = filepath.Abs(cfg.LakeDir); err != nil {
			return nil, fmt.Errorf("query: lake dir: %w", err)
		}
	}
	staging := filepath.Join(dataDir, stagingDir)
	if err := os.RemoveAll(staging); err != nil {
		return nil, fmt.Errorf("query: clear staging: %w", err)
	}
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, fmt.Errorf("query: staging: %w", err)
	}
	e := &Engine{
		cfg:      cfg,
		log:      log,
		dataDir:  dataDir,
		lakeDir:  lakeDir,
		staging:  staging,
		slots:    make(chan struct{}, cfg.MaxConcurrent),
		system:   make(chan struct{}, 1),
		catalogs: map[string]*catalog{},
		busy:     map[string]chan struct{}{},
		scans:    newScanCache(),
	}
	e.mendCtx, e.stopMends = context.WithCancel(context.Background())
	e.cfg.TenantConcurrent = min(cfg.TenantConcurrent, cfg.MaxConcurrent)
	if _, err := e.catalog(record.DefaultTenant); err != nil {
		e.stopMends()
		return nil, err
	}
	return e, nil
}

// catalog returns tenant's database, opening it on first use.
func (e *Engine) catalog(tenant string) (*catalog, error) {
	if tenant == "" {
		tenant = record.DefaultTenant
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("query: engine closed")
	}
	if c := e.catalogs[tenant]; c != nil {
		return c, nil
	}
	if err := record.ValidateTenant(tenant); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	c, err := newCatalog(&e.cfg, e.log, tenant, e.dataDir, e.lakeDir, e.staging)
	if err != nil {
		return nil, err
	}
	e.catalogs[tenant] = c
	e.busy[tenant] = make(chan struct{}, e.cfg.TenantConcurrent)
	return c, nil
}

// acquire takes a query slot for tenant (the system slot for system
// queries) and returns its release, or fails with ErrBusy once ctx is
// done.
func (e *Engine) acquire(ctx context.Context, tenant string, system bool) (func(), error) {
	if system {
		select {
		case e.system <- struct{}{}:
			return func() { <-e.system }, nil
		case <-ctx.Done():
			return nil, e.ctxErr(ctx, ErrBusy)
		}
	}
	e.mu.Lock()
	mine := e.busy[tenant]
	e.mu.Unlock()
	select {
	case mine <- struct{}{}:
	case <-ctx.Done():
		return nil, e.ctxErr(ctx, ErrBusy)
	}
	select {
	case e.slots <- struct{}{}:
		return func() { <-e.slots; <-mine }, nil
	case <-ctx.Done():
		<-mine
		return nil, e.ctxErr(ctx, ErrBusy)
	}
}

// Shutdown releases every tenant's database and removes the staging
// segments. Queries still running fail. Shut the sink down first: it
// reports to the engine until it has published its last file. ctx is
// not used: closing a database does not wait. Shutdown is safe to call
// more than once.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	cats := e.catalogs
	e.catalogs = map[string]*catalog{}
	e.mu.Unlock()
	var errs []error
	for _, c := range cats {
		errs = append(errs, c.close())
	}
	e.releases.Wait()
	e.stopMends()
	e.mends.Wait()
	errs = append(errs, os.RemoveAll(e.staging))
	return errors.Join(errs...)
}

// Sync returns once every change made before the call (records staged,
// files published or abandoned) is visible to queries, the rollups of
// the files they list are loaded (docs/format.md, "SQL views") and what
// those changes left unseen by every running query is deleted, or ctx is
// done.
func (e *Engine) Sync(ctx context.Context) error {
	e.mu.Lock()
	cats := make([]*catalog, 0, len(e.catalogs))
	for _, c := range e.catalogs {
		cats = append(cats, c)
	}
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return errors.New("query: engine closed")
	}
	for _, c := range cats {
		if err := c.sync(ctx); err != nil {
			return err
		}
	}
	return nil
}

// AddFiles makes already published files visible, such as those found in
// the lake at start-up, each in its tenant's database. Files it was given
// before are skipped, so it may be called again with the same list.
//
// DuckDB refuses some damaged footers that the lake's reader accepts, and
// one such file would fail every view change of its tenant. When the views
// cannot be made, AddFiles reads each new file's footer with DuckDB alone:
// if some cannot be read, it returns an *UnreadableFilesError naming them,
// having added none of that tenant's new files (other tenants' are added),
// for the caller to take them out of the lake (sink.Lake.SetAside) and
// call AddFiles again.
func (e *Engine) AddFiles(files []sink.FileInfo) error {
	byTenant := map[string][]sink.FileInfo{}
	for _, f := range files {
		byTenant[f.Partition.Tenant] = append(byTenant[f.Partition.Tenant], f)
	}
	var unreadable *UnreadableFilesError
	for tenant, fs := range byTenant {
		c, err := e.catalog(tenant)
		if err != nil {
			return err
		}
		var ue *UnreadableFilesError
		if err := c.addFiles(fs); errors.As(err, &ue) {
			if unreadable == nil {
				unreadable = &UnreadableFilesError{}
			}
			unreadable.Files = append(unreadable.Files, ue.Files...)
			unreadable.Errs = append(unreadable.Errs, ue.Errs...)
		} else if err != nil {
			return err
		}
	}
	if unreadable != nil {
		return unreadable
	}
	return nil
}

// UnreadableFilesError is AddFiles' error for published files whose
// footers DuckDB cannot read.
type UnreadableFilesError struct {
	Files []sink.FileInfo
	Errs  []error // why, for each of Files
}

func (e *UnreadableFilesError) Error() string {
	return fmt.Sprintf("query: DuckDB cannot read %d published files; the first, %s: %v", len(e.Files), e.Files[0].Path, e.Errs[0])
}

// Staged makes the rows of seg, staged into the unpublished file f,
// visible to its tenant's queries: it hard-links the segment (a complete
// Parquet file) under staging/, copying it only where a link is
// impossible. The views read an unpublished file's segments by glob, so
// the rows are visible once linked; a file's first segment (and its first
// with promoted attribute columns) needs a view change, made within
// moments (see Sync). The rows are not encoded again. It implements
// sink.Observer.
func (e *Engine) Staged(f sink.FileInfo, seg sink.Segment) error {
	c, err := e.catalog(f.Partition.Tenant)
	if err != nil {
		return err
	}
	return c.stage(f, seg)
}

// Published swaps the staged segments of f for the file itself, in one
// view change (within moments, see Sync), so every query sees its rows
// exactly once. It implements sink.Observer.
func (e *Engine) Published(f sink.FileInfo) error {
	c, err := e.catalog(f.Partition.Tenant)
	if err != nil {
		return err
	}
	return c.published(f)
}

// Replaced swaps the files of old for f, their compacted replacement, in
// one view change (within moments, see Sync), and deletes them once no
// running query can see them. It implements sink.Observer.
func (e *Engine) Replaced(f sink.FileInfo, old []sink.FileInfo) {
	c, err := e.catalog(f.Partition.Tenant)
	if err != nil {
		e.log.Error("query: compacted files of an unknown tenant stay on disk", "tenant", f.Partition.Tenant, "err", err)
		return
	}
	c.replaced(f, old)
}

// Removed drops files that retention removed from the lake from their
// tenants' views, in one view change per tenant (within moments, see
// Sync), and deletes them once no running query can see them. It
// implements sink.Observer.
func (e *Engine) Removed(files []sink.FileInfo) {
	byTenant := map[string][]sink.FileInfo{}
	for _, f := range files {
		byTenant[f.Partition.Tenant] = append(byTenant[f.Partition.Tenant], f)
	}
	for tenant, fs := range byTenant {
		c, err := e.catalog(tenant)
		if err != nil {
			e.log.Error("query: removed files of an unknown tenant stay on disk", "tenant", tenant, "err", err)
			continue
		}
		c.removed(fs)
	}
}

// Abandoned forgets the staged rows of f, which will never be published.
// It implements sink.Observer.
func (e *Engine) Abandoned(f sink.FileInfo) {
	e.mu.Lock()
	c := e.catalogs[f.Partition.Tenant]
	e.mu.Unlock()
	if c != nil {
		c.abandoned(f)
	}
}

// EnsureStream gives tenant's stream a view now, empty until its records
// are staged, so that a query right after the stream's first
// acknowledgement finds it (its records come within moments, see Sync).
// Streams asked for at once are made in one view change: each caller
// waits for the DDL in progress, and the first to follow it makes the
// views of all that came meanwhile, with every other view change
// pending (as the view loop would, sooner). The DDL runs without the
// catalog's lock, so staging and starting queries do not wait for it.
func (e *Engine) EnsureStream(tenant, stream string) error {
	c, err := e.catalog(tenant)
	if err != nil {
		return err
	}
	// applyPending decides whether the stream still needs a view once
	// the change in progress, which may be making it, is over.
	c.mu.Lock()
	c.wanted[stream] = true
	c.mu.Unlock()
	return c.applyPending()
}

// Streams returns tenant's streams that have views, sorted ("" is the
// default tenant).
func (e *Engine) Streams(tenant string) []string {
	if tenant == "" {
		tenant = record.DefaultTenant
	}
	e.mu.Lock()
	c := e.catalogs[tenant]
	e.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.streamNames()
}

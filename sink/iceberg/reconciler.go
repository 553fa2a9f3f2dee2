package iceberg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	iceberg "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/sink"
)

// Lake is what the reconciler reads from the lake: *sink.Lake.
type Lake interface {
	// CommittedFiles returns the files in the lake where it keeps them
	// for good, each with its Location.
	CommittedFiles() []sink.FileInfo
}

// ManagedProperty is the table property weir sets on the tables it
// creates. The reconciler only ever changes tables that have it, so a
// table someone else created under the same name is left alone (and
// that stream's pass fails, saying so).
const ManagedProperty = "weir.managed"

// Errors. Match them with errors.Is.
var (
	// ErrNotManaged: a table with a stream's name exists but weir did
	// not create it.
	ErrNotManaged = errors.New("iceberg: table exists but is not managed by weir")
	// ErrTypeConflict: a file has a column (a promoted attribute) of a
	// type the table's column of that name cannot be read as. The file
	// is not added: Iceberg has one type per column.
	ErrTypeConflict = errors.New("iceberg: column type conflict")
)

// Ident returns the table identifier of a stream: namespace = tenant,
// table = stream (the dead-letter stream's table is "_dead_letter").
func Ident(tenant, stream string) table.Identifier { return table.Identifier{tenant, stream} }

// Stats are the reconciler's counters since New.
type Stats struct {
	Passes       int64 // passes finished, successful or not
	Snapshots    int64 // snapshots committed
	FilesAdded   int64 // data files added to tables
	FilesRemoved int64 // data files removed from tables
	Failures     int64 // table commits, catalog listings or catalog openings that failed
	// ConsecutiveFailures counts passes in a row that failed; 0 after a
	// pass that left every table equal to the lake.
	ConsecutiveFailures int64
	LastError           string // of the last failed pass; "" once one succeeds
	// Lag is how long the lake has had changes the tables do not show:
	// from the first change (Nudge) after the last successful pass; 0
	// when the tables are up to date.
	Lag time.Duration
}

// Reconciler keeps one Iceberg table per (tenant, stream) equal to the
// lake's committed files. Sync runs one pass; Start runs passes in the
// background, on Nudge and at least every Config.Interval. All methods
// are safe for concurrent use; passes never overlap.
type Reconciler struct {
	cfg  Config
	lake Lake
	open func(context.Context) (catalog.Catalog, error)
	log  *slog.Logger

	pass  sync.Mutex      // held by a running pass
	cat   catalog.Catalog // once open succeeded; guarded by pass
	nudge chan struct{}   // capacity 1: a pass is wanted

	life     sync.Mutex // guards stop, done, cancel
	stop     chan struct{}
	done     chan struct{}
	cancel   context.CancelFunc
	started  bool
	shutdown bool

	mu         sync.Mutex
	stats      Stats
	seq        int64     // Nudge calls
	dirtySince time.Time // first Nudge not covered by a successful pass; zero when none
	known      map[string]table.Identifier
	listed     bool // the catalog's weir tables were listed into known
	loggedAt   time.Time

	// What the tables list, for Referenced. Never held while calling
	// the lake.
	refMu sync.Mutex
	refs  map[string]map[string]bool // by table key: the locations its current snapshot lists, as last seen
	// refsReady: every weir table's files are in refs (a pass listed
	// the catalog and loaded each table).
	refsReady bool
	// reading: a pass is reading the lake's files; passRead: the
	// locations the running pass read from the lake (it may add them).
	reading  bool
	passRead map[string]bool
}

// New returns a reconciler of lake's files into the tables of cat. It
// does nothing until Sync or Start.
func New(cfg Config, lake Lake, cat catalog.Catalog, log *slog.Logger) (*Reconciler, error) {
	return NewOpening(cfg, lake, func(context.Context) (catalog.Catalog, error) { return cat, nil }, log)
}

// NewOpening is New with a catalog that open opens at the first pass,
// and again at each pass until it succeeds: a REST catalog that cannot
// be reached at start-up fails passes (counted, retried) rather than
// the start.
func NewOpening(cfg Config, lake Lake, open func(context.Context) (catalog.Catalog, error), log *slog.Logger) (*Reconciler, error) {
	if cfg.Interval <= 0 || cfg.KeepSnapshots < 1 || cfg.KeepFor < 0 {
		return nil, fmt.Errorf("iceberg: invalid interval %v, keep_snapshots %d or keep_for %v", cfg.Interval, cfg.KeepSnapshots, cfg.KeepFor)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		cfg: cfg, lake: lake, open: open, log: log,
		nudge:      make(chan struct{}, 1),
		known:      map[string]table.Identifier{},
		dirtySince: time.Now(),
		refs:       map[string]map[string]bool{},
		passRead:   map[string]bool{},
	}, nil
}

// Nudge asks for a pass soon: the lake's committed files may have
// changed. It never blocks. After a failed pass, the next one waits for
// its backoff even when nudged.
func (r *Reconciler) Nudge() {
	r.mu.Lock()
	r.seq++
	if r.dirtySince.IsZero() {
		r.dirtySince = time.Now()
	}
	r.mu.Unlock()
	select {
	case r.nudge <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	if !r.dirtySince.IsZero() {
		s.Lag = time.Since(r.dirtySince)
	}
	return s
}

// Start runs a pass at once and then on every Nudge and at least every
// Config.Interval, until Shutdown. A failed pass is retried after one
// second, doubling up to Interval.
func (r *Reconciler) Start(context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	if r.started || r.shutdown {
		return errors.New("iceberg: reconciler already started or shut down")
	}
	r.started = true
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done, r.cancel = make(chan struct{}), make(chan struct{}), cancel
	go r.run(ctx)
	return nil
}

// Shutdown stops the background passes: a running pass finishes, or is
// cancelled when ctx ends first. Files the lake commits from now on
// reach the tables at the next start. Safe without Start and more than
// once.
func (r *Reconciler) Shutdown(ctx context.Context) error {
	r.life.Lock()
	first := !r.shutdown
	r.shutdown = true
	stop, done, cancel := r.stop, r.done, r.cancel
	r.life.Unlock()
	if done == nil {
		return nil
	}
	if first {
		close(stop)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		cancel()
		<-done
		return ctx.Err()
	}
}

func (r *Reconciler) run(ctx context.Context) {
	defer close(r.done)
	defer r.cancel()
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		if failures > 0 {
			// Backing off: nudges wait (they stay queued).
			select {
			case <-r.stop:
				return
			case <-timer.C:
			}
		} else {
			select {
			case <-r.stop:
				return
			case <-r.nudge:
				if !timer.Stop() {
					select {
					case <-timer.C:
					default:
					}
				}
			case <-timer.C:
			}
		}
		next := r.cfg.Interval
		if err := r.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			if b := time.Second << min(failures-1, 16); b < next {
				next = b
			}
		} else {
			failures = 0
		}
		timer.Reset(next)
	}
}

// Sync runs one pass: for every stream with committed files, and every
// weir table in the catalog, it commits what differs between the lake
// and the table as one snapshot. Tables are independent: a failure in
// one does not stop the others; the errors are returned joined.
func (r *Reconciler) Sync(ctx context.Context) error {
	r.pass.Lock()
	defer r.pass.Unlock()
	r.mu.Lock()
	seq := r.seq
	r.mu.Unlock()
	start := time.Now()

	err := r.syncAll(ctx)
	r.endPassRefs()
	if r.cfg.AfterPass != nil {
		defer r.cfg.AfterPass()
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Passes++
	if err != nil {
		r.stats.ConsecutiveFailures++
		r.stats.LastError = err.Error()
		if r.stats.ConsecutiveFailures == 1 || time.Since(r.loggedAt) >= r.cfg.Interval {
			r.loggedAt = time.Now()
			r.log.Warn("iceberg: tables not brought up to date with the lake; retrying", "err", err, "consecutive_failures", r.stats.ConsecutiveFailures)
		}
		return err
	}
	if r.stats.ConsecutiveFailures > 0 {
		r.log.Info("iceberg: tables up to date with the lake again", "after_failures", r.stats.ConsecutiveFailures)
	}
	r.stats.ConsecutiveFailures = 0
	r.stats.LastError = ""
	if r.seq == seq {
		r.dirtySince = time.Time{}
	} else if r.dirtySince.Before(start) {
		r.dirtySince = start
	}
	return nil
}

func (r *Reconciler) syncAll(ctx context.Context) error {
	if r.cat == nil {
		cat, err := r.open(ctx)
		if err != nil {
			r.countFailure()
			return err
		}
		r.cat = cat
	}
	var errs []error
	if err := r.listCatalog(ctx); err != nil {
		r.countFailure()
		errs = append(errs, err)
	}
	groups := r.groups()
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		tenant, stream, _ := strings.Cut(k, "\x00")
		err := r.syncTable(ctx, Ident(tenant, stream), groups[k])
		// A file whose footer had to be read was removed meanwhile
		// (compaction, retention): take the lake's files again.
		for try := 0; try < 3 && errors.Is(err, fs.ErrNotExist); try++ {
			err = r.syncTable(ctx, Ident(tenant, stream), r.groups()[k])
		}
		if err != nil {
			r.countFailure()
			errs = append(errs, fmt.Errorf("table %s.%s: %w", tenant, stream, err))
		}
	}
	return errors.Join(errs...)
}

// groups returns the lake's committed files by stream, with an empty
// list for each known table whose stream has none.
func (r *Reconciler) groups() map[string][]sink.FileInfo {
	groups := map[string][]sink.FileInfo{}
	r.mu.Lock()
	for k := range r.known {
		groups[k] = nil
	}
	r.mu.Unlock()
	seen := map[string]bool{}
	for _, f := range r.lakeFiles() {
		if seen[f.Location] {
			continue // listed twice while a compaction moves it
		}
		seen[f.Location] = true
		k := key(f.Partition.Tenant, f.Partition.Stream)
		groups[k] = append(groups[k], f)
	}
	return groups
}

func (r *Reconciler) countFailure() {
	r.mu.Lock()
	r.stats.Failures++
	r.mu.Unlock()
}

func key(tenant, stream string) string { return tenant + "\x00" + stream }

// listCatalog adds the catalog's weir tables to known, once: a stream
// whose files all went (retention) still has its table emptied.
func (r *Reconciler) listCatalog(ctx context.Context) error {
	r.mu.Lock()
	listed := r.listed
	r.mu.Unlock()
	if listed {
		return nil
	}
	nss, err := r.cat.ListNamespaces(ctx, nil)
	if errors.Is(err, fs.ErrNotExist) {
		// A warehouse in object storage exists once it has an object.
		nss, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	found := map[string]table.Identifier{}
	for _, ns := range nss {
		if len(ns) != 1 {
			continue
		}
		for id, err := range r.cat.ListTables(ctx, ns) {
			if err != nil {
				return fmt.Errorf("list tables of %s: %w", ns[0], err)
			}
			if len(id) != 2 {
				continue
			}
			t, err := r.cat.LoadTable(ctx, id)
			if err != nil {
				return fmt.Errorf("load table %s: %w", strings.Join(id, "."), err)
			}
			if t.Properties()[ManagedProperty] == "true" {
				found[key(id[0], id[1])] = id
			}
		}
	}
	r.mu.Lock()
	for k, id := range found {
		r.known[k] = id
	}
	r.listed = true
	r.mu.Unlock()
	return nil
}

// syncTable commits the difference between files (the stream's
// committed files) and the table's current data files.
func (r *Reconciler) syncTable(ctx context.Context, ident table.Identifier, files []sink.FileInfo) error {
	tbl, err := r.cat.LoadTable(ctx, ident)
	switch {
	case errors.Is(err, catalog.ErrNoSuchTable):
		r.setRefs(ident, nil)
		if len(files) == 0 {
			return nil
		}
		if tbl, err = r.create(ctx, ident); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("load: %w", err)
	case tbl.Properties()[ManagedProperty] != "true":
		return ErrNotManaged
	}
	r.mu.Lock()
	r.known[key(ident[0], ident[1])] = ident
	r.mu.Unlock()
	// Commits go through r.cat, whichever catalog object loaded the
	// table.
	tbl = table.New(ident, tbl.Metadata(), tbl.MetadataLocation(), tbl.FS, r.cat)

	current := map[string]iceberg.DataFile{}
	if tbl.CurrentSnapshot() != nil {
		tasks, err := tbl.Scan().PlanFiles(ctx)
		if err != nil {
			return fmt.Errorf("list data files: %w", err)
		}
		for _, t := range tasks {
			current[t.File.FilePath()] = t.File
		}
	}
	r.setRefs(ident, current)
	var adds []sink.FileInfo
	want := make(map[string]bool, len(files))
	for _, f := range files {
		want[f.Location] = true
		if _, ok := current[f.Location]; !ok {
			adds = append(adds, f)
		}
	}
	var removes []iceberg.DataFile
	for loc, df := range current {
		if !want[loc] {
			removes = append(removes, df)
		}
	}
	if len(adds) == 0 && len(removes) == 0 {
		return r.expire(ctx, tbl)
	}
	// Until the commit is known to have happened, the table may list
	// the old files and the new ones.
	after := maps.Clone(current)
	for _, f := range adds {
		after[f.Location] = nil
	}
	r.setRefs(ident, after)
	sort.Slice(removes, func(i, j int) bool { return removes[i].FilePath() < removes[j].FilePath() })

	txn := tbl.NewTransaction()
	if err := r.evolve(ctx, tbl, txn, adds); err != nil {
		return err
	}
	sc, spec := tbl.Schema(), tbl.Spec()
	dfs := make([]iceberg.DataFile, 0, len(adds))
	// Row lineage (version 3): the added files' rows take the row IDs
	// from the table's next-row-id on, in order; the snapshot's
	// first-row-id is that same next-row-id and its added-rows covers
	// them all, so the IDs are the table's and unique.
	rowID := int64(-1)
	if tbl.Metadata().Version() >= 3 {
		rowID = tbl.Metadata().NextRowID()
	}
	for _, f := range adds {
		df, err := dataFile(sc, spec, f, rowID)
		if err != nil {
			return err
		}
		dfs = append(dfs, df)
		if rowID >= 0 {
			rowID += f.Rows
		}
	}
	props := iceberg.Properties{
		"weir.files-added":   strconv.Itoa(len(dfs)),
		"weir.files-removed": strconv.Itoa(len(removes)),
	}
	if len(removes) == 0 {
		// No duplicate check: adds are files the current snapshot
		// lacks, and the commit requires that snapshot to be current.
		err = txn.AddDataFiles(ctx, dfs, props, table.WithoutDuplicateCheck())
	} else {
		err = txn.ReplaceDataFilesWithDataFiles(ctx, removes, dfs, props)
	}
	if err != nil {
		return fmt.Errorf("stage snapshot (+%d -%d files): %w", len(dfs), len(removes), err)
	}
	tbl, err = txn.Commit(ctx)
	if err != nil {
		return fmt.Errorf("commit snapshot (+%d -%d files): %w", len(dfs), len(removes), err)
	}
	for _, df := range removes {
		delete(after, df.FilePath())
	}
	r.setRefs(ident, after)
	r.mu.Lock()
	r.stats.Snapshots++
	r.stats.FilesAdded += int64(len(dfs))
	r.stats.FilesRemoved += int64(len(removes))
	r.mu.Unlock()
	r.log.Debug("iceberg: snapshot committed", "table", strings.Join(ident, "."), "added", len(dfs), "removed", len(removes))
	return r.expire(ctx, tbl)
}

// expire bounds tbl's history (Config.KeepSnapshots, KeepFor) once it
// has half as many snapshots again as it keeps: the snapshots are
// expired in one commit, then the manifests and manifest lists
// (*.avro) under the table's location that no snapshot references and
// that are older than KeepFor are deleted. Data files, which are the
// lake's and lie outside the table's location, and metadata files
// (which the catalog manages) are left alone. A crash in between
// leaves unreferenced manifests, deleted by a later expiry.
func (r *Reconciler) expire(ctx context.Context, tbl *table.Table) error {
	keep := r.cfg.KeepSnapshots
	if len(tbl.Metadata().Snapshots()) <= keep+keep/2 {
		return nil
	}
	txn := tbl.NewTransaction()
	if err := txn.ExpireSnapshots(table.WithRetainLast(keep), table.WithOlderThan(r.cfg.KeepFor), table.WithPostCommit(false)); err != nil {
		return fmt.Errorf("expire snapshots: %w", err)
	}
	tbl, err := txn.Commit(ctx)
	if err != nil {
		return fmt.Errorf("expire snapshots: %w", err)
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return fmt.Errorf("table io: %w", err)
	}
	var removed atomic.Int64
	_, err = tbl.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(r.cfg.KeepFor), table.WithDeleteFunc(func(path string) error {
		if !strings.HasSuffix(path, ".avro") {
			return nil
		}
		removed.Add(1)
		return fs.Remove(path)
	}))
	if err != nil {
		return fmt.Errorf("delete expired manifests: %w", err)
	}
	r.log.Debug("iceberg: snapshots expired", "table", strings.Join(tbl.Identifier(), "."), "kept", len(tbl.Metadata().Snapshots()), "manifests_deleted", removed.Load())
	return nil
}

// evolve adds to the table's schema, in txn, the columns of the added
// files it lacks (promoted attribute columns), by name, and to the
// table's name mapping.
func (r *Reconciler) evolve(ctx context.Context, tbl *table.Table, txn *table.Transaction, adds []sink.FileInfo) error {
	have := map[string]iceberg.Type{}
	for _, f := range tbl.Schema().Fields() {
		have[f.Name] = f.Type
	}
	var extra []arrow.Field
	added := map[string]iceberg.Type{}
	for _, f := range adds {
		if f.Columns == logschema.Arrow().NumFields() {
			continue
		}
		sc, err := fileSchema(ctx, r.cfg.IO, f)
		if err != nil {
			return err
		}
		fsc, err := icebergSchema(sc, tbl.Metadata().Version())
		if err != nil {
			return fmt.Errorf("%s: %w", f.Location, err)
		}
		for i, fld := range fsc.Fields() {
			typ, ok := have[fld.Name]
			if !ok {
				typ, ok = added[fld.Name]
			}
			if !ok {
				added[fld.Name] = fld.Type
				af := sc.Field(i)
				af.Nullable = true
				extra = append(extra, af)
				continue
			}
			if !readableAs(fld.Type, typ) {
				return fmt.Errorf("%w: column %s is %s in %s, %s in the table", ErrTypeConflict, fld.Name, fld.Type, f.Location, typ)
			}
		}
	}
	if len(extra) == 0 {
		return nil
	}
	isc, err := icebergSchema(arrow.NewSchema(extra, nil), tbl.Metadata().Version())
	if err != nil {
		return err
	}
	var opts []table.UpdateSchemaOption
	if nm := tbl.NameMapping(); nm != nil {
		opts = append(opts, table.WithNameMapping(nm))
	}
	if err := txn.UpdateSchema(true, false, opts...).UnionByNameWith(isc).Commit(); err != nil {
		return fmt.Errorf("add columns %v: %w", isc, err)
	}
	return nil
}

// readableAs reports whether a file column of type file reads as a
// table column of type tbl: the same type, or one Iceberg promotes
// (int to long, float to double).
func readableAs(file, tbl iceberg.Type) bool {
	switch {
	case file.Equals(tbl):
		return true
	case file.Equals(iceberg.PrimitiveTypes.Int32) && tbl.Equals(iceberg.PrimitiveTypes.Int64),
		file.Equals(iceberg.PrimitiveTypes.Float32) && tbl.Equals(iceberg.PrimitiveTypes.Float64):
		return true
	}
	return false
}

// create creates the table of ident with the log schema, partitioned by
// day(timestamp), its name mapping set (weir's files have no field IDs),
// in namespace ident[0], which it creates if missing. Format version 3
// (FormatVersion): its timestamptz_ns is the type of weir's timestamp
// columns, so an engine that follows the spec reads the files' INT64
// TIMESTAMP(NANOS) values as they are. Tables of version 2 that an
// older weir created stay version 2: Iceberg cannot change a column
// from timestamptz to timestamptz_ns, so upgrading them would change
// nothing a reader sees.
func (r *Reconciler) create(ctx context.Context, ident table.Identifier) (*table.Table, error) {
	ns := table.Identifier{ident[0]}
	ok, err := r.cat.CheckNamespaceExists(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("check namespace %s: %w", ns[0], err)
	}
	if !ok {
		if err := r.cat.CreateNamespace(ctx, ns, nil); err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
			return nil, fmt.Errorf("create namespace %s: %w", ns[0], err)
		}
	}
	sc, err := icebergSchema(logschema.Arrow(), FormatVersion)
	if err != nil {
		return nil, err
	}
	spec, err := daySpec(sc)
	if err != nil {
		return nil, err
	}
	mapping, err := json.Marshal(sc.NameMapping())
	if err != nil {
		return nil, err
	}
	tbl, err := r.cat.CreateTable(ctx, ident, sc,
		catalog.WithPartitionSpec(&spec),
		catalog.WithProperties(iceberg.Properties{
			ManagedProperty:             "true",
			table.DefaultNameMappingKey: string(mapping),
			"format-version":            strconv.Itoa(FormatVersion),
			// Each pass commits a snapshot: merge small manifests and
			// keep only the last metadata files, so a table's metadata
			// does not grow with every commit.
			table.ManifestMergeEnabledKey:             "true",
			table.ManifestMinMergeCountKey:            "16",
			table.MetadataDeleteAfterCommitEnabledKey: "true",
			table.MetadataPreviousVersionsMaxKey:      "20",
		}))
	if errors.Is(err, catalog.ErrTableAlreadyExists) {
		// A pass that crashed after creating it; use it.
		if tbl, err = r.cat.LoadTable(ctx, ident); err == nil && tbl.Properties()[ManagedProperty] != "true" {
			return nil, ErrNotManaged
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	return tbl, nil
}

package query

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weirlabs/weir/sink"
)

// Files evicted from the lake's local cache (sink.Remote.CacheBytes,
// docs/lake.md "The local cache") are kept in the bucket only. The engine
// is the lake's sink.Evicter: an evicted file leaves its stream's view in
// one view change, and Evicted returns once no query that may have seen
// it runs, so the lake deletes the local copy only when nothing reads it.
// The engine remembers the evicted files by tenant and stream.
//
// Before a user query runs, the engine works out which evicted files it
// may read (evictedFor: the streams it names, the logs view meaning all
// of them, and the hours its WHERE clauses bound timestamp to), has the
// Fetcher bring them back, puts them in the views again and runs the
// query; when it ends, the files are handed back to the lake, which may
// evict them again. Without evicted files none of this happens.

// Fetcher brings files evicted from the lake's local cache back to disk
// and pins them there until release is called: sink.Lake.Fetch. An error
// wrapping sink.ErrCacheTooSmall means the files do not fit in the cache
// together.
type Fetcher interface {
	Fetch(ctx context.Context, files []sink.FileInfo) (release func(), err error)
}

// Mender is implemented by a Fetcher that can put a sound copy in place
// of a local lake file a query could not read (damaged, cut short or
// missing): sink.Lake.Mend, for a lake in object storage. It reports
// whether it replaced the file.
type Mender interface {
	Mend(ctx context.Context, path string) (bool, error)
}

// maxMending bounds the lake files being mended at once.
const maxMending = 4

// mend has the Fetcher, if it is a Mender, put sound copies in place of
// lake files a query could not read, in the background: the query that
// found them fails all the same, later ones read the copies. Files being
// mended already, and more than maxMending at once, are skipped (a later
// failing query asks again; the Mender looks at each file once).
func (e *Engine) mend(paths []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, ok := e.fetcher.(Mender)
	if !ok || e.closed {
		return
	}
	for _, p := range paths {
		if e.mending[p] || len(e.mending) >= maxMending {
			continue
		}
		if e.mending == nil {
			e.mending = map[string]bool{}
		}
		e.mending[p] = true
		e.mends.Add(1)
		go func() {
			defer e.mends.Done()
			if _, err := m.Mend(e.mendCtx, p); err != nil {
				e.log.Error("query: could not mend a lake file a query could not read", "file", p, "err", err)
			}
			e.mu.Lock()
			delete(e.mending, p)
			e.mu.Unlock()
		}()
	}
}

// SetFetcher sets where queries fetch evicted files from. Set it before
// the lake evicts anything; without it, queries fail with a clear error
// when they need an evicted file.
func (e *Engine) SetFetcher(f Fetcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fetcher = f
}

// Evicted implements sink.Evicter: the files leave the views (not the
// lake) and Evicted returns once no query that started before that runs.
func (e *Engine) Evicted(files []sink.FileInfo) {
	byTenant := map[string][]sink.FileInfo{}
	for _, f := range files {
		byTenant[f.Partition.Tenant] = append(byTenant[f.Partition.Tenant], f)
	}
	for tenant, fs := range byTenant {
		c, err := e.catalog(tenant)
		if err != nil {
			e.mu.Lock()
			closed := e.closed
			e.mu.Unlock()
			if !closed {
				e.log.Error("query: evicted files of an unknown tenant", "tenant", tenant, "err", err)
			}
			continue
		}
		c.evict(fs)
	}
}

// evict keeps files as evicted, then takes them out of the views, and
// returns once no query that may read them runs. In that order: a query
// that starts once they are marked evicted fetches them (or starts over,
// enterQuery), and views that still list them are only read while they
// are on disk.
func (c *catalog) evict(files []sink.FileInfo) {
	c.mu.Lock()
	if c.conn == nil {
		c.mu.Unlock()
		return
	}
	byStream := map[string]map[string]bool{}
	for _, f := range files {
		s := f.Partition.Stream
		if byStream[s] == nil {
			byStream[s] = map[string]bool{}
		}
		byStream[s][f.Path] = true
		if c.evicted[s] == nil {
			c.evicted[s] = map[string]sink.FileInfo{}
		}
		c.evicted[s][f.ID] = f
	}
	c.nEvicted.Store(int64(c.evictedCountLocked()))
	// Queries that started before may read the files through the views.
	c.waitOlderLocked()
	if c.conn == nil {
		c.mu.Unlock()
		return
	}
	for s, gone := range byStream {
		c.files[s] = slices.DeleteFunc(c.files[s], func(path string) bool { return gone[path] })
		for p := range gone {
			delete(c.rolled, p)
			delete(c.schemas, p)
		}
		c.changedLocked(s)
	}
	c.mu.Unlock()
	if err := c.sync(context.Background()); err != nil {
		return // closed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// And those that started while the views still listed them.
	c.waitOlderLocked()
}

// waitOlderLocked waits until no query that started before now runs.
// mu must be held.
func (c *catalog) waitOlderLocked() {
	c.gen++
	g := c.gen
	for c.conn != nil && c.olderActiveLocked(g) {
		c.settled.Wait()
	}
}

// olderActiveLocked reports whether a query that started before gen g
// runs. mu must be held.
func (c *catalog) olderActiveLocked(g uint64) bool {
	for a := range c.active {
		if a < g {
			return true
		}
	}
	return false
}

func (c *catalog) evictedCountLocked() int {
	n := 0
	for _, m := range c.evicted {
		n += len(m)
	}
	return n
}

// forgetEvictedLocked drops files that left the lake from the evicted
// ones. mu must be held.
func (c *catalog) forgetEvictedLocked(files []sink.FileInfo) {
	for _, f := range files {
		if m := c.evicted[f.Partition.Stream]; m != nil {
			delete(m, f.ID)
		}
	}
	c.nEvicted.Store(int64(c.evictedCountLocked()))
}

// restore puts fetched files back in the views, like published files.
func (c *catalog) restore(ctx context.Context, files []sink.FileInfo) error {
	c.mu.Lock()
	for _, f := range files {
		s := f.Partition.Stream
		if _, ok := c.evicted[s][f.ID]; !ok {
			continue // back already, or gone from the lake
		}
		delete(c.evicted[s], f.ID)
		if !slices.Contains(c.files[s], f.Path) {
			c.files[s] = append(c.files[s], f.Path)
		}
		c.rolled[f.Path] = rollupCost(f)
		c.schemas[f.Path] = f.SchemaID()
		c.noteColumns(s, f.Columns)
		c.changedLocked(s)
		c.restored = c.changes
	}
	c.nEvicted.Store(int64(c.evictedCountLocked()))
	c.mu.Unlock()
	return c.sync(ctx)
}

// evictedFiles returns the evicted files of the streams refs name whose
// hours (dates, for day files) overlap the refs' bounds, leaving out those skip reports true
// for (skip may be nil).
func (c *catalog) evictedFiles(refs []tableRef, skip func(sink.FileInfo) bool) []sink.FileInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evictedFilesLocked(refs, skip)
}

func (c *catalog) evictedFilesLocked(refs []tableRef, skip func(sink.FileInfo) bool) []sink.FileInfo {
	seen := map[string]bool{}
	var out []sink.FileInfo
	for _, r := range refs {
		for s, m := range c.evicted {
			if r.name != "" && !readsAllStreams(r.name) && !strings.EqualFold(r.name, s) {
				continue
			}
			for id, f := range m {
				if !seen[id] && r.bound.overlaps(f.Partition.Hour, f.Partition.End()) && (skip == nil || !skip(f)) {
					seen[id] = true
					out = append(out, f)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b sink.FileInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// enterQuery registers a query (see enter) if, once it is registered,
// none of the files it needs is evicted (see evictedFilesLocked; refs
// nil: none is evicted at all), and waits until the views show the
// catalog as it stands then. Files evicted later wait for the query.
func (c *catalog) enterQuery(ctx context.Context, refs []tableRef, skip func(sink.FileInfo) bool) (exit func(), ok bool, err error) {
	exit = c.enter()
	c.mu.Lock()
	var missing bool
	if refs == nil {
		missing = c.nEvicted.Load() > 0
	} else {
		missing = len(c.evictedFilesLocked(refs, skip)) > 0
	}
	pending := c.applied < c.restored
	c.mu.Unlock()
	if missing {
		exit()
		return nil, false, nil
	}
	if pending {
		// Fetched files put back by other queries may not be in the
		// views yet.
		if err := c.sync(ctx); err != nil {
			exit()
			return nil, false, err
		}
	}
	return exit, true, nil
}

// maxFetchRounds bounds how often a query starts over because files it
// needs were evicted while it fetched others, or left the lake.
const maxFetchRounds = 16

// prepareFiles makes the evicted files a query may read (refs, called
// only when there are evicted files) local and visible, then registers
// the query (enter). The returned func ends both.
func (e *Engine) prepareFiles(ctx context.Context, c *catalog, refs func() []tableRef) (func(), error) {
	return e.prepareFilesExcept(ctx, c, refs, nil)
}

// prepareFilesExcept is prepareFiles leaving out the evicted files skip
// reports true for.
func (e *Engine) prepareFilesExcept(ctx context.Context, c *catalog, refsFn func() []tableRef, skip func(sink.FileInfo) bool) (func(), error) {
	if c.nEvicted.Load() == 0 {
		exit, ok, err := c.enterQuery(ctx, nil, nil)
		if err != nil {
			return nil, err
		}
		if ok {
			return exit, nil
		}
	}
	refs := refsFn()
	// Files fetched stay pinned across rounds, so each round has fewer
	// left to fetch.
	var releases []func()
	release := func() {
		for _, r := range releases {
			r()
		}
	}
	for range maxFetchRounds {
		need := c.evictedFiles(refs, skip)
		if len(need) > 0 {
			e.mu.Lock()
			f := e.fetcher
			e.mu.Unlock()
			if f == nil {
				release()
				return nil, fmt.Errorf("query: %d files the query reads are in object storage only and the engine has no fetcher", len(need))
			}
			r, err := f.Fetch(ctx, need)
			if errors.Is(err, sink.ErrGone) {
				// Compaction, retention or a delete took a file away
				// after the catalog listed it: list again once the
				// catalog shows the change.
				if err := c.sync(ctx); err != nil {
					release()
					return nil, err
				}
				continue
			}
			if err != nil {
				release()
				if errors.Is(err, sink.ErrCacheTooSmall) {
					return nil, fmt.Errorf("%w: the query reads %d files kept in object storage only, more than the local cache (sink.s3.cache_bytes) holds; narrow its time range with WHERE timestamp >= ... AND timestamp < ... (%v)", ErrResources, len(need), err)
				}
				return nil, fmt.Errorf("query: fetch files from object storage: %w", err)
			}
			releases = append(releases, e.releaser(r))
			if err := c.restore(ctx, need); err != nil {
				release()
				return nil, err
			}
		}
		exit, ok, err := c.enterQuery(ctx, refs, skip)
		if err != nil {
			release()
			return nil, err
		}
		if ok {
			return func() { exit(); release() }, nil
		}
	}
	release()
	return nil, fmt.Errorf("%w: files the query reads kept being evicted from the local cache; try again or narrow its time range", ErrBusy)
}

// releaser returns a func that hands fetched files back to the lake in
// the background: the lake may evict them, which waits for other running
// queries, and the query's caller must not wait for those.
func (e *Engine) releaser(release func()) func() {
	return func() {
		e.releases.Add(1)
		go func() {
			defer e.releases.Done()
			release()
		}()
	}
}

// tableRef is a table a statement reads, and the bound its WHERE clause
// puts on timestamp. name "" is any table (a Parquet reader).
type tableRef struct {
	name  string
	bound tsBound
}

// statementRefs parses query and returns the tables it reads. When the
// statement cannot be parsed, it reads every stream (the error is
// reported when it is vetted).
func statementRefs(ctx context.Context, conn *sql.Conn, query string) []tableRef {
	all := []tableRef{{}}
	rest, _, err := splitExplain(query)
	if err != nil {
		return all
	}
	var raw any
	if err := conn.QueryRowContext(ctx, "SELECT json_serialize_sql($1::VARCHAR)", trimStatementEnd(rest)).Scan(&raw); err != nil {
		return all
	}
	tree, ok := raw.(map[string]any)
	if !ok {
		s, isStr := raw.(string)
		if !isStr || json.Unmarshal([]byte(s), &tree) != nil {
			return all
		}
	}
	if failed, _ := tree["error"].(bool); failed {
		return all
	}
	var refs []tableRef
	collectRefs(tree["statements"], 0, &refs)
	return refs
}

// collectRefs appends the tables n reads: a SELECT's FROM table, when it
// is one table, with the bound of its WHERE clause; any other table
// reference unbounded; any Parquet reader as all streams.
func collectRefs(n any, depth int, out *[]tableRef) {
	if depth > maxSQLDepth {
		*out = append(*out, tableRef{})
		return
	}
	switch v := n.(type) {
	case map[string]any:
		switch v["type"] {
		case "SELECT_NODE":
			if ft, ok := v["from_table"].(map[string]any); ok && ft["type"] == "BASE_TABLE" {
				name, _ := ft["table_name"].(string)
				*out = append(*out, tableRef{name: name, bound: whereBound(v["where_clause"])})
				for k, c := range v {
					if k != "from_table" {
						collectRefs(c, depth+1, out)
					}
				}
				return
			}
		case "BASE_TABLE":
			name, _ := v["table_name"].(string)
			*out = append(*out, tableRef{name: name, bound: noBound})
		case "TABLE_FUNCTION":
			*out = append(*out, tableRef{bound: noBound})
		}
		for _, c := range v {
			collectRefs(c, depth+1, out)
		}
	case []any:
		for _, c := range v {
			collectRefs(c, depth+1, out)
		}
	}
}

// tsBound is an interval of timestamps: at or after lo when hasLo, at or
// before hi when hasHi (before it when hiOpen).
type tsBound struct {
	lo, hi       time.Time
	hasLo, hasHi bool
	hiOpen       bool
}

var noBound = tsBound{}

// overlapsHour reports whether a timestamp of the hour starting at h may
// be within b.
func (b tsBound) overlapsHour(h time.Time) bool { return b.overlaps(h, h.Add(time.Hour)) }

// overlaps reports whether a timestamp in [start, end) may be within b:
// the span of a file's hour, or of its date for a day file.
func (b tsBound) overlaps(start, end time.Time) bool {
	if b.hasLo && !end.After(b.lo) {
		return false
	}
	if b.hasHi && (start.After(b.hi) || b.hiOpen && start.Equal(b.hi)) {
		return false
	}
	return true
}

func (b tsBound) and(o tsBound) tsBound {
	if o.hasLo && (!b.hasLo || o.lo.After(b.lo)) {
		b.lo, b.hasLo = o.lo, true
	}
	if o.hasHi && (!b.hasHi || o.hi.Before(b.hi) || o.hi.Equal(b.hi) && o.hiOpen) {
		b.hi, b.hasHi, b.hiOpen = o.hi, true, o.hiOpen
	}
	return b
}

// whereBound is the bound a WHERE clause puts on the timestamp column:
// constant comparisons (>, >=, <, <=, =, BETWEEN) joined by AND. Anything
// else (OR, NOT, functions or casts of the column) bounds nothing.
func whereBound(n any) tsBound {
	v, ok := n.(map[string]any)
	if !ok {
		return noBound
	}
	switch t, _ := v["type"].(string); t {
	case "CONJUNCTION_AND":
		b := noBound
		children, _ := v["children"].([]any)
		for _, c := range children {
			b = b.and(whereBound(c))
		}
		return b
	case "COMPARE_BETWEEN":
		if !isTimestampColumn(v["input"]) {
			return noBound
		}
		var b tsBound
		b.lo, b.hasLo = constantTime(v["lower"])
		b.hi, b.hasHi = constantTime(v["upper"])
		return b
	case "COMPARE_EQUAL", "COMPARE_GREATERTHAN", "COMPARE_GREATERTHANOREQUALTO", "COMPARE_LESSTHAN", "COMPARE_LESSTHANOREQUALTO":
		col, val := v["left"], v["right"]
		flip := false
		if !isTimestampColumn(col) {
			col, val, flip = val, col, true
		}
		if !isTimestampColumn(col) {
			return noBound
		}
		ts, ok := constantTime(val)
		if !ok {
			return noBound
		}
		var b tsBound
		lower := t == "COMPARE_GREATERTHAN" || t == "COMPARE_GREATERTHANOREQUALTO"
		if flip {
			lower = t == "COMPARE_LESSTHAN" || t == "COMPARE_LESSTHANOREQUALTO"
		}
		if t == "COMPARE_EQUAL" || lower {
			b.lo, b.hasLo = ts, true
		}
		if t == "COMPARE_EQUAL" || !lower {
			b.hi, b.hasHi = ts, true
			b.hiOpen = t == "COMPARE_LESSTHAN" && !flip || t == "COMPARE_GREATERTHAN" && flip
		}
		return b
	}
	return noBound
}

// isTimestampColumn reports whether n is the timestamp column, bare or
// qualified by its table.
func isTimestampColumn(n any) bool {
	v, ok := n.(map[string]any)
	if !ok || v["type"] != "COLUMN_REF" {
		return false
	}
	names, _ := v["column_names"].([]any)
	if len(names) == 0 || len(names) > 2 {
		return false
	}
	last, _ := names[len(names)-1].(string)
	return strings.EqualFold(last, "timestamp")
}

// timeLayouts are the forms of timestamp constants a bound is taken
// from; times without a zone are UTC, as in the query databases.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// constantTime returns the time of a string constant, or of a cast of
// one to TIMESTAMP, TIMESTAMPTZ or DATE.
func constantTime(n any) (time.Time, bool) {
	v, ok := n.(map[string]any)
	if !ok {
		return time.Time{}, false
	}
	if v["type"] == "OPERATOR_CAST" {
		ct, _ := v["cast_type"].(map[string]any)
		id, _ := ct["id"].(string)
		switch id {
		case "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "DATE":
		default:
			return time.Time{}, false
		}
		if try, _ := v["try_cast"].(bool); try {
			return time.Time{}, false
		}
		return constantTime(v["child"])
	}
	if v["type"] != "VALUE_CONSTANT" {
		return time.Time{}, false
	}
	val, _ := v["value"].(map[string]any)
	typ, _ := val["type"].(map[string]any)
	if typ["id"] != "VARCHAR" {
		return time.Time{}, false
	}
	if null, _ := val["is_null"].(bool); null {
		return time.Time{}, false
	}
	s, _ := val["value"].(string)
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

package query

import (
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// Partition scans (ScanPartition) read the Parquet files of the catalog
// directly, with arrow-go's pqarrow reader, rather than through DuckDB:
// a consumer catching up from the earliest record reads at the speed of
// a Parquet reader, not of a row-by-row SQL result.
//
// A scan takes a snapshot of the stream's published files and staged
// segments under the catalog's lock. Publishing swaps a file's staged
// segments for the file, and compaction swaps files for their
// replacement, in one change of that list, so a snapshot holds every row
// at most once (like a view). The snapshot is at least as new as the
// views: a scan after Sync sees everything a query after Sync sees.
// Files of the snapshot are kept on disk until the scan ends (enter).
//
// Row groups are chosen by their _partition and _offset statistics. A
// scan decodes a row group whole and keeps it, decoded, in a cache
// shared by the engine's scans, bounded by scanCacheRows: consecutive
// scans of one subscription (a batch after another) read it from there.
// Files are never changed in place (a rewrite is a new file with a new
// name), so a cached row group never goes stale.

// scanCacheRows bounds the rows of the decoded row groups the engine
// keeps for partition scans: four of the lake's default row groups
// (sink.Config.RowGroupRows), about 40 MiB of log records. Past it the
// least recently used are dropped and decoded again when needed.
const scanCacheRows = 4 * 128 << 10

// scanCacheFooters bounds the footers kept; past it the footer cache
// starts over.
const scanCacheFooters = 100_000

// groupStats are what a file's footer says of one row group.
type groupStats struct {
	rows           int64
	partMin        int32
	partMax        int32
	offMin, offMax int64
}

type groupKey struct {
	path string
	rg   int
}

// decodedGroup is a row group's records in offset order, all of one
// partition.
type decodedGroup struct {
	key  groupKey
	part int32
	offs []int64 // ascending
	recs []record.Record
}

// scanCache is the engine's cache of footers and decoded row groups. Its
// methods are safe for concurrent use.
type scanCache struct {
	mem memory.Allocator

	mu      sync.Mutex
	footers map[string][]groupStats
	groups  map[groupKey]*list.Element // of *decodedGroup
	lru     list.List                  // front: most recently used
	rows    int
}

func newScanCache() *scanCache {
	return &scanCache{mem: memory.DefaultAllocator, footers: map[string][]groupStats{}, groups: map[groupKey]*list.Element{}}
}

// footer returns the row groups of the file at path.
func (sc *scanCache) footer(path string) ([]groupStats, error) {
	sc.mu.Lock()
	gs, ok := sc.footers[path]
	sc.mu.Unlock()
	if ok {
		return gs, nil
	}
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("query: read footer of %q: %w", path, err)
	}
	defer r.Close()
	gs, err = footerStats(r.MetaData())
	if err != nil {
		return nil, fmt.Errorf("query: %q: %w", path, err)
	}
	sc.mu.Lock()
	if len(sc.footers) >= scanCacheFooters {
		clear(sc.footers)
	}
	sc.footers[path] = gs
	sc.mu.Unlock()
	return gs, nil
}

// footerStats reads the _partition and _offset statistics of every row
// group. A row group without them gets the widest range, so that it is
// always read.
func footerStats(md *metadata.FileMetaData) ([]groupStats, error) {
	pi := md.Schema.ColumnIndexByName(logschema.Partition)
	oi := md.Schema.ColumnIndexByName(logschema.Offset)
	if pi < 0 || oi < 0 || md.Schema.Column(pi).PhysicalType() != parquet.Types.Int32 || md.Schema.Column(oi).PhysicalType() != parquet.Types.Int64 {
		return nil, errors.New("no _partition and _offset columns")
	}
	out := make([]groupStats, md.NumRowGroups())
	for i := range out {
		rg := md.RowGroup(i)
		g := groupStats{rows: rg.NumRows(), partMin: -1 << 31, partMax: 1<<31 - 1, offMin: -1 << 63, offMax: 1<<63 - 1}
		if cc, err := rg.ColumnChunk(pi); err == nil {
			if st, err := cc.Statistics(); err == nil {
				if s, ok := st.(*metadata.Int32Statistics); ok && s.HasMinMax() {
					g.partMin, g.partMax = s.Min(), s.Max()
				}
			}
		}
		if cc, err := rg.ColumnChunk(oi); err == nil {
			if st, err := cc.Statistics(); err == nil {
				if s, ok := st.(*metadata.Int64Statistics); ok && s.HasMinMax() {
					g.offMin, g.offMax = s.Min(), s.Max()
				}
			}
		}
		out[i] = g
	}
	return out, nil
}

// group returns row group k of partition part, decoded.
func (sc *scanCache) group(ctx context.Context, k groupKey, part int32) (*decodedGroup, error) {
	sc.mu.Lock()
	if el := sc.groups[k]; el != nil && el.Value.(*decodedGroup).part == part {
		sc.lru.MoveToFront(el)
		sc.mu.Unlock()
		return el.Value.(*decodedGroup), nil
	}
	sc.mu.Unlock()
	g, err := decodeGroup(ctx, sc.mem, k, part)
	if err != nil {
		return nil, err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if el := sc.groups[k]; el != nil {
		sc.rows -= len(el.Value.(*decodedGroup).recs)
		sc.lru.Remove(el)
	}
	sc.groups[k] = sc.lru.PushFront(g)
	sc.rows += len(g.recs)
	for sc.rows > scanCacheRows && sc.lru.Len() > 1 {
		el := sc.lru.Back()
		old := el.Value.(*decodedGroup)
		sc.lru.Remove(el)
		delete(sc.groups, old.key)
		sc.rows -= len(old.recs)
	}
	return g, nil
}

// decodeGroup reads row group k.rg of the file k.path and returns its
// records of partition part in offset order.
func decodeGroup(ctx context.Context, mem memory.Allocator, k groupKey, part int32) (*decodedGroup, error) {
	r, err := file.OpenParquetFile(k.path, false)
	if err != nil {
		return nil, fmt.Errorf("query: open %q: %w", k.path, err)
	}
	defer r.Close()
	fr, err := pqarrow.NewFileReader(r, pqarrow.ArrowReadProperties{Parallel: true, BatchSize: 64 << 10}, mem)
	if err != nil {
		return nil, fmt.Errorf("query: read %q: %w", k.path, err)
	}
	// The leaves of the columns records are made of: not service_name
	// (the resource's service.name), nor promoted attribute columns.
	want := map[string]bool{}
	for _, c := range logschema.Columns() {
		want[c.Name] = c.Name != logschema.ServiceName
	}
	var cols []int
	schema := r.MetaData().Schema
	for i := range schema.NumColumns() {
		if path := schema.Column(i).ColumnPath(); len(path) > 0 && want[path[0]] {
			cols = append(cols, i)
		}
	}
	tbl, err := fr.ReadRowGroups(ctx, cols, []int{k.rg})
	if err != nil {
		return nil, fmt.Errorf("query: read %q row group %d: %w", k.path, k.rg, err)
	}
	defer tbl.Release()
	g := &decodedGroup{key: k, part: part}
	g.recs = make([]record.Record, 0, tbl.NumRows())
	g.offs = make([]int64, 0, tbl.NumRows())
	tr := array.NewTableReader(tbl, 0)
	defer tr.Release()
	for tr.Next() {
		if err := g.appendBatch(tr.RecordBatch(), part); err != nil {
			return nil, fmt.Errorf("query: %q row group %d: %w", k.path, k.rg, err)
		}
	}
	if err := tr.Err(); err != nil {
		return nil, fmt.Errorf("query: read %q row group %d: %w", k.path, k.rg, err)
	}
	if !slices.IsSorted(g.offs) {
		sort.Sort(byOffset{g})
	}
	return g, nil
}

type byOffset struct{ g *decodedGroup }

func (b byOffset) Len() int           { return len(b.g.offs) }
func (b byOffset) Less(i, j int) bool { return b.g.offs[i] < b.g.offs[j] }
func (b byOffset) Swap(i, j int) {
	b.g.offs[i], b.g.offs[j] = b.g.offs[j], b.g.offs[i]
	b.g.recs[i], b.g.recs[j] = b.g.recs[j], b.g.recs[i]
}

// appendBatch converts the rows of rec that belong to partition part.
// Strings share one copy of each column's bytes per batch rather than
// one allocation per value.
func (g *decodedGroup) appendBatch(rec arrow.RecordBatch, part int32) error {
	col := func(name string) (arrow.Array, error) {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("no column %s", name)
		}
		return rec.Column(idx[0]), nil
	}
	var arrs [12]arrow.Array
	names := [12]string{logschema.Timestamp, logschema.ObservedTimestamp, logschema.SeverityNumber, logschema.SeverityText,
		logschema.Body, logschema.Attributes, logschema.Resource, logschema.TraceID, logschema.SpanID, logschema.Flags,
		logschema.Partition, logschema.Offset}
	for i, n := range names {
		a, err := col(n)
		if err != nil {
			return err
		}
		arrs[i] = a
	}
	ts, ok1 := arrs[0].(*array.Timestamp)
	obs, ok2 := arrs[1].(*array.Timestamp)
	sev, ok3 := arrs[2].(*array.Int32)
	sevText, ok4 := strColumn(arrs[3])
	body, ok5 := strColumn(arrs[4])
	attrs, ok6 := mapColumn(arrs[5])
	res, ok7 := mapColumn(arrs[6])
	trace, ok8 := strColumn(arrs[7])
	span, ok9 := strColumn(arrs[8])
	flags, ok10 := arrs[9].(*array.Uint32)
	parts, ok11 := arrs[10].(*array.Int32)
	offs, ok12 := arrs[11].(*array.Int64)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8 && ok9 && ok10 && ok11 && ok12) {
		return errors.New("columns of unexpected types")
	}
	n := int(rec.NumRows())
	for i := range n {
		if parts.IsNull(i) || parts.Value(i) != part || offs.IsNull(i) {
			continue
		}
		r := record.Record{
			Timestamp:         int64(ts.Value(i)),
			ObservedTimestamp: int64(obs.Value(i)),
			SeverityNumber:    sev.Value(i),
			SeverityText:      sevText.value(i),
			Body:              body.value(i),
			Attributes:        attrs.value(i),
			Resource:          res.value(i),
			Flags:             flags.Value(i),
		}
		if !trace.a.IsNull(i) {
			if _, err := hex.Decode(r.TraceID[:], []byte(trace.value(i))); err != nil {
				return fmt.Errorf("trace_id at offset %d: %w", offs.Value(i), err)
			}
		}
		if !span.a.IsNull(i) {
			if _, err := hex.Decode(r.SpanID[:], []byte(span.value(i))); err != nil {
				return fmt.Errorf("span_id at offset %d: %w", offs.Value(i), err)
			}
		}
		g.offs = append(g.offs, offs.Value(i))
		g.recs = append(g.recs, r)
	}
	return nil
}

// strCol reads a string column from one copy of its bytes.
type strCol struct {
	a    *array.String
	data string
	offs []int32
	base int32
}

func strColumn(a arrow.Array) (strCol, bool) {
	s, ok := a.(*array.String)
	if !ok {
		return strCol{}, false
	}
	offs := s.ValueOffsets()
	c := strCol{a: s, data: string(s.ValueBytes()), offs: offs}
	if len(offs) > 0 {
		c.base = offs[0]
	}
	return c, true
}

func (c strCol) value(i int) string {
	if c.a.IsNull(i) {
		return ""
	}
	return c.data[c.offs[i]-c.base : c.offs[i+1]-c.base]
}

// mapCol reads a MAP(VARCHAR, VARCHAR) column into key-value slices that
// share one backing array per batch.
type mapCol struct {
	m          *array.Map
	offs       []int32
	keys, vals strCol
	kvs        []record.KV
}

func mapColumn(a arrow.Array) (*mapCol, bool) {
	m, ok := a.(*array.Map)
	if !ok {
		return nil, false
	}
	keys, ok1 := strColumn(m.Keys())
	vals, ok2 := strColumn(m.Items())
	if !ok1 || !ok2 {
		return nil, false
	}
	c := &mapCol{m: m, offs: m.Offsets(), keys: keys, vals: vals}
	if n := m.Len(); n > 0 {
		c.kvs = make([]record.KV, 0, int(c.offs[n]-c.offs[0]))
	}
	return c, true
}

// value returns row i's pairs in the order they were written.
func (c *mapCol) value(i int) []record.KV {
	if c.m.IsNull(i) {
		return nil
	}
	lo, hi := int(c.offs[i]), int(c.offs[i+1])
	if lo == hi {
		return nil
	}
	start := len(c.kvs)
	for j := lo; j < hi; j++ {
		c.kvs = append(c.kvs, record.KV{Key: c.keys.value(j), Value: c.vals.value(j)})
	}
	return c.kvs[start:len(c.kvs):len(c.kvs)]
}

// partitionFiles returns the published files and staged segments of
// stream as they stand. c.mu must not be held.
func (c *catalog) partitionFiles(stream string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	paths := slices.Clone(c.files[stream])
	for _, sf := range c.staged {
		if sf.stream == stream {
			paths = append(paths, sf.segments...)
		}
	}
	return paths
}

// scanPartition: see ScanPartition. Files of the partition evicted from
// the lake's local cache are fetched a few at a time, in offset order:
// each round reads the records below the lowest offset of the evicted
// files it did not fetch.
func (e *Engine) scanPartition(ctx context.Context, c *catalog, stream string, part int32, after int64, limit int, fn func(Position, record.Record) error) (int, error) {
	n, retries := 0, 0
	// Files fetched by rounds that started over stay pinned until a
	// round reads, so each try has fewer left to fetch.
	var held []func()
	releaseHeld := func() {
		for _, r := range held {
			r()
		}
		held = nil
	}
	defer func() { releaseHeld() }()
	for n < limit {
		extra, stopAt, release, err := e.fetchForScan(ctx, c, stream, part, after)
		if errors.Is(err, sink.ErrGone) && retries < maxFetchRounds {
			// A file left the lake after the catalog listed it: list
			// again once the catalog shows the change.
			retries++
			if err := c.sync(ctx); err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		// enter before the snapshot: a file retired or evicted after it
		// stays on disk until the scan ends.
		exit := c.enter()
		if c.scanMissing(stream, part, after, stopAt, extra) {
			exit()
			held = append(held, release)
			if retries++; retries > maxFetchRounds {
				return n, fmt.Errorf("%w: files the scan reads kept being evicted from the local cache", ErrBusy)
			}
			continue
		}
		k, err := e.scanFiles(ctx, c, stream, part, after, limit-n, extra, stopAt, fn)
		exit()
		release()
		releaseHeld()
		n += k
		if err != nil || stopAt == math.MaxInt64 || n >= limit {
			return n, err
		}
		// Every record below stopAt was read.
		after = max(after, stopAt-1)
	}
	return n, nil
}

// fetchForScan fetches the evicted files of the partition that hold
// offsets above after: the one with the lowest offsets and those that
// overlap it. It returns their paths and the lowest offset of the
// evicted files left out (math.MaxInt64 if none).
func (e *Engine) fetchForScan(ctx context.Context, c *catalog, stream string, part int32, after int64) (paths []string, stopAt int64, release func(), err error) {
	release = func() {}
	stopAt = math.MaxInt64
	c.mu.Lock()
	var fs []sink.FileInfo
	for _, f := range c.evicted[stream] {
		if f.Partition.Part == part && (f.MaxOffset < 0 || f.MaxOffset > after) {
			fs = append(fs, f)
		}
	}
	c.mu.Unlock()
	if len(fs) == 0 {
		return nil, stopAt, release, nil
	}
	slices.SortFunc(fs, func(a, b sink.FileInfo) int { return cmpInt64(a.MinOffset, b.MinOffset) })
	var need []sink.FileInfo
	for _, f := range fs {
		if len(need) == 0 || f.MinOffset <= fs[0].MaxOffset {
			need = append(need, f)
			continue
		}
		stopAt = min(stopAt, f.MinOffset)
	}
	e.mu.Lock()
	fetcher := e.fetcher
	e.mu.Unlock()
	if fetcher == nil {
		return nil, 0, nil, fmt.Errorf("query: %d files of the stream are in object storage only and the engine has no fetcher", len(need))
	}
	r, err := fetcher.Fetch(ctx, need)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("query: fetch files from object storage: %w", err)
	}
	for _, f := range need {
		paths = append(paths, f.Path)
	}
	return paths, stopAt, e.releaser(r), nil
}

// scanMissing reports whether an evicted file of the partition may hold
// offsets above after and below stopAt and is not among fetched.
func (c *catalog) scanMissing(stream string, part int32, after, stopAt int64, fetched []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.evicted[stream] {
		if f.Partition.Part == part && (f.MaxOffset < 0 || f.MaxOffset > after) && f.MinOffset < stopAt && !slices.Contains(fetched, f.Path) {
			return true
		}
	}
	return false
}

// scanFiles reads up to limit records of the partition with offsets
// above after and below stopAt from the stream's files and segments and
// the extra (fetched) files. The scan must be entered.
func (e *Engine) scanFiles(ctx context.Context, c *catalog, stream string, part int32, after int64, limit int, extra []string, stopAt int64, fn func(Position, record.Record) error) (int, error) {
	type cand struct {
		k      groupKey
		offMin int64
	}
	var cands []cand
	paths := c.partitionFiles(stream)
	for _, p := range extra {
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	for _, path := range paths {
		gs, err := e.scans.footer(path)
		if err != nil {
			return 0, err
		}
		for i, g := range gs {
			if g.rows > 0 && g.partMin <= part && part <= g.partMax && g.offMax > after && g.offMin < stopAt {
				cands = append(cands, cand{groupKey{path, i}, g.offMin})
			}
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmpInt64(a.offMin, b.offMin) })

	// Merge the row groups by offset, decoding one only once the merge
	// reaches the lowest offset it may hold.
	type head struct {
		g *decodedGroup
		i int
	}
	var heads []head
	n := 0
	for n < limit {
		best := -1
		for j, h := range heads {
			if best < 0 || h.g.offs[h.i] < heads[best].g.offs[heads[best].i] {
				best = j
			}
		}
		if len(cands) > 0 && (best < 0 || cands[0].offMin <= heads[best].g.offs[heads[best].i]) {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			g, err := e.scans.group(ctx, cands[0].k, part)
			if err != nil {
				return n, err
			}
			cands = cands[1:]
			if i := sort.Search(len(g.offs), func(i int) bool { return g.offs[i] > after }); i < len(g.offs) {
				heads = append(heads, head{g, i})
			}
			continue
		}
		if best < 0 {
			break
		}
		h := &heads[best]
		if h.g.offs[h.i] >= stopAt {
			break
		}
		if err := fn(Position{part, h.g.offs[h.i]}, h.g.recs[h.i]); err != nil {
			return n, err
		}
		n++
		if h.i++; h.i == len(h.g.offs) {
			heads = slices.Delete(heads, best, best+1)
		}
	}
	return n, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package query

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// TestTimestampBounds: the bounds taken from WHERE clauses; OR, NOT,
// functions and casts of the column, and non-constant values bound
// nothing.
func TestTimestampBounds(t *testing.T) {
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	lo := func(s string) tsBound { return tsBound{lo: ts(s), hasLo: true} }
	hi := func(s string) tsBound { return tsBound{hi: ts(s), hasHi: true} }
	both := func(a, b string) tsBound { return tsBound{lo: ts(a), hasLo: true, hi: ts(b), hasHi: true} }
	open := func(b tsBound) tsBound { b.hiOpen = true; return b }
	for _, tc := range []struct {
		sql  string
		want []tableRef
	}{
		{"SELECT count(*) FROM logs", []tableRef{{name: "logs"}}},
		{"SELECT * FROM a WHERE timestamp >= '2026-01-01 01:00' AND timestamp < '2026-01-01 02:00:00'", []tableRef{{"a", open(both("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"))}}},
		{"SELECT * FROM a WHERE timestamp > TIMESTAMP '2026-01-01 01:30:00.5'", []tableRef{{"a", lo("2026-01-01T01:30:00.5Z")}}},
		{"SELECT * FROM a WHERE '2026-01-01T03:00:00+02:00'::TIMESTAMPTZ <= a.timestamp", []tableRef{{"a", lo("2026-01-01T01:00:00Z")}}},
		{"SELECT * FROM a WHERE '2026-01-01 02:00' > timestamp", []tableRef{{"a", open(hi("2026-01-01T02:00:00Z"))}}},
		{"SELECT * FROM a WHERE timestamp <= DATE '2026-01-02' AND level = 'x'", []tableRef{{"a", hi("2026-01-02T00:00:00Z")}}},
		{"SELECT * FROM a WHERE timestamp = '2026-01-01 05:00'", []tableRef{{"a", both("2026-01-01T05:00:00Z", "2026-01-01T05:00:00Z")}}},
		{"SELECT * FROM a WHERE timestamp BETWEEN '2026-01-01' AND '2026-01-02'", []tableRef{{"a", both("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")}}},
		{"SELECT * FROM a WHERE x = 1 AND (timestamp < '2026-01-01' AND timestamp > '2025-12-31')", []tableRef{{"a", open(both("2025-12-31T00:00:00Z", "2026-01-01T00:00:00Z"))}}},
		// No bound.
		{"SELECT * FROM a WHERE timestamp > '2026-01-01' OR x = 1", []tableRef{{name: "a"}}},
		{"SELECT * FROM a WHERE NOT timestamp < '2026-01-01'", []tableRef{{"a", lo("2026-01-01T00:00:00Z")}}}, // the parser's a >= b
		{"SELECT * FROM a WHERE NOT (timestamp < '2026-01-01' AND x = 1)", []tableRef{{name: "a"}}},
		{"SELECT * FROM a WHERE CAST(timestamp AS DATE) = '2026-01-01'", []tableRef{{name: "a"}}},
		{"SELECT * FROM a WHERE date_trunc('hour', timestamp) = '2026-01-01 01:00'", []tableRef{{name: "a"}}},
		{"SELECT * FROM a WHERE timestamp > now() - INTERVAL 1 HOUR", []tableRef{{name: "a"}}},
		{"SELECT * FROM a WHERE timestamp > TRY_CAST('2026-01-01' AS TIMESTAMP)", []tableRef{{name: "a"}}},
		{"SELECT * FROM a WHERE timestamp > 'yesterday-ish'", []tableRef{{name: "a"}}},
		{"SELECT * FROM a WHERE observed_timestamp > '2026-01-01'", []tableRef{{name: "a"}}},
		// Tables not alone in a FROM are read unbounded; Parquet readers
		// may read any stream.
		{"SELECT * FROM a JOIN b USING (trace_id) WHERE timestamp > '2026-01-01'", []tableRef{{name: "a"}, {name: "b"}}},
		{"SELECT * FROM (SELECT * FROM a) WHERE timestamp > '2026-01-01'", []tableRef{{name: "a"}}},
		{"SELECT * FROM read_parquet('x.parquet')", []tableRef{{}}},
		{"SELECT * FROM a WHERE timestamp > '2026-01-01' UNION ALL SELECT * FROM b WHERE timestamp < '2026-01-01'", []tableRef{{"a", lo("2026-01-01T00:00:00Z")}, {"b", open(hi("2026-01-01T00:00:00Z"))}}},
		{"EXPLAIN SELECT * FROM a WHERE timestamp > '2026-01-01'", []tableRef{{"a", lo("2026-01-01T00:00:00Z")}}},
		{"SELEC broken", []tableRef{{}}},
	} {
		got := statementRefs(context.Background(), conn, tc.sql)
		slices.SortFunc(got, func(a, b tableRef) int { return strings.Compare(a.name, b.name) })
		if !slices.EqualFunc(got, tc.want, func(a, b tableRef) bool {
			return a.name == b.name && a.bound.hasLo == b.bound.hasLo && a.bound.hasHi == b.bound.hasHi && a.bound.hiOpen == b.bound.hiOpen && a.bound.lo.Equal(b.bound.lo) && a.bound.hi.Equal(b.bound.hi)
		}) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.sql, got, tc.want)
		}
	}
	h := ts("2026-01-01T01:00:00Z")
	for _, tc := range []struct {
		b    tsBound
		want bool
	}{
		{noBound, true},
		{lo("2026-01-01T01:59:59Z"), true},
		{lo("2026-01-01T02:00:00Z"), false},
		{hi("2026-01-01T01:00:00Z"), true},
		{hi("2026-01-01T00:59:59Z"), false},
		{open(hi("2026-01-01T01:00:00Z")), false},
		{open(hi("2026-01-01T01:00:00.001Z")), true},
		{both("2026-01-01T00:00:00Z", "2026-01-01T00:30:00Z"), false},
	} {
		if got := tc.b.overlapsHour(h); got != tc.want {
			t.Errorf("%+v overlaps the hour at %s: %v, want %v", tc.b, h, got, tc.want)
		}
	}
}

// fakeCache plays the lake's local cache: Evict hands files to the
// engine (sink.Evicter) and then moves them away, as the lake deletes
// them; Fetch moves them back and pins them; release evicts them again.
type fakeCache struct {
	t     *testing.T
	e     *Engine
	away  string
	limit int64

	trimMu  sync.Mutex // held by evict throughout, and by Fetch, like the lake's
	mu      sync.Mutex
	gone    int      // Fetches left to fail with sink.ErrGone
	fetched []string // IDs, by Fetch
	pins    map[string]int
	evicted map[string]sink.FileInfo
}

func (f *fakeCache) evict(files []sink.FileInfo) {
	f.trimMu.Lock()
	defer f.trimMu.Unlock()
	var gone []sink.FileInfo
	f.mu.Lock()
	for _, fi := range files {
		if f.pins[fi.ID] == 0 && f.evicted[fi.ID].ID == "" {
			fi.Evicted = true
			gone = append(gone, fi)
		}
	}
	f.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	f.e.Evicted(gone)
	for _, fi := range gone {
		if err := os.Rename(fi.Path, filepath.Join(f.away, fi.ID)); err != nil {
			f.t.Error(err)
		}
	}
	f.mu.Lock()
	for _, fi := range gone {
		f.evicted[fi.ID] = fi
	}
	f.mu.Unlock()
}

func (f *fakeCache) Fetch(ctx context.Context, files []sink.FileInfo) (func(), error) {
	f.trimMu.Lock()
	defer f.trimMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone > 0 {
		// As if a file left the lake after the catalog listed it.
		f.gone--
		return nil, fmt.Errorf("%w: %s", sink.ErrGone, files[0].ID)
	}
	var total int64
	for _, fi := range files {
		total += fi.Bytes
	}
	if total > f.limit {
		return nil, fmt.Errorf("%w: %d bytes", sink.ErrCacheTooSmall, total)
	}
	for _, fi := range files {
		f.pins[fi.ID]++
		if f.evicted[fi.ID].ID != "" {
			if err := os.Rename(filepath.Join(f.away, fi.ID), fi.Path); err != nil {
				return nil, err
			}
			delete(f.evicted, fi.ID)
			f.fetched = append(f.fetched, fi.ID)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			for _, fi := range files {
				f.pins[fi.ID]--
			}
			f.mu.Unlock()
			f.evict(files)
		})
	}, nil
}

func (f *fakeCache) takeFetched() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.fetched
	f.fetched = nil
	slices.Sort(out)
	return out
}

// waitEvicted waits until n files are evicted.
func (f *fakeCache) waitEvicted(n int) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.evicted)
		f.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d files evicted, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQueriesFetchEvictedFiles: files evicted from the lake's cache
// leave the views; a query fetches the evicted files of the streams and
// hours it reads, sees every row once, and hands them back; a query
// needing more than the cache holds is refused with ErrResources; a
// partition scan reads every record of evicted files once.
func TestQueriesFetchEvictedFiles(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "lake")
	scfg.MaxFileAge = time.Hour
	scfg.DayFilesAfter = 0 // a file per hour, so that a query of one hour fetches one file
	lake, err := sink.New(scfg, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Shutdown(context.Background())
	h0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		writePartition(t, lake, "alpha", 0, h0.Add(time.Duration(i)*time.Hour), [][]int64{seq(int64(i)*10, int64(i)*10+10)}, true)
	}
	writePartition(t, lake, "beta", 0, h0, [][]int64{seq(0, 5)}, true)
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := lake.Files()
	if len(files) != 4 {
		t.Fatalf("%d files, want 4", len(files))
	}
	var total int64
	for _, f := range files {
		total += f.Bytes
	}
	fc := &fakeCache{t: t, e: e, away: t.TempDir(), limit: total, pins: map[string]int{}, evicted: map[string]sink.FileInfo{}}
	e.SetFetcher(fc)
	fc.evict(files)
	for _, f := range files {
		if _, err := os.Stat(f.Path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is still local: %v", f.Path, err)
		}
	}

	if got := queryInts(t, e, "SELECT count(*), count(DISTINCT _offset) FILTER (stream = 'alpha'), sum(_offset)::BIGINT FROM logs"); !slices.Equal(got, []int64{35, 30, 435 + 10}) {
		t.Errorf("all of logs: %v, want 35 rows, 30 alpha offsets, offsets summing to 445", got)
	}
	if got := fc.takeFetched(); len(got) != 4 {
		t.Errorf("fetched %d files for all of logs, want 4", len(got))
	}
	fc.waitEvicted(4)

	var hour1 string
	for _, f := range files {
		if f.Partition.Stream == "alpha" && f.Partition.Hour.Equal(h0.Add(time.Hour)) {
			hour1 = f.ID
		}
	}
	if got := queryInts(t, e, "SELECT count(*), min(_offset) FROM alpha WHERE timestamp >= '2026-01-01 01:00' AND timestamp < '2026-01-01 02:00'"); !slices.Equal(got, []int64{10, 10}) {
		t.Errorf("alpha's second hour: %v, want 10 rows from offset 10", got)
	}
	if got := fc.takeFetched(); !slices.Equal(got, []string{hour1}) {
		t.Errorf("fetched %v for one hour of alpha, want %v", got, hour1)
	}
	fc.waitEvicted(4)
	if got := queryInts(t, e, "SELECT count(*) FROM beta"); got[0] != 5 {
		t.Errorf("beta: %d rows, want 5", got[0])
	}
	if got := fc.takeFetched(); len(got) != 1 {
		t.Errorf("fetched %d files for beta, want 1", len(got))
	}
	fc.waitEvicted(4)

	fc.mu.Lock()
	fc.limit = total - 1
	fc.mu.Unlock()
	_, err = e.Run(context.Background(), "SELECT count(*) FROM logs", Options{}, &rowsWriter{})
	if !errors.Is(err, ErrResources) || !strings.Contains(err.Error(), "narrow its time range") {
		t.Errorf("all of logs beyond the cache: %v, want ErrResources saying to narrow the time range", err)
	}

	var offs []int64
	n, err := e.ScanPartition(context.Background(), record.DefaultTenant, "alpha", 0, -1, 100, func(p Position, r record.Record) error {
		offs = append(offs, p.Offset)
		return nil
	})
	if err != nil || n != 30 || !slices.Equal(offs, seq(0, 30)) {
		t.Errorf("scan of alpha: %d records, %v, offsets %v; want 0..29 once each", n, err, offs)
	}
	n, err = e.ScanPartition(context.Background(), record.DefaultTenant, "alpha", 0, 14, 3, func(p Position, r record.Record) error { return nil })
	if err != nil || n != 3 {
		t.Errorf("scan of 3 records after 14: %d, %v", n, err)
	}
	fc.waitEvicted(4)

	// Offsets from a time: fetched files of the hours at or after it,
	// evicted earlier ones counted by their offsets.
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{{h0.Add(-time.Hour), 0}, {h0.Add(time.Hour), 10}, {h0.Add(2*time.Hour + time.Minute), 30}, {h0.Add(3 * time.Hour), 30}} {
		fc.waitEvicted(4)
		got, err := e.OffsetsSince(context.Background(), record.DefaultTenant, "alpha", tc.t)
		if err != nil || len(got) != 1 || got[0] != tc.want {
			t.Errorf("offsets of alpha since %s: %v, %v; want partition 0 at %d", tc.t, got, err, tc.want)
		}
	}
	fc.waitEvicted(4)
	offs = nil
	n, err = e.Scan(context.Background(), record.DefaultTenant, "alpha", Position{0, 4}, 100, func(p Position, r record.Record) error {
		offs = append(offs, p.Offset)
		return nil
	})
	if err != nil || n != 25 || !slices.Equal(offs, seq(5, 30)) {
		t.Errorf("scan of alpha after offset 4: %d records, %v, offsets %v; want 5..29", n, err, offs)
	}

	// A file that leaves the lake between the catalog's listing and the
	// fetch (sink.ErrGone) makes a query or a scan list again, not fail.
	for _, run := range []func() error{
		func() error {
			if got := queryInts(t, e, "SELECT count(*) FROM beta"); got[0] != 5 {
				return fmt.Errorf("beta: %d rows, want 5", got[0])
			}
			return nil
		},
		func() error {
			n, err := e.ScanPartition(context.Background(), record.DefaultTenant, "alpha", 0, -1, 100, func(Position, record.Record) error { return nil })
			if err != nil || n != 30 {
				return fmt.Errorf("scan of alpha: %d records, %v; want 30", n, err)
			}
			return nil
		},
	} {
		fc.waitEvicted(4)
		fc.mu.Lock()
		fc.gone = 1
		fc.mu.Unlock()
		if err := run(); err != nil {
			t.Error(err)
		}
		fc.mu.Lock()
		left := fc.gone
		fc.mu.Unlock()
		if left != 0 {
			t.Errorf("the fetch that fails was not tried")
		}
	}
}

// TestQueriesFetchEvictedConcurrently: queries of one stream, of one of
// its hours, of logs and partition scans run together while every
// release evicts the files again, so the views change under running
// queries: each answer counts every row once.
func TestQueriesFetchEvictedConcurrently(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	lake := openLake(t, e, dir, nil)
	defer lake.Shutdown(context.Background())
	h0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		writePartition(t, lake, "alpha", 0, h0.Add(time.Duration(i)*time.Hour), [][]int64{seq(int64(i)*10, int64(i)*10+10)}, true)
	}
	writePartition(t, lake, "beta", 0, h0, [][]int64{seq(0, 5)}, true)
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := lake.Files()
	var total int64
	for _, f := range files {
		total += f.Bytes
	}
	fc := &fakeCache{t: t, e: e, away: t.TempDir(), limit: total, pins: map[string]int{}, evicted: map[string]sink.FileInfo{}}
	e.SetFetcher(fc)
	fc.evict(files)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, q := range []struct {
		sql  string
		want int64
	}{
		{"SELECT count(*) FROM alpha", 30},
		{"SELECT count(*) FROM alpha WHERE timestamp >= '2026-01-01 02:00' AND timestamp < '2026-01-01 03:00'", 10},
		{"SELECT count(*) FROM logs", 35},
		{"SELECT count(*) FROM beta", 5},
	} {
		wg.Go(func() {
			for range 15 {
				var w rowsWriter
				if _, err := e.Run(ctx, q.sql, Options{}, &w); err != nil {
					errs <- fmt.Errorf("%s: %w", q.sql, err)
					return
				}
				if got := w.rows[0][0]; got != q.want {
					c, _ := e.catalog(record.DefaultTenant)
					c.mu.Lock()
					dbg := fmt.Sprintf("files %v evicted %d", c.files, c.evictedCountLocked())
					c.mu.Unlock()
					errs <- fmt.Errorf("%s: %v, want %d; %s", q.sql, got, q.want, dbg)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 15 {
			var offs []int64
			_, err := e.ScanPartition(ctx, record.DefaultTenant, "alpha", 0, -1, 100, func(p Position, r record.Record) error {
				offs = append(offs, p.Offset)
				return nil
			})
			if err != nil || !slices.Equal(offs, seq(0, 30)) {
				errs <- fmt.Errorf("scan of alpha: %v, offsets %v", err, offs)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

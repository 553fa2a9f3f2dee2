package sink

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// Compaction (docs/format.md, "Compaction") rewrites published files that
// are at least Config.CompactAge old: the files of one Partition, oldest
// first, up to Config.CompactInputBytes at a time, or the small files of
// a past date (see dueGroups), become one file whose rows are sorted by
// hour (newest first), service_name and timestamp within windows of
// Config.CompactSortRows rows and compressed at Config.CompactZstdLevel.
// Sorting puts the lines of one service side by side, which is what
// makes log text compress: on the benchmark's Loghub-shaped load it makes
// files about a quarter of their size (bench/RESULTS.md, "Bytes on
// disk"). A compacted file is
// marked (weir.compacted) and not compacted again, except by a day merge
// while it is small; it names the files it replaces (weir.replaces), so
// that a crash between publishing it and deleting them is repaired at the
// next start.

// Footer keys of compacted files.
const (
	metaCompacted = "weir.compacted" // "1"
	metaReplaces  = "weir.replaces"  // comma-separated IDs of the files it replaces
)

// compactor compacts due files every tick until ctx is cancelled.
func (l *Lake) compactor(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("stage", "compact")))
	t := time.NewTicker(l.cfg.compactTick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := l.Compact(ctx); err != nil && ctx.Err() == nil {
				l.log.Error("sink: compaction; retrying at the next tick", "err", err)
			}
		}
	}
}

// Compact compacts every group of published files that is due (see
// Config.CompactAge), one group at a time, and returns how many files it
// replaced, and the errors of the groups it could not compact (they stay
// as they are). It returns early, with ctx's error, when ctx is done; a
// compaction cut short leaves the lake as it was. Start runs it
// periodically when CompactAge is set; concurrent calls take turns.
func (l *Lake) Compact(ctx context.Context) (replaced int, err error) {
	return l.compact(ctx, time.Now())
}

// compact is Compact with the groups due at now.
func (l *Lake) compact(ctx context.Context, now time.Time) (replaced int, err error) {
	select {
	case l.compacting <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-l.compacting }()
	// Hour directories that day merges emptied (their files are deleted
	// once no query reads them) go at a later pass.
	l.removeEmptyDirs()
	var errs []error
	for _, g := range l.dueGroups(now) {
		if err := ctx.Err(); err != nil {
			return replaced, err
		}
		// A group that fails (a file that cannot be read, a full disk)
		// stays as it is and is tried again next time; the others go
		// on.
		if err := l.compactGroup(ctx, g); err != nil {
			if ctx.Err() != nil {
				return replaced, ctx.Err()
			}
			l.cst.failures.Add(1)
			errs = append(errs, err)
			if path := l.noteUndecodable(err); path != "" && l.rem != nil {
				// The bucket's copy may be sound: in place, the file is
				// compacted again at the next pass.
				if _, err := l.Mend(ctx, path); err != nil {
					l.log.Error("sink: compaction could not mend a file from the bucket", "file", path, "err", err)
				}
			}
			continue
		}
		replaced += len(g.files)
	}
	return replaced, errors.Join(errs...)
}

// noteUndecodable leaves out of compaction from now on the file that err,
// a group's failure, says does not decode, so that the group's other
// files are compacted at the next pass instead of failing with it at
// every one, and returns its path ("" when err says no such thing). The
// file stays in the lake: queries that read its damaged pages fail, the
// others answer; in a lake in object storage, Mend may put the bucket's
// copy in its place, which compaction then takes again.
func (l *Lake) noteUndecodable(err error) string {
	var ue *undecodableError
	if !errors.As(err, &ue) {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.undecodable[ue.path] {
		return ue.path
	}
	if l.undecodable == nil {
		l.undecodable = make(map[string]bool)
	}
	l.undecodable[ue.path] = true
	l.log.Error("sink: a published file does not decode; compaction leaves it as it is, and queries that read its damaged part fail",
		"file", ue.path, "err", ue.err)
	return ue.path
}

// CompactionStats counts what compaction did since New, and what it has
// yet to do.
type CompactionStats struct {
	// Files counts the compacted files written, DayMerges those of them
	// that day merges wrote; Replaced counts the files they replaced.
	Files, DayMerges, Replaced int64
	// Rows counts the rows written; BytesRead and BytesWritten the bytes
	// of the replaced files and of the written ones.
	Rows, BytesRead, BytesWritten int64
	// Failures counts groups that could not be compacted (logged; tried
	// again at the next pass).
	Failures int64
	// Undecodable counts the published files whose bytes did not decode
	// when compaction read them: it leaves them out since (logged once).
	Undecodable int64
	// Busy is the time spent compacting.
	Busy time.Duration
	// DueFiles and DueBytes are the published files that compaction
	// would take now and their bytes: its backlog (0 when compaction is
	// off).
	DueFiles, DueBytes int64
}

// compactionCounters are the counts of CompactionStats.
type compactionCounters struct {
	files, dayMerges, replaced    atomic.Int64
	rows, bytesRead, bytesWritten atomic.Int64
	failures, busy                atomic.Int64
}

// CompactionStats returns what compaction did since New, and its backlog
// now.
func (l *Lake) CompactionStats() CompactionStats { return l.compactionStats(time.Now()) }

// compactionStats is CompactionStats with the backlog at now.
func (l *Lake) compactionStats(now time.Time) CompactionStats {
	c := &l.cst
	st := CompactionStats{
		Files: c.files.Load(), DayMerges: c.dayMerges.Load(), Replaced: c.replaced.Load(),
		Rows: c.rows.Load(), BytesRead: c.bytesRead.Load(), BytesWritten: c.bytesWritten.Load(),
		Failures: c.failures.Load(), Busy: time.Duration(c.busy.Load()),
	}
	l.mu.Lock()
	st.Undecodable = int64(len(l.undecodable))
	l.mu.Unlock()
	if l.cfg.CompactAge > 0 {
		for _, g := range l.dueGroups(now) {
			for _, f := range g.files {
				st.DueFiles++
				st.DueBytes += f.Bytes
			}
		}
	}
	return st
}

// A compaction is a run of published files of one stream partition that
// become one compacted file in partition into.
type compaction struct {
	into     Partition
	files    []FileInfo // in ID order
	dayMerge bool       // the small files of a past date (see dueGroups)
}

// dayMergeBytes is the size under which a file of a past date is merged
// with the date's other small files into one day file (see dueGroups):
// a sixteenth of CompactInputBytes, 16 MiB at the defaults.
func dayMergeBytes(cfg Config) int64 { return cfg.CompactInputBytes / 16 }

// dueGroups returns the files to compact together, each group's files at
// least CompactAge old (by ID), local, not being announced and not found
// undecodable (noteUndecodable):
//
//   - day merges (see pastDay): the small files (under dayMergeBytes) of
//     a date that ended more than DayFilesAfter ago, whether compaction
//     wrote them or not, become one day file per stream partition, in
//     runs of one schema (see runs) of up to CompactInputBytes and of
//     rollups that together stay within rollupMaxCounts (so the day file
//     gets one), when a run has at least two. A quiet stream's hours then
//     end as one file a day rather than 24, and a merged day file is
//     merged again only with late files while it is itself small, so
//     late records rewrite at most dayMergeBytes each;
//   - per Partition, the files not yet compacted (and not taken by a day
//     merge), in ID order, cut into runs of one schema (see runs) of up
//     to CompactInputBytes.
func (l *Lake) dueGroups(now time.Time) []compaction {
	cutoff := now.Add(-l.cfg.CompactAge)
	type dayKey struct {
		s   streamKey
		day int64
	}
	byPart := make(map[fileKey][]FileInfo)
	var keys []fileKey
	byDay := make(map[dayKey][]FileInfo)
	var days []dayKey
	small := dayMergeBytes(l.cfg)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	for _, f := range l.files {
		if f.Evicted || l.announcing[f.ID] || l.undecodable[f.Path] {
			// Evicted files are in the bucket only: not fetched to be
			// compacted; undecodable ones would fail their group again.
			continue
		}
		if t, ok := idTime(f.ID); !ok || t.After(cutoff) {
			continue
		}
		if f.Bytes < small && l.pastDay(f.Partition, now) {
			k := dayKey{streamOf(f.Partition), dayOf(f.Partition.Hour).Unix()}
			if _, ok := byDay[k]; !ok {
				days = append(days, k)
			}
			byDay[k] = append(byDay[k], f)
			continue
		}
		if f.Compacted {
			continue
		}
		k := keyOf(f.Partition)
		if _, ok := byPart[k]; !ok {
			keys = append(keys, k)
		}
		byPart[k] = append(byPart[k], f)
	}
	l.mu.Unlock()
	var groups []compaction
	for _, k := range days {
		// A day file whose rollup would pass rollupMaxCounts would get
		// none, and queries would scan it: the runs stay within it.
		for _, run := range runs(byDay[k], l.cfg.CompactInputBytes, rollupMaxCounts) {
			if len(run) >= 2 {
				into := run[0].Partition
				into.Day, into.Hour = true, dayOf(into.Hour)
				groups = append(groups, compaction{into: into, files: run, dayMerge: true})
				continue
			}
			// Alone: compacted in its own partition like any other.
			if f := run[0]; !f.Compacted {
				fk := keyOf(f.Partition)
				if _, ok := byPart[fk]; !ok {
					keys = append(keys, fk)
				}
				byPart[fk] = append(byPart[fk], f)
			}
		}
	}
	for _, k := range keys {
		files := byPart[k]
		slices.SortFunc(files, func(a, b FileInfo) int { return strings.Compare(a.ID, b.ID) })
		for _, run := range runs(files, l.cfg.CompactInputBytes, 0) {
			groups = append(groups, compaction{into: run[0].Partition, files: run})
		}
	}
	return groups
}

// dayMergeMinPeriod is the shortest retention period of a stream whose
// files day merges take: a day file expires with its date, up to 23
// hours after its earliest hour would have, which is a small share of a
// week. A stream kept for less keeps its hour files, whose number the
// period bounds anyway.
const dayMergeMinPeriod = 7 * 24 * time.Hour

// pastDay reports whether day merges apply to the files of p at now: day
// files are on, p's stream is kept forever or for at least
// dayMergeMinPeriod, and p's date ended more than DayFilesAfter ago.
func (l *Lake) pastDay(p Partition, now time.Time) bool {
	if l.cfg.DayFilesAfter <= 0 || dayOf(p.Hour).Add(24*time.Hour+l.cfg.DayFilesAfter).After(now) {
		return false
	}
	per := l.cfg.Retention.Period(p.Tenant, p.Stream)
	return per <= 0 || per >= dayMergeMinPeriod
}

// runs cuts files into runs of one schema (by identity, see schemaID) of
// up to maxBytes and, if maxCounts > 0, of up to maxCounts rollup counts
// (see rollupBound); a file past either bound, or whose schema identity
// is unknown, is a run of its own. Files of one column count can differ
// in their promoted columns (after a configuration change), and a group
// of both would fail at every pass.
func runs(files []FileInfo, maxBytes, maxCounts int64) [][]FileInfo {
	var out [][]FileInfo
	var cur []FileInfo
	var bytes, counts int64
	for _, f := range files {
		c := rollupBound(f)
		if len(cur) > 0 && (bytes+f.Bytes > maxBytes || maxCounts > 0 && counts+c > maxCounts ||
			f.schema != cur[0].schema || f.schema == 0) {
			out = append(out, cur)
			cur, bytes, counts = nil, 0, 0
		}
		cur = append(cur, f)
		bytes += f.Bytes
		counts += c
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// rollupBound bounds the counts that f's rows add to the rollup of a
// file they are compacted into: its own rollup's count, or, unknown,
// its row count.
func rollupBound(f FileInfo) int64 {
	if f.Rollup && f.RollupCounts > 0 {
		return int64(f.RollupCounts)
	}
	return f.Rows
}

// compactGroup writes the rows of g's files into one new compacted file
// in g.into, publishes it and retires the files: they leave Files at once
// and are deleted by the Observer (Replaced) once no reader needs them,
// or at once without an observer.
func (l *Lake) compactGroup(ctx context.Context, g compaction) error {
	p, files := g.into, g.files
	// Pinned, so that the local cache does not evict them meanwhile
	// (dueGroups chose local ones).
	release, err := l.fetch(ctx, files, false)
	if err != nil {
		return fmt.Errorf("compact %d files into %s: %w", len(files), p.Dir(), err)
	}
	defer release()
	l.mu.Lock()
	id := newID(l.nextIDTimeLocked())
	l.mu.Unlock()
	dir := filepath.Join(l.cfg.Dir, p.Dir())
	if err := os.MkdirAll(dir, 0o755); err != nil { // a day merge's hour=24 may be new
		return fmt.Errorf("compact %d files into %s: %w", len(files), p.Dir(), err)
	}
	tmp := filepath.Join(dir, tmpName(id))
	final := filepath.Join(dir, id+fileExt)
	start := time.Now()
	info, err := writeCompacted(ctx, l.cfg, tmp, p, files)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %d files into %s: %w", len(files), p.Dir(), err)
	}
	info.ID, info.Path = id, final
	if l.rem != nil {
		if err := l.rem.prepareReplace(id, p, files); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("compact: %w", err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		if l.rem != nil {
			l.rem.abortReplace(id, files)
		}
		return fmt.Errorf("compact: publish: %w", err)
	}
	if err := l.syncDirs(dir); err != nil {
		os.Remove(final)
		if l.rem != nil {
			l.rem.abortReplace(id, files)
		}
		return fmt.Errorf("compact: %w", err)
	}
	gone := make(map[string]bool, len(files))
	var before int64
	for _, f := range files {
		gone[f.ID] = true
		before += f.Bytes
	}
	l.mu.Lock()
	l.files = slices.DeleteFunc(l.files, func(f FileInfo) bool { return gone[f.ID] })
	i, _ := slices.BinarySearchFunc(l.files, info.ID, func(f FileInfo, id string) int { return strings.Compare(f.ID, id) })
	l.files = slices.Insert(l.files, i, info)
	if l.rem != nil {
		l.rem.replacedLocked(info, files)
	}
	l.mu.Unlock()
	l.forgetEvicted(files)
	defer l.committedChanged()
	if l.ret.pendingDirs == nil {
		l.ret.pendingDirs = make(map[string]bool)
	}
	for _, f := range files {
		if d := filepath.Join(l.cfg.Dir, f.Partition.Dir()); d != dir && len(l.ret.pendingDirs) < maxDurableDirs {
			l.ret.pendingDirs[d] = true // emptied by a day merge once its files are deleted
		}
	}
	took := time.Since(start)
	c := &l.cst
	c.files.Add(1)
	if g.dayMerge {
		c.dayMerges.Add(1)
	}
	c.replaced.Add(int64(len(files)))
	c.rows.Add(info.Rows)
	c.bytesRead.Add(before)
	c.bytesWritten.Add(info.Bytes)
	c.busy.Add(int64(took))
	l.log.Info("sink: compacted", "partition", p.Dir(), "files", len(files), "rows", info.Rows,
		"bytes_before", before, "bytes_after", info.Bytes, "took", took.Round(time.Millisecond))
	if l.obs != nil {
		l.obs.Replaced(info, files)
		return nil
	}
	for _, f := range files {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Error("sink: remove compacted file", "path", f.Path, "err", err)
		}
	}
	return nil
}

// nextIDTimeLocked returns a creation time for a new file ID, later than
// every one handed out before. l.mu must be held.
func (l *Lake) nextIDTimeLocked() time.Time {
	now := time.Now().UTC()
	if !now.After(l.lastID) {
		now = l.lastID.Add(time.Nanosecond)
	}
	l.lastID = now
	return now
}

// writeCompacted writes the rows of files, as rows of p, in windows of
// CompactSortRows rows sorted by hour (newest first), service_name and
// timestamp, into a new Parquet file at path, fsynced. The returned
// FileInfo lacks ID and Path.
//
// The files are read newest partition first, so that a day merge's
// windows, and with them its row groups, run from the date's newest hour
// to its oldest: a query for the newest rows (ORDER BY timestamp DESC
// LIMIT n) finds them in the file's first row groups, and its top-n
// filter skips the rest by their statistics before reading them.
func writeCompacted(ctx context.Context, cfg Config, path string, p Partition, files []FileInfo) (FileInfo, error) {
	files = slices.Clone(files)
	slices.SortStableFunc(files, func(a, b FileInfo) int { return b.Partition.Hour.Compare(a.Partition.Hour) })
	info := FileInfo{Partition: p, MinOffset: -1, MaxOffset: -1, Columns: files[0].Columns, Compacted: true}
	ids := make([]string, len(files))
	for i, f := range files {
		ids[i] = f.ID
		info.Rows += f.Rows
		if f.MinOffset >= 0 && (info.MinOffset < 0 || f.MinOffset < info.MinOffset) {
			info.MinOffset = f.MinOffset
		}
		info.MaxOffset = max(info.MaxOffset, f.MaxOffset)
	}
	// Rows are decoded, sorted and encoded with Go's allocator: arrow-go's
	// readers do not release everything they allocate, and the garbage
	// collector reclaims what they keep.
	mem := memory.DefaultAllocator
	var sc *arrow.Schema
	err := writeSorted(ctx, cfg, path, &info, [][2]string{{metaCompacted, "1"}, {metaReplaces, strings.Join(ids, ",")}},
		func(fn func(arrow.RecordBatch) error) error {
			for _, f := range files {
				err := eachBatch(ctx, mem, f.Path, func(rec arrow.RecordBatch) error {
					if sc == nil {
						sc = rec.Schema()
					} else if !sc.Equal(rec.Schema()) {
						return fmt.Errorf("%s: schema differs from the group's", f.Path)
					}
					return fn(rec)
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	return info, err
}

// writeSorted writes the batches that each passes to its callback (of
// one schema, info.Rows rows of info.Partition), in windows of
// CompactSortRows rows sorted by hour (of the timestamp; newest first),
// service_name and timestamp, in row groups cut at hours (see
// hourWriter), into a new Parquet file at path, fsynced, with meta and
// the rows' rollup in its footer. It sets info.Bytes and info.Rollup.
func writeSorted(ctx context.Context, cfg Config, path string, info *FileInfo, meta [][2]string, each func(func(arrow.RecordBatch) error) error) error {
	p := info.Partition
	// Rows are decoded, sorted and encoded with Go's allocator: arrow-go's
	// readers do not release everything they allocate, and the garbage
	// collector reclaims what they keep.
	mem := memory.DefaultAllocator
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer out.Close()
	buf := bufio.NewWriterSize(newWritebackFile(out), 1<<20)
	ccfg := cfg
	ccfg.Codec, ccfg.ZstdLevel = CodecZstd, cfg.CompactZstdLevel
	var w *pqarrow.FileWriter
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	var sc *arrow.Schema
	// window holds the rows of the sort window being filled, column by
	// column (window[i] are slices of column i), so that sortedWindow can
	// let go of each column once it is sorted: the window's memory is then
	// about one copy of its rows instead of three.
	var window [][]arrow.Array
	var windowRows int64
	defer func() { releaseColumns(window) }()
	var hw *hourWriter
	flush := func() error {
		if windowRows == 0 {
			return nil
		}
		rec, err := sortedWindow(ctx, mem, sc, window, windowRows) // empties window
		windowRows = 0
		if err != nil {
			return err
		}
		defer rec.Release()
		if w == nil {
			props, err := writerProps(ccfg, mem, sc, []arrow.RecordBatch{rec}, compactedProps(ccfg.RowGroupRows, info.Rows, rec)...)
			if err != nil {
				return err
			}
			if w, err = pqarrow.NewFileWriter(sc, buf, props, arrowWriterProps(mem)); err != nil {
				return fmt.Errorf("start Parquet writer: %w", err)
			}
			hw = &hourWriter{w: w, minRows: mergeRows(cfg)}
		}
		return hw.write(rec)
	}
	var rows int64
	roll := newRollup()
	err = each(func(rec arrow.RecordBatch) error {
		if sc == nil {
			sc = rec.Schema()
			window = make([][]arrow.Array, sc.NumFields())
		}
		rows += rec.NumRows()
		roll.add(rec)
		// Windows are exactly CompactSortRows rows (but the last): a
		// batch that crosses a window's end is split there. The window
		// keeps copies of the batch's columns, not the columns: arrow-go's
		// readers grow their buffers by doubling, so a decoded batch holds
		// about twice its values (~570 B a row for ~260 B of values, in
		// bench/RESULTS.md), and a copy is the values only.
		for off := int64(0); off < rec.NumRows(); {
			n := min(rec.NumRows()-off, cfg.CompactSortRows-windowRows)
			for i := range window {
				part, err := exactCopy(mem, rec.Column(i), off, off+n)
				if err != nil {
					return fmt.Errorf("copy %s: %w", sc.Field(i).Name, err)
				}
				window[i] = append(window[i], part)
			}
			windowRows += n
			off += n
			if windowRows == cfg.CompactSortRows {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if rows != info.Rows || w == nil {
		return fmt.Errorf("read %d rows, the files' footers say %d", rows, info.Rows)
	}
	meta = append(footerMeta(p), meta...)
	if meta, err = appendRollup(meta, roll); err != nil {
		return err
	}
	info.schema = schemaID(sc)
	info.Rollup = roll.valid()
	if info.Rollup {
		info.RollupCounts = len(roll.counts)
	}
	for _, kv := range meta {
		if err := w.AppendKeyValueMetadata(kv[0], kv[1]); err != nil {
			return fmt.Errorf("footer metadata: %w", err)
		}
	}
	err = w.Close()
	w = nil
	if err != nil {
		return fmt.Errorf("write footer: %w", err)
	}
	if err := buf.Flush(); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("fsync %q: %w", path, err)
	}
	st, err := out.Stat()
	if err != nil {
		return err
	}
	info.Bytes = st.Size()
	return out.Close()
}

// readBatchRows is the rows of the batches eachBatch reads. The readers
// keep buffers for a batch of every column that grow by doubling and
// never shrink; at 64 Ki rows those were ~70 MB of compaction's heap
// (bench/RESULTS.md, "Memory within the one setting").
const readBatchRows = 8 << 10

// eachBatch calls fn with every record batch of the Parquet file at path;
// the batch is valid during the call only. An error of the file's reader
// that says its bytes do not decode (isDamage) is an *undecodableError.
func eachBatch(ctx context.Context, mem memory.Allocator, path string, fn func(arrow.RecordBatch) error) error {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return readError(ctx, path, fmt.Errorf("open %s: %w", path, err))
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: readBatchRows}, mem)
	if err != nil {
		return readError(ctx, path, fmt.Errorf("read %s: %w", path, err))
	}
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return readError(ctx, path, fmt.Errorf("read %s: %w", path, err))
	}
	defer rr.Release()
	for rr.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return readError(ctx, path, fmt.Errorf("read %s: %w", path, err))
	}
	return nil
}

// undecodableError is a published file whose bytes do not decode (its
// pages, mostly: a footer that does not parse is found at New).
type undecodableError struct {
	path string
	err  error
}

func (e *undecodableError) Error() string { return e.err.Error() }
func (e *undecodableError) Unwrap() error { return e.err }

// readError is err, from reading the file at path, as an
// *undecodableError when it says the bytes are damaged rather than that
// they could not be read or that ctx ended.
func readError(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || !isDamage(err) {
		return err
	}
	return &undecodableError{path: path, err: err}
}

// sortedWindow returns the n rows whose columns are window (window[i]
// are the parts of column i, of schema sc) sorted by the hour of their
// timestamp, newest first, then service_name, then timestamp, stably
// (rows of one service and time keep their order).
// Without those columns the rows keep their order. It releases every part
// of window, each column as soon as it is sorted, and leaves the slices
// empty.
func sortedWindow(ctx context.Context, mem memory.Allocator, sc *arrow.Schema, window [][]arrow.Array, n int64) (arrow.RecordBatch, error) {
	defer releaseColumns(window)
	out := make([]arrow.Array, len(window))
	defer releaseColumns([][]arrow.Array{out})
	// concat returns column i as one array and releases its parts.
	concat := func(i int) (arrow.Array, error) {
		c, err := array.Concatenate(window[i], mem)
		if err != nil {
			return nil, fmt.Errorf("concatenate %s: %w", sc.Field(i).Name, err)
		}
		releaseColumns(window[i : i+1])
		return c, nil
	}
	svcAt, tsAt := fieldIndex(sc, logschema.ServiceName), fieldIndex(sc, logschema.Timestamp)
	var idx []int32
	if svcAt >= 0 && tsAt >= 0 {
		svcCol, err := concat(svcAt)
		if err != nil {
			return nil, err
		}
		out[svcAt] = svcCol
		tsCol, err := concat(tsAt)
		if err != nil {
			return nil, err
		}
		out[tsAt] = tsCol
		svc, ok1 := column[*array.String](sc, out, logschema.ServiceName)
		ts, ok2 := column[*array.Timestamp](sc, out, logschema.Timestamp)
		if ok1 && ok2 {
			idx = make([]int32, n)
			for i := range idx {
				idx[i] = int32(i)
			}
			slices.SortStableFunc(idx, func(a, b int32) int {
				ta, tb := int64(ts.Value(int(a))), int64(ts.Value(int(b)))
				if c := cmp.Compare(hourOf(tb), hourOf(ta)); c != 0 {
					return c // newest hour first
				}
				if c := strings.Compare(svc.Value(int(a)), svc.Value(int(b))); c != 0 {
					return c
				}
				return cmp.Compare(ta, tb)
			})
		}
	}
	if idx == nil {
		for i := range out {
			if out[i] == nil {
				c, err := concat(i)
				if err != nil {
					return nil, err
				}
				out[i] = c
			}
		}
		return array.NewRecordBatch(sc, out, n), nil
	}
	// The other columns are gathered from the window's parts in sorted
	// order, each value copied once into buffers of the right size:
	// concatenating them first and taking from that copied everything
	// twice, and arrow's take grew its string buffers by doubling.
	// locs[k] is the part and row of sorted row k; whole[k] its row in
	// the concatenated service and timestamp columns.
	locs, whole := make([]record.Loc, n), make([]record.Loc, n)
	var starts []int32 // first row of each part
	for _, col := range window {
		if len(col) > 0 {
			var at int32
			for _, p := range col {
				starts = append(starts, at)
				at += int32(p.Len())
			}
			break
		}
	}
	for k, i := range idx {
		if len(starts) > 0 { // else every column is concatenated
			p, _ := slices.BinarySearch(starts, i+1)
			locs[k] = record.Loc{Part: int32(p - 1), Row: i - starts[p-1]}
		}
		whole[k] = record.Loc{Row: i}
	}
	var indices arrow.Array // for columns record.TakeParts cannot copy
	defer func() {
		if indices != nil {
			indices.Release()
		}
	}()
	for i := range out {
		var sorted arrow.Array
		var err error
		switch c := out[i]; {
		case c != nil: // service or timestamp, concatenated to sort by
			sorted, err = record.TakeParts([]arrow.Array{c}, whole, mem)
			c.Release()
		case record.CanTake(sc.Field(i).Type):
			sorted, err = record.TakeParts(window[i], locs, mem)
			releaseColumns(window[i : i+1])
		default:
			var c arrow.Array
			if c, err = concat(i); err != nil {
				out[i] = nil
				return nil, err
			}
			if indices == nil {
				ib := array.NewInt32Builder(mem)
				ib.AppendValues(idx, nil)
				indices = ib.NewInt32Array()
				ib.Release()
			}
			sorted, err = compute.TakeArray(ctx, c, indices)
			c.Release()
		}
		if err != nil {
			out[i] = nil
			return nil, fmt.Errorf("sort %s: %w", sc.Field(i).Name, err)
		}
		out[i] = sorted
	}
	return array.NewRecordBatch(sc, out, n), nil
}

// hourOf returns the hour (since the Unix epoch, rounded down) of the
// timestamp ns in nanoseconds.
func hourOf(ns int64) int64 {
	h := ns / int64(time.Hour)
	if ns%int64(time.Hour) < 0 {
		h--
	}
	return h
}

// hourWriter writes sorted windows into a file's buffered row groups,
// starting a new row group where the hour changes once the current one
// holds at least minRows rows: a row group of a file that spans hours (a
// day file) then spans few of them, and a query for the newest or oldest
// rows skips the others by their timestamp statistics. A file of one
// hour gets the row groups WriteBuffered makes.
type hourWriter struct {
	w       *pqarrow.FileWriter
	minRows int64
	last    int64 // hour of the last row written
	wrote   bool
}

// write writes rec, whose rows are sorted by hour first.
func (hw *hourWriter) write(rec arrow.RecordBatch) error {
	ts, ok := column[*array.Timestamp](rec.Schema(), rec.Columns(), logschema.Timestamp)
	if !ok {
		return hw.w.WriteBuffered(rec)
	}
	n := rec.NumRows()
	for start := int64(0); start < n; {
		h := hourOf(int64(ts.Value(int(start))))
		end := start + 1
		for end < n && hourOf(int64(ts.Value(int(end)))) == h {
			end++
		}
		if hw.wrote && h != hw.last {
			cur, err := hw.w.RowGroupNumRows()
			if err != nil {
				return err
			}
			if int64(cur) >= hw.minRows {
				if err := hw.w.NewBufferedRowGroupChecked(); err != nil {
					return err
				}
			}
		}
		part := rec.NewSlice(start, end)
		err := hw.w.WriteBuffered(part)
		part.Release()
		if err != nil {
			return err
		}
		hw.last, hw.wrote = h, true
		start = end
	}
	return nil
}

// exactCopy returns rows [i, j) of a in buffers of their own, sized to
// them.
func exactCopy(mem memory.Allocator, a arrow.Array, i, j int64) (arrow.Array, error) {
	s := array.NewSlice(a, i, j)
	defer s.Release()
	return array.Concatenate([]arrow.Array{s}, mem)
}

// releaseColumns releases every array of cols and empties each slice.
func releaseColumns(cols [][]arrow.Array) {
	for i, parts := range cols {
		for _, a := range parts {
			if a != nil {
				a.Release()
			}
		}
		clear(parts)
		cols[i] = parts[:0]
	}
}

// fieldIndex returns the index of the only field of sc named name, or -1.
func fieldIndex(sc *arrow.Schema, name string) int {
	if idx := sc.FieldIndices(name); len(idx) == 1 {
		return idx[0]
	}
	return -1
}

// column returns the column of that name in cols if it has type T.
func column[T arrow.Array](sc *arrow.Schema, cols []arrow.Array, name string) (T, bool) {
	var zero T
	i := fieldIndex(sc, name)
	if i < 0 {
		return zero, false
	}
	c, ok := cols[i].(T)
	return c, ok
}

package sink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Deleting records (docs/lake.md, "Delete") rewrites each published file
// that holds some of them into a new file without them, published like a
// compacted file: it names the file it replaces (weir.replaces), so a
// crash between publishing it and deleting the old one is repaired at
// the next start, and the Observer swaps the files in one view change
// (Replaced). A file left with no rows is removed as retention removes
// files. The deleted offsets are journaled (see retention.go) before any
// file changes, so that a write-ahead log replay never brings the
// records back.

// DeleteResult counts what DeleteRows did.
type DeleteResult struct {
	// Rows deleted, files rewritten without them, files removed because
	// no row was left.
	Rows                    int64
	Rewritten, Removed      int
	BytesBefore, BytesAfter int64
}

// DeleteRows deletes the records whose _offset is in offsets[part] from
// the published files of a tenant's stream in one hour partition: the
// hour's files and the day files of its date (Partition.Day). Rows in
// open files are not touched (Flush first to include them); offsets that
// no published file holds are ignored, so Rows may be fewer than asked.
// It takes turns with Compact and Retain. A failure leaves each file
// either as it was or fully rewritten.
func (l *Lake) DeleteRows(ctx context.Context, tenant, stream string, hour time.Time, offsets map[int32]OffsetSet) (DeleteResult, error) {
	var res DeleteResult
	p, err := normalize(Partition{Tenant: tenant, Stream: stream, Hour: hour})
	if err != nil {
		return res, err
	}
	select {
	case l.compacting <- struct{}{}:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	defer func() { <-l.compacting }()
	var files []FileInfo
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return res, ErrClosed
	}
	for _, f := range l.files {
		fp := f.Partition
		set := offsets[fp.Part]
		inHour := fp.Hour.Equal(p.Hour) || fp.Day && fp.Hour.Equal(dayOf(p.Hour)) // a day file holds rows of every hour of its date
		if fp.Tenant != p.Tenant || fp.Stream != p.Stream || !inHour || l.announcing[f.ID] || len(set) == 0 {
			continue
		}
		if set.overlaps(f.MinOffset, f.MaxOffset+1) {
			files = append(files, f)
		}
	}
	l.mu.Unlock()
	// Files evicted from the local cache are fetched to be rewritten
	// (unbounded by the cache: one hour of one stream).
	release, err := l.fetch(ctx, files, false)
	if err != nil {
		return res, fmt.Errorf("sink: delete: %w", err)
	}
	defer release()
	var empty []FileInfo
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		set := offsets[f.Partition.Part]
		info, deleted, err := l.rewriteWithout(ctx, f, set)
		if err != nil {
			return res, fmt.Errorf("sink: delete from %s: %w", f.ID, err)
		}
		if deleted == 0 {
			continue
		}
		res.Rows += deleted
		res.BytesBefore += f.Bytes
		if info.Rows == 0 {
			empty = append(empty, f)
			continue
		}
		res.Rewritten++
		res.BytesAfter += info.Bytes
		l.mu.Lock()
		l.files = slices.DeleteFunc(l.files, func(g FileInfo) bool { return g.ID == f.ID })
		i, _ := slices.BinarySearchFunc(l.files, info.ID, func(g FileInfo, id string) int { return strings.Compare(g.ID, id) })
		l.files = slices.Insert(l.files, i, info)
		if l.rem != nil {
			l.rem.replacedLocked(info, []FileInfo{f})
		}
		l.mu.Unlock()
		l.forgetEvicted([]FileInfo{f})
		l.committedChanged()
		if l.obs != nil {
			l.obs.Replaced(info, []FileInfo{f})
		} else if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Error("sink: remove file after delete", "path", f.Path, "err", err)
		}
	}
	if len(empty) > 0 {
		if err := l.removeFiles(ctx, empty, "delete"); err != nil {
			return res, err
		}
		res.Removed = len(empty)
		l.removeEmptyDirs()
	}
	if res.Rows > 0 {
		l.log.Info("sink: deleted records", "tenant", p.Tenant, "stream", p.Stream, "hour", p.Hour.Format("2006-01-02T15Z"),
			"rows", res.Rows, "files_rewritten", res.Rewritten, "files_removed", res.Removed,
			"bytes_before", res.BytesBefore, "bytes_after", res.BytesAfter)
	}
	return res, nil
}

// rewriteWithout writes f's rows whose _offset is not in set to a new
// file and, if any row was left out and some remain, journals the left
// out offsets and publishes the file, which names f as replaced. It
// returns the new file (Rows 0 when no row would remain: nothing is
// published then) and how many rows were left out (0: nothing changed).
// l.compacting must be held.
func (l *Lake) rewriteWithout(ctx context.Context, f FileInfo, set OffsetSet) (FileInfo, int64, error) {
	all, err := readOffsets(ctx, f.Path, 0)
	if err != nil {
		return FileInfo{}, 0, err
	}
	var gone []int64
	for _, o := range all {
		if set.Contains(o) {
			gone = append(gone, o)
		}
	}
	if len(gone) == 0 {
		return FileInfo{}, 0, nil
	}
	removed := map[streamKey]OffsetSet{streamOf(f.Partition): toOffsetSet(gone)}
	if int64(len(gone)) == f.Rows {
		return FileInfo{}, int64(len(gone)), nil // removeFiles journals the whole file
	}
	l.mu.Lock()
	id := newID(l.nextIDTimeLocked())
	l.mu.Unlock()
	dir := filepath.Dir(f.Path)
	tmp := filepath.Join(dir, tmpName(id))
	final := filepath.Join(dir, id+fileExt)
	rows, err := writeFiltered(ctx, l.cfg, tmp, f, set)
	if err != nil {
		os.Remove(tmp)
		return FileInfo{}, 0, err
	}
	if rows != f.Rows-int64(len(gone)) {
		os.Remove(tmp)
		return FileInfo{}, 0, fmt.Errorf("wrote %d rows, want %d", rows, f.Rows-int64(len(gone)))
	}
	// The deleted offsets are journaled before the new file can replace
	// the old one: a crash after the rename must not let a write-ahead
	// log replay bring the rows back.
	if err := l.journalRemoval(nil, removed); err != nil {
		os.Remove(tmp)
		return FileInfo{}, 0, err
	}
	l.mu.Lock()
	for sk, s := range removed {
		if l.ret.offsets == nil {
			l.ret.offsets = make(map[streamKey]OffsetSet)
		}
		l.ret.offsets[sk] = l.ret.offsets[sk].union(s)
	}
	l.mu.Unlock()
	if l.rem != nil {
		if err := l.rem.prepareReplace(id, f.Partition, []FileInfo{f}); err != nil {
			os.Remove(tmp)
			return FileInfo{}, 0, err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		if l.rem != nil {
			l.rem.abortReplace(id, []FileInfo{f})
		}
		return FileInfo{}, 0, fmt.Errorf("publish: %w", err)
	}
	if err := l.syncDirs(dir); err != nil {
		os.Remove(final)
		if l.rem != nil {
			l.rem.abortReplace(id, []FileInfo{f})
		}
		return FileInfo{}, 0, err
	}
	info, _, err := readFooter(final, f.Partition, id)
	if err != nil {
		return FileInfo{}, 0, err
	}
	return info, int64(len(gone)), nil
}

// writeFiltered writes the rows of f whose _offset is not in set to a
// new Parquet file at path, fsynced, with f's footer metadata, f named as
// replaced, and compressed as f was (compacted or not). It returns the
// rows written.
func writeFiltered(ctx context.Context, cfg Config, path string, f FileInfo, set OffsetSet) (int64, error) {
	mem := memory.DefaultAllocator
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create temporary file: %w", err)
	}
	defer out.Close()
	buf := bufio.NewWriterSize(newWritebackFile(out), 1<<20)
	wcfg := cfg
	if f.Compacted {
		wcfg.Codec, wcfg.ZstdLevel = CodecZstd, cfg.CompactZstdLevel
	}
	var w *pqarrow.FileWriter
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	var rows int64
	// A file with a rollup gets the rollup of the rows it keeps.
	var roll *rollup
	if f.Rollup {
		roll = newRollup()
	}
	err = eachBatch(ctx, mem, f.Path, func(rec arrow.RecordBatch) error {
		kept, err := filterOffsets(ctx, mem, rec, set)
		if err != nil {
			return err
		}
		defer kept.Release()
		if roll != nil {
			roll.add(kept)
		}
		if w == nil {
			var extra []parquet.WriterProperty
			if f.Compacted {
				extra = compactedProps(cfg.RowGroupRows, f.Rows, rec)
			}
			props, err := writerProps(wcfg, mem, rec.Schema(), []arrow.RecordBatch{rec}, extra...)
			if err != nil {
				return err
			}
			if w, err = pqarrow.NewFileWriter(rec.Schema(), buf, props, arrowWriterProps(mem)); err != nil {
				return fmt.Errorf("start Parquet writer: %w", err)
			}
		}
		rows += kept.NumRows()
		if kept.NumRows() == 0 {
			return nil
		}
		return w.WriteBuffered(kept)
	})
	if err != nil {
		return 0, err
	}
	if w == nil {
		return 0, errors.New("the file has no rows")
	}
	meta := append(footerMeta(f.Partition), [2]string{metaReplaces, f.ID})
	if f.Compacted {
		meta = append(meta, [2]string{metaCompacted, "1"})
	}
	if roll != nil {
		if meta, err = appendRollup(meta, roll); err != nil {
			return 0, err
		}
	}
	for _, kv := range meta {
		if err := w.AppendKeyValueMetadata(kv[0], kv[1]); err != nil {
			return 0, fmt.Errorf("footer metadata: %w", err)
		}
	}
	err = w.Close()
	w = nil
	if err != nil {
		return 0, fmt.Errorf("write footer: %w", err)
	}
	if err := buf.Flush(); err != nil {
		return 0, fmt.Errorf("write %q: %w", path, err)
	}
	if err := out.Sync(); err != nil {
		return 0, fmt.Errorf("fsync %q: %w", path, err)
	}
	return rows, out.Close()
}

// filterOffsets returns the rows of rec whose _offset is not in set.
func filterOffsets(ctx context.Context, mem memory.Allocator, rec arrow.RecordBatch, set OffsetSet) (arrow.RecordBatch, error) {
	idx := rec.Schema().FieldIndices(offsetColumn)
	if len(idx) != 1 {
		return nil, fmt.Errorf("no %s column", offsetColumn)
	}
	offs, ok := rec.Column(idx[0]).(*array.Int64)
	if !ok {
		return nil, fmt.Errorf("%s is %s, not int64", offsetColumn, rec.Column(idx[0]).DataType())
	}
	b := array.NewBooleanBuilder(mem)
	defer b.Release()
	b.Reserve(offs.Len())
	for i := range offs.Len() {
		b.UnsafeAppend(!offs.IsValid(i) || !set.Contains(offs.Value(i)))
	}
	mask := b.NewBooleanArray()
	defer mask.Release()
	return compute.FilterRecordBatch(ctx, rec, mask, compute.DefaultFilterOptions())
}

// overlaps reports whether the set holds an offset in [from, to).
func (s OffsetSet) overlaps(from, to int64) bool {
	for _, r := range s {
		if r.From < to && from < r.To {
			return true
		}
	}
	return false
}

package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/weirlabs/weir/internal/logschema"
)

// scan deletes leftover temporary files and reads the footers of the
// published files under the lake root. It runs in New, before the Lake
// is shared.
func (l *Lake) scan() error {
	var removed, skipped int
	var firstSkip string
	replaced := make(map[string]bool) // IDs named by compacted files
	err := filepath.WalkDir(l.cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		switch {
		case strings.HasPrefix(name, ".") && strings.HasSuffix(name, tmpSuffix):
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover temporary file: %w", err)
			}
			removed++
		case strings.HasSuffix(name, fileExt) && !strings.HasPrefix(name, "."):
			rel, err := filepath.Rel(l.cfg.Dir, path)
			if err != nil {
				return err
			}
			p, id, err := parsePath(rel)
			if err != nil {
				if skipped == 0 {
					firstSkip = rel + ": " + err.Error()
				}
				skipped++
				return nil
			}
			info, repl, err := readFooter(path, p, id)
			if err != nil {
				return err
			}
			l.files = append(l.files, info)
			for _, r := range repl {
				replaced[r] = true
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sink: scan lake %q: %w", l.cfg.Dir, err)
	}
	// A crash between publishing a compacted file and deleting the files
	// it replaces leaves both; the compacted one holds every row.
	var stale int
	keep := l.files[:0]
	for _, f := range l.files {
		if !replaced[f.ID] {
			keep = append(keep, f)
			continue
		}
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sink: remove file replaced by compaction: %w", err)
		}
		stale++
	}
	l.files = keep
	l.scanReplaced = replaced
	if stale > 0 {
		l.log.Warn("sink: removed files that a compacted file replaces", "count", stale)
	}
	sort.Slice(l.files, func(i, j int) bool { return l.files[i].ID < l.files[j].ID })
	for _, f := range l.files {
		if t, ok := idTime(f.ID); ok && t.After(l.lastID) {
			l.lastID = t
		}
		if f.MaxOffset >= 0 {
			sk := streamOf(f.Partition)
			l.last[sk] = max(l.last[sk], f.MaxOffset+1)
		}
	}
	if removed > 0 {
		l.log.Warn("sink: removed leftover temporary files; their rows were never published",
			"count", removed, "dir", l.cfg.Dir)
	}
	if skipped > 0 {
		l.log.Warn("sink: ignored .parquet files outside the lake layout",
			"count", skipped, "first", firstSkip)
	}
	return l.recoverRemoved()
}

// footerSchemaID is schemaID of the Arrow schema a reader of the file
// whose footer is md gets (the stored one where there is one), or 0 if it
// has none.
func footerSchemaID(md *metadata.FileMetaData) uint64 {
	sc, err := pqarrow.FromParquet(md.Schema, &pqarrow.ArrowReadProperties{}, md.KeyValueMetadata())
	if err != nil {
		return 0
	}
	return schemaID(sc)
}

// readFooter describes a published file from its path and Parquet footer:
// rows, the stream partition (weir.part metadata), whether compaction
// wrote it and which files it replaces, and the _offset range (column
// statistics).
func readFooter(path string, p Partition, id string) (FileInfo, []string, error) {
	info := FileInfo{ID: id, Partition: p, Path: path, MinOffset: -1, MaxOffset: -1}
	st, err := os.Stat(path)
	if err != nil {
		return info, nil, err
	}
	info.Bytes = st.Size()
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		return info, nil, fmt.Errorf("read footer of %q: %w", path, err)
	}
	defer r.Close()
	md := r.MetaData()
	info.Rows = md.NumRows
	info.Columns = md.Schema.Root().NumFields()
	kv := md.KeyValueMetadata()
	info.schema = footerSchemaID(md)
	info.Compacted = kv.FindValue(metaCompacted) != nil
	if v := kv.FindValue(metaRollup); v != nil {
		info.Rollup = true
		info.RollupCounts = rollupCountsIn(*v)
	}
	var replaces []string
	if v := kv.FindValue(metaReplaces); v != nil && *v != "" {
		replaces = strings.Split(*v, ",")
	}
	if v := kv.FindValue(metaPart); v != nil {
		n, err := strconv.ParseInt(*v, 10, 32)
		if err != nil {
			return info, nil, fmt.Errorf("%q: footer metadata %s=%q: %w", path, metaPart, *v, err)
		}
		info.Partition.Part = int32(n)
	}
	idx := md.Schema.ColumnIndexByName(logschema.Offset)
	if idx < 0 || md.Schema.Column(idx).PhysicalType() != parquet.Types.Int64 || info.Rows == 0 {
		return info, replaces, nil
	}
	lo, hi, seen := int64(-1), int64(-1), false
	for rg := range md.NumRowGroups() {
		cc, err := md.RowGroup(rg).ColumnChunk(idx)
		if err != nil {
			return info, nil, fmt.Errorf("%q: row group %d: %w", path, rg, err)
		}
		ts, err := cc.Statistics()
		if err != nil {
			return info, nil, fmt.Errorf("%q: row group %d: _offset statistics: %w", path, rg, err)
		}
		s, ok := ts.(*metadata.Int64Statistics)
		if ok && !s.HasMinMax() && s.HasNullCount() && s.NullCount() == cc.NumValues() {
			continue // all null
		}
		if !ok || !s.HasMinMax() {
			return info, nil, fmt.Errorf("%q: row group %d: no min/max statistics for _offset", path, rg)
		}
		if !seen || s.Min() < lo {
			lo = s.Min()
		}
		if !seen || s.Max() > hi {
			hi = s.Max()
		}
		seen = true
	}
	info.MinOffset, info.MaxOffset = lo, hi
	return info, replaces, nil
}

package sink

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/weirlabs/weir/internal/arrowipc"
	"github.com/weirlabs/weir/internal/aside"
	"github.com/weirlabs/weir/internal/durable"
	"github.com/weirlabs/weir/internal/logschema"
)

// scan deletes leftover temporary files and reads the footers of the
// published files under the lake root. It runs in New, before the Lake
// is shared.
func (l *Lake) scan() error {
	var removed, skipped int
	var firstSkip string
	var damaged []DamagedFile
	replaced := make(map[string]bool) // IDs named by compacted files
	err := filepath.WalkDir(l.cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == damagedDir && filepath.Dir(path) == filepath.Clean(l.cfg.Dir) {
				return filepath.SkipDir
			}
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
				if !isDamage(err) {
					return err
				}
				damaged = append(damaged, DamagedFile{Path: rel, Bytes: info.Bytes, Err: err.Error(), part: p, id: id})
				return nil
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
	if err := l.mendDamaged(damaged, replaced); err != nil {
		return err
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

// damagedDir is the directory under the lake root that holds the
// published files New set aside because their footers do not parse.
const damagedDir = ".damaged"

// DamagedFile is a published file that New found damaged: moved out of
// the lake, and, in a lake in object storage, replaced by the bucket's
// copy where the bucket has one (Lake.Damaged).
type DamagedFile struct {
	Path  string // where it was, relative to the lake root
	Moved string // where it is now: under .damaged/ at the same relative path
	Bytes int64  // its size
	Err   string // why its footer did not parse
	// Restored is set when the file's copy in the bucket took its place:
	// its rows stayed in the lake.
	Restored bool

	part Partition
	id   string
}

// Damaged returns the published files that New moved aside because their
// footers did not parse. The rows of those not Restored are not in the
// lake; the ones a write-ahead log still holds are replayed by the
// buffer's recovery, as for any record no published file holds.
func (l *Lake) Damaged() []DamagedFile { return slices.Clone(l.damaged) }

// isDamage reports whether err, from reading a file's footer, says the
// bytes are wrong (not a Parquet file, cut short, a footer that does not
// decode) rather than that they could not be read: an I/O error, a
// permission, a missing file stop the start instead, since setting aside
// a sound file would hide its rows.
func isDamage(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return !errors.As(err, &pe) && !errors.As(err, &errno)
}

// restoreTimeout bounds the download of one damaged file's copy from the
// bucket at start (a compacted file of a gigabyte at 2 MB/s).
const restoreTimeout = 10 * time.Minute

// mendDamaged deals with the files scan found damaged, or refuses the
// start when there are more than Config.MaxDamagedFiles: many at once
// suggests the wrong directory or a failing disk rather than a damaged
// file, and a person should look first. Every damaged file is moved to
// the same relative path under <Dir>/.damaged/ and logged; nothing is
// deleted, the files stay for inspection until someone removes them.
//
// In a lake in object storage, a file the upload log records as uploaded
// has a sound copy in the bucket (checked by checksum when it was put):
// it is downloaded, its footer read, and it takes the damaged file's
// place, so its rows stay in the lake and the compacted files it
// replaces are added to replaced. A file not yet uploaded has no other
// copy and is set aside as in a local lake, unless it carries replaced
// files (the carry journal): their rows may now be only in the bucket's
// objects, which dropping the file would let the start delete, so that
// stops the start. A copy that cannot be downloaded or is damaged too
// stops it as well.
func (l *Lake) mendDamaged(damaged []DamagedFile, replaced map[string]bool) error {
	if len(damaged) == 0 {
		return nil
	}
	if len(damaged) > l.cfg.MaxDamagedFiles {
		return fmt.Errorf("sink: scan lake %q: %d published files are damaged, more than sink.max_damaged_files (%d) to set aside; the first: %s: %s",
			l.cfg.Dir, len(damaged), l.cfg.MaxDamagedFiles, damaged[0].Path, damaged[0].Err)
	}
	var uploaded map[string]bool
	var carries map[string]*carryEntry
	if l.cfg.Remote != nil {
		var err error
		if _, uploaded, _, err = readUploadLog(l.cfg.Dir); err != nil {
			return err
		}
		if carries, err = readCarryJournal(l.cfg.Dir); err != nil {
			return err
		}
	}
	for i := range damaged {
		d := &damaged[i]
		rel := filepath.ToSlash(d.Path)
		if l.cfg.Remote != nil && !uploaded[rel] && carries[rel] != nil {
			return fmt.Errorf("sink: scan lake %q: published file %s is damaged (%s) and not yet in the bucket, and the files it replaced are now only there: replace it with a sound copy, or remove it and its entry in %s by hand, then start",
				l.cfg.Dir, d.Path, d.Err, carryJournal)
		}
		var fetched string
		if l.cfg.Remote != nil && uploaded[rel] {
			l.log.Warn("sink: a published file is damaged; downloading its copy in the bucket", "file", d.Path, "err", d.Err)
			tmp, err := l.fetchSound(context.Background(), d)
			if err != nil {
				return err
			}
			fetched = tmp
		}
		if fetched != "" {
			info, repl, err := l.restore(d, fetched)
			if err != nil {
				return err
			}
			l.files = append(l.files, info)
			for _, r := range repl {
				replaced[r] = true
			}
			continue
		}
		if err := l.moveAside(d); err != nil {
			return err
		}
		l.log.Error("sink: a published file is damaged; it was moved out of the lake and its rows that the write-ahead log still holds are replayed",
			"file", d.Path, "moved_to", d.Moved, "bytes", d.Bytes, "err", d.Err)
	}
	l.damaged = damaged
	return nil
}

// fetchSound downloads the bucket's copy of damaged file d beside it,
// under a temporary name that a later scan removes, and checks its
// footer; it returns the temporary file's path.
func (l *Lake) fetchSound(ctx context.Context, d *DamagedFile) (string, error) {
	path := filepath.Join(l.cfg.Dir, d.Path)
	tmp := filepath.Join(filepath.Dir(path), "."+d.id+".restore"+tmpSuffix)
	key := objectKey(l.cfg.Remote.Prefix, filepath.ToSlash(d.Path))
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	fail := func(err error) (string, error) {
		os.Remove(tmp)
		return "", fmt.Errorf("sink: lake %q: published file %s is damaged (%s) and its copy in the bucket (%s) %w; replace the local file with a sound copy",
			l.cfg.Dir, d.Path, d.Err, key, err)
	}
	if err := l.cfg.Remote.Store.Get(ctx, key, tmp); err != nil {
		return fail(fmt.Errorf("could not be downloaded: %w", err))
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return fail(fmt.Errorf("could not be downloaded: %w", err))
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(fmt.Errorf("could not be downloaded: %w", err))
	}
	if _, _, err := readFooter(tmp, d.part, d.id); err != nil {
		return fail(fmt.Errorf("is damaged too: %w", err))
	}
	return tmp, nil
}

// moveAside moves damaged file d to the same relative path under
// <Dir>/.damaged/ (aside.Move: with .1, .2, ... after it where an earlier
// copy of the file is there already) and sets d.Moved.
func (l *Lake) moveAside(d *DamagedFile) error {
	to := filepath.Join(l.cfg.Dir, damagedDir, d.Path)
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return fmt.Errorf("sink: set aside damaged file: %w", err)
	}
	moved, err := aside.Move(filepath.Join(l.cfg.Dir, d.Path), to)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	d.Moved, _ = filepath.Rel(l.cfg.Dir, moved)
	return nil
}

// SetAside takes published files that weir's other readers cannot read
// out of the lake, as New does with files whose footers do not parse
// (docs/durability.md, "A damaged lake file"): the query engine's DuckDB
// refuses some damaged footers that the lake's reader accepts, and weir
// serve hands such files here before Start (query.UnreadableFilesError).
// why gives each file's reason. Each file is moved under .damaged/,
// logged and listed by Damaged; its offsets leave the lake, so recovery
// replays what the write-ahead log still holds of them. In a lake in
// object storage, an uploaded file whose copy in the bucket differs from
// the local one is replaced by it instead (once per file and start);
// one not yet uploaded that carries replaced files is refused as at New.
// Files the lake no longer has are skipped. It fails after Start, and
// past Config.MaxDamagedFiles, counted with the files New found damaged.
func (l *Lake) SetAside(files []FileInfo, why []error) error {
	l.mu.Lock()
	started := l.done != nil || l.closed
	var ds []DamagedFile
	for i, f := range files {
		if _, ok := l.indexLocked(f.ID); !ok {
			continue
		}
		rel, err := filepath.Rel(l.cfg.Dir, f.Path)
		if err != nil {
			l.mu.Unlock()
			return fmt.Errorf("sink: set aside %s: %w", f.Path, err)
		}
		reason := "unreadable"
		if i < len(why) && why[i] != nil {
			reason = why[i].Error()
		}
		ds = append(ds, DamagedFile{Path: rel, Bytes: f.Bytes, Err: reason, part: f.Partition, id: f.ID})
	}
	n := len(l.damaged)
	l.mu.Unlock()
	switch {
	case started:
		return errors.New("sink: SetAside after Start")
	case len(ds) == 0:
		return nil
	case n+len(ds) > l.cfg.MaxDamagedFiles:
		return fmt.Errorf("sink: lake %q: %d published files are damaged, more than sink.max_damaged_files (%d) to set aside; the first this reader could not read: %s: %s",
			l.cfg.Dir, n+len(ds), l.cfg.MaxDamagedFiles, ds[0].Path, ds[0].Err)
	}
	for i := range ds {
		if err := l.setAsideOne(&ds[i]); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.damaged = append(l.damaged, ds...)
	l.mu.Unlock()
	return nil
}

// setAsideOne is SetAside for one file of the lake.
func (l *Lake) setAsideOne(d *DamagedFile) error {
	l.mu.Lock()
	restoredBefore := slices.ContainsFunc(l.damaged, func(o DamagedFile) bool { return o.Path == d.Path && o.Restored })
	var uploaded, carries bool
	if l.rem != nil {
		l.rem.mu.Lock()
		_, uploaded = l.rem.uploaded[d.id]
		carries = !uploaded && l.rem.carry[d.id] != nil
		l.rem.mu.Unlock()
	}
	l.mu.Unlock()
	if carries {
		return fmt.Errorf("sink: lake %q: published file %s cannot be read (%s) and is not yet in the bucket, and the files it replaced are now only there: replace it with a sound copy, or remove it and its entry in %s by hand, then start",
			l.cfg.Dir, d.Path, d.Err, carryJournal)
	}
	path := filepath.Join(l.cfg.Dir, d.Path)
	if uploaded && !restoredBefore {
		tmp, err := l.fetchSound(context.Background(), d)
		if err != nil {
			return err
		}
		same, err := sameBytes(tmp, path)
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("sink: set aside %s: %w", d.Path, err)
		}
		if !same {
			info, _, err := l.restore(d, tmp)
			if err != nil {
				return err
			}
			l.mu.Lock()
			if i, ok := l.indexLocked(d.id); ok {
				l.files[i] = info
			}
			l.mu.Unlock()
			return nil
		}
		os.Remove(tmp)
	}
	if err := l.moveAside(d); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.indexLocked(d.id)
	if !ok {
		return nil
	}
	f := l.files[i]
	l.files = slices.Delete(l.files, i, i+1)
	if l.rem != nil {
		// Its object, if any, holds the same bytes or others that were
		// no better: it goes as a removed file's does.
		l.rem.removedLocked([]FileInfo{f})
	}
	l.recomputeLastLocked(streamOf(f.Partition))
	l.log.Error("sink: a published file cannot be read by the query engine; it was moved out of the lake and its rows that the write-ahead log still holds are replayed",
		"file", d.Path, "moved_to", d.Moved, "bytes", d.Bytes, "err", d.Err)
	return nil
}

// restore puts tmp, the bucket's sound copy of damaged file d, in its
// place, moving the damaged copy, if any, under .damaged/, and returns its footer's
// description and the files it replaces.
func (l *Lake) restore(d *DamagedFile, tmp string) (FileInfo, []string, error) {
	path := filepath.Join(l.cfg.Dir, d.Path)
	if _, err := os.Lstat(path); err == nil { // a missing copy has nothing to set aside
		if err := l.moveAside(d); err != nil {
			os.Remove(tmp)
			return FileInfo{}, nil, err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return FileInfo{}, nil, fmt.Errorf("sink: restore damaged file from the bucket: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return FileInfo{}, nil, fmt.Errorf("sink: restore damaged file from the bucket: %w", err)
	}
	info, repl, err := readFooter(path, d.part, d.id)
	if err != nil {
		return FileInfo{}, nil, fmt.Errorf("sink: restore damaged file from the bucket: %w", err)
	}
	d.Restored = true
	l.log.Warn("sink: a published file is damaged; its copy in the bucket took its place",
		"file", d.Path, "moved_to", d.Moved, "bytes", d.Bytes, "err", d.Err)
	return info, repl, nil
}

// sameRows returns an error unless got, the footer of a copy of f from
// the bucket, describes f's rows and offsets.
func sameRows(got, f FileInfo) error {
	if got.Rows != f.Rows || got.MinOffset != f.MinOffset || got.MaxOffset != f.MaxOffset {
		return fmt.Errorf("the bucket's copy holds %d rows at offsets [%d, %d], the file %d at [%d, %d]",
			got.Rows, got.MinOffset, got.MaxOffset, f.Rows, f.MinOffset, f.MaxOffset)
	}
	return nil
}

// sameBytes reports whether the files at a and b hold the same bytes.
func sameBytes(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

// recomputeLastLocked sets the next offset of stream partition sk from
// the files and the removal journal, after a file left. l.mu must be
// held.
func (l *Lake) recomputeLastLocked(sk streamKey) {
	var last int64
	for _, f := range l.files {
		if f.MaxOffset >= 0 && streamOf(f.Partition) == sk {
			last = max(last, f.MaxOffset+1)
		}
	}
	if set := l.ret.offsets[sk]; len(set) > 0 {
		last = max(last, set[len(set)-1].To)
	}
	if last == 0 {
		delete(l.last, sk)
		return
	}
	l.last[sk] = last
}

// arrowSchemaKey is the footer's key-value entry for the Arrow schema the
// file was written from (base64 of its IPC serialization).
const arrowSchemaKey = "ARROW:schema"

// checkStoredSchema checks the footer's stored Arrow schema, if any, before
// pqarrow decodes it, decoding the base64 as pqarrow does.
func checkStoredSchema(kv metadata.KeyValueMetadata) error {
	v := kv.FindValue(arrowSchemaKey)
	if v == nil {
		return nil
	}
	var b []byte
	var err error
	if len(*v)%4 == 0 {
		b, err = base64.StdEncoding.DecodeString(*v)
	}
	if len(b) == 0 || err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(*v); err != nil {
			return err
		}
	}
	return arrowipc.CheckSchema(b)
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
// statistics). A footer that does not parse is an error for which
// isDamage holds: arrow-go panics on some damaged footers, and it would
// allocate what a damaged Arrow schema in the footer asks for (gigabytes
// from a few flipped bits) if the schema were not checked first.
func readFooter(path string, p Partition, id string) (info FileInfo, replaces []string, err error) {
	defer func() {
		if v := recover(); v != nil {
			info, replaces, err = FileInfo{Bytes: info.Bytes}, nil, fmt.Errorf("read footer of %q: %v", path, v)
		}
	}()
	return parseFooter(path, p, id, &info)
}

// parseFooter is readFooter without the recovery; it sets info.Bytes
// before it reads the file.
func parseFooter(path string, p Partition, id string, out *FileInfo) (FileInfo, []string, error) {
	info := FileInfo{ID: id, Partition: p, Path: path, MinOffset: -1, MaxOffset: -1}
	st, err := os.Stat(path)
	if err != nil {
		return info, nil, err
	}
	info.Bytes = st.Size()
	out.Bytes = info.Bytes
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		return info, nil, fmt.Errorf("read footer of %q: %w", path, err)
	}
	defer r.Close()
	md := r.MetaData()
	info.Rows = md.NumRows
	info.Columns = md.Schema.Root().NumFields()
	kv := md.KeyValueMetadata()
	if err := checkStoredSchema(kv); err != nil {
		return info, nil, fmt.Errorf("read footer of %q: %s: %w", path, arrowSchemaKey, err)
	}
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

package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The local copy of a lake in object storage as a bounded cache
// (docs/lake.md, "The local cache").
//
// With Remote.CacheBytes > 0, once the local bytes of uploaded files
// exceed it, the lake deletes local copies of uploaded files, least
// recently used first (a file's use is its publish or its latest Fetch),
// never a file not yet uploaded and never one pinned by Fetch. An
// evicted file stays in Files (FileInfo.Evicted set) and CommittedFiles:
// it is still part of the lake, kept in the bucket only.
//
// Eviction is crash-safe: before a local copy is deleted, the evicted
// journal (.evicted.json in the lake root: temporary file, fsync,
// rename, directory fsync) describes it (its footer's facts: rows,
// offsets, columns, the files it replaces). At start, a file that the
// journal names, that the upload log records as uploaded, that is not
// on disk and that no removal or replacement names, is a file of the
// lake kept in the bucket only. The journal is rewritten, from the
// evicted files of the lake, whenever a file it names leaves the lake,
// so it never brings back a file removed or replaced since.
//
// Fetch downloads evicted files back (a temporary name, the size
// checked, fsync, rename) and pins them until released.

// ErrCacheTooSmall is returned by Fetch when the files asked for do not
// fit in Remote.CacheBytes together.
var ErrCacheTooSmall = errors.New("sink: the files do not fit in the local cache (Remote.CacheBytes)")

// ErrGone is returned by Fetch for a file that is no longer in the lake:
// compaction, retention or a delete replaced or removed it after the
// caller listed it. Its rows, if kept, are in the files the lake lists
// now, so a caller lists again and retries.
var ErrGone = errors.New("sink: the file is no longer in the lake")

// CacheStats describes the local cache of a lake in object storage.
type CacheStats struct {
	// LocalBytes is the size of the local copies of uploaded files (the
	// cache); Limit is Remote.CacheBytes (0: no bound).
	LocalBytes, Limit int64
	// EvictedFiles and EvictedBytes are the files kept in the bucket
	// only, now.
	EvictedFiles, EvictedBytes int64
	// Evictions counts local copies deleted since New; Fetches and
	// FetchedBytes the files downloaded back, FetchFailures the
	// downloads that failed.
	Evictions, Fetches, FetchedBytes, FetchFailures int64
}

// Evicter is implemented by an Observer that shows published files to
// readers and must stop showing local copies before the lake deletes
// them. Evicted is called, outside the lake's locks, after files were
// marked evicted (Files reports them so) and before their local copies
// are deleted; it must return once no new reader will open them.
type Evicter interface {
	Evicted(files []FileInfo)
}

const evictedJournal = ".evicted.json"

// evictedRef is an entry of the evicted journal.
type evictedRef struct {
	carriedRef
	Replaces []string `json:"replaces,omitempty"`
}

// cache is the state of the local cache, guarded by Lake.mu except
// where noted.
type cache struct {
	// trimMu serializes evictions, journal writes and the renames of
	// fetched files, so that a fetched file is never deleted by an
	// eviction decided before it came back.
	trimMu    sync.Mutex
	pins      map[string]int           // by ID: Fetch holders
	used      map[string]time.Time     // by ID: latest Fetch
	fetching  map[string]chan struct{} // by ID: downloads in progress, closed when done
	replaces  map[string][]string      // by ID of an evicted file: the IDs its footer replaces
	journaled map[string]bool          // IDs the evicted journal on disk names; guarded by trimMu

	evictions, fetches, fetchedBytes, fetchFailures atomic.Int64
}

func (c *cache) init() {
	if c.pins == nil {
		c.pins = make(map[string]int)
		c.used = make(map[string]time.Time)
		c.fetching = make(map[string]chan struct{})
		c.replaces = make(map[string][]string)
		c.journaled = make(map[string]bool)
	}
}

// CacheStats describes the local cache; ok is false without
// Config.Remote.
func (l *Lake) CacheStats() (s CacheStats, ok bool) {
	if l.rem == nil {
		return s, false
	}
	l.mu.Lock()
	l.rem.mu.Lock()
	for _, f := range l.files {
		if f.Evicted {
			s.EvictedFiles++
			s.EvictedBytes += f.Bytes
		} else if _, up := l.rem.uploaded[f.ID]; up {
			s.LocalBytes += f.Bytes
		}
	}
	l.rem.mu.Unlock()
	l.mu.Unlock()
	c := &l.cache
	s.Limit = l.rem.cfg.CacheBytes
	s.Evictions, s.Fetches, s.FetchedBytes, s.FetchFailures = c.evictions.Load(), c.fetches.Load(), c.fetchedBytes.Load(), c.fetchFailures.Load()
	return s, true
}

// lastUseLocked is when f was last used: its latest Fetch, else its
// creation. l.mu must be held.
func (l *Lake) lastUseLocked(f FileInfo) time.Time {
	if t, ok := l.cache.used[f.ID]; ok {
		return t
	}
	t, _ := idTime(f.ID)
	return t
}

// trimCache evicts local copies of uploaded files, least recently used
// first, until their bytes are within Remote.CacheBytes (or nothing
// more can go). Errors are logged: the files stay local.
func (l *Lake) trimCache() {
	if l.rem == nil || l.rem.cfg.CacheBytes <= 0 {
		return
	}
	limit := l.rem.cfg.CacheBytes
	c := &l.cache
	c.trimMu.Lock()
	defer c.trimMu.Unlock()
	l.mu.Lock()
	var local int64
	var cands []FileInfo
	l.rem.mu.Lock()
	for _, f := range l.files {
		if f.Evicted {
			continue
		}
		if _, up := l.rem.uploaded[f.ID]; !up {
			continue
		}
		local += f.Bytes
		if c.pins[f.ID] == 0 && !l.announcing[f.ID] {
			cands = append(cands, f)
		}
	}
	l.rem.mu.Unlock()
	if local <= limit {
		l.mu.Unlock()
		return
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := l.lastUseLocked(cands[i]), l.lastUseLocked(cands[j])
		if !a.Equal(b) {
			return a.Before(b)
		}
		return cands[i].ID < cands[j].ID
	})
	var victims []FileInfo
	for _, f := range cands {
		if local <= limit {
			break
		}
		victims = append(victims, f)
		local -= f.Bytes
	}
	l.mu.Unlock()

	repl := make(map[string][]string, len(victims))
	keep := victims[:0]
	for _, f := range victims {
		_, rs, err := readFooter(f.Path, f.Partition, f.ID)
		if err != nil {
			l.log.Error("sink: cache: read footer before eviction; the file stays local", "file", f.Path, "err", err)
			continue
		}
		repl[f.ID] = rs
		keep = append(keep, f)
	}
	victims = keep
	if len(victims) == 0 {
		return
	}
	if err := l.writeEvictedLocked(victims, repl); err != nil {
		l.log.Error("sink: cache: write the evicted journal; files stay local", "err", err)
		return
	}
	var gone []FileInfo
	l.mu.Lock()
	for _, v := range victims {
		i, ok := l.indexLocked(v.ID)
		if !ok || c.pins[v.ID] > 0 || l.files[i].Evicted {
			continue
		}
		l.files[i].Evicted = true
		c.replaces[v.ID] = repl[v.ID]
		gone = append(gone, l.files[i])
	}
	l.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if e, ok := l.obs.(Evicter); ok {
		e.Evicted(gone)
	}
	var bytes int64
	for _, f := range gone {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.log.Error("sink: cache: delete evicted local copy", "file", f.Path, "err", err)
		}
		bytes += f.Bytes
	}
	c.evictions.Add(int64(len(gone)))
	l.log.Debug("sink: cache: evicted local copies of uploaded files", "files", len(gone), "bytes", bytes)
}

// indexLocked returns the index of file id in l.files. l.mu must be
// held.
func (l *Lake) indexLocked(id string) (int, bool) {
	i := sort.Search(len(l.files), func(i int) bool { return l.files[i].ID >= id })
	return i, i < len(l.files) && l.files[i].ID == id
}

// writeEvictedLocked replaces the evicted journal with the lake's
// evicted files and extra (about to be evicted; repl holds their
// replaces). c.trimMu must be held.
func (l *Lake) writeEvictedLocked(extra []FileInfo, repl map[string][]string) error {
	var es []evictedRef
	ids := make(map[string]bool)
	add := func(f FileInfo, rs []string) {
		es = append(es, evictedRef{carriedRef: refOf(f), Replaces: rs})
		ids[f.ID] = true
	}
	l.mu.Lock()
	for _, f := range l.files {
		if f.Evicted {
			add(f, l.cache.replaces[f.ID])
		}
	}
	for _, f := range extra {
		if _, ok := l.indexLocked(f.ID); ok && !ids[f.ID] {
			add(f, repl[f.ID])
		}
	}
	l.mu.Unlock()
	raw, err := json.Marshal(es)
	if err != nil {
		return err
	}
	if err := writeDurably(l.cfg.Dir, evictedJournal, raw); err != nil {
		return err
	}
	l.cache.journaled = ids
	return nil
}

// forgetEvicted rewrites the evicted journal if it names one of files,
// which left the lake (replaced or removed), so that a restart never
// brings them back. The file that replaced them (its footer) or the
// removal journal names them until then.
func (l *Lake) forgetEvicted(files []FileInfo) {
	if l.rem == nil {
		return
	}
	c := &l.cache
	c.trimMu.Lock()
	defer c.trimMu.Unlock()
	named := false
	for _, f := range files {
		named = named || c.journaled[f.ID]
	}
	l.mu.Lock()
	for _, f := range files {
		delete(c.replaces, f.ID)
		delete(c.used, f.ID)
	}
	l.mu.Unlock()
	if !named {
		return
	}
	if err := l.writeEvictedLocked(nil, nil); err != nil {
		l.log.Error("sink: cache: rewrite the evicted journal", "err", err)
	}
}

// openEvicted adds to l.files the files the evicted journal names that
// are uploaded (done: relative paths in the upload log), not on disk,
// and neither removed (the removal journal) nor replaced (replaced: IDs
// named by the files' footers). Local files that an evicted file
// replaces are deleted. It runs in openRemote, before the Lake is shared.
func (l *Lake) openEvicted(done map[string]bool, replaced map[string]bool) error {
	l.cache.init()
	raw, err := os.ReadFile(filepath.Join(l.cfg.Dir, evictedJournal))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sink: read evicted journal: %w", err)
	}
	var es []evictedRef
	if err := json.Unmarshal(raw, &es); err != nil {
		return fmt.Errorf("sink: evicted journal %s: %w", filepath.Join(l.cfg.Dir, evictedJournal), err)
	}
	local := make(map[string]bool, len(l.files))
	for _, f := range l.files {
		local[f.ID] = true
	}
	var added []FileInfo
	for _, e := range es {
		f, err := e.info(l.cfg.Dir)
		if err != nil {
			return fmt.Errorf("sink: evicted journal names %q: %w", e.File, err)
		}
		id := f.ID
		l.cache.journaled[id] = true
		if local[id] || !done[e.File] || replaced[id] || l.ret.journal[filepath.FromSlash(e.File)] {
			continue
		}
		f.Evicted = true
		added = append(added, f)
		l.cache.replaces[id] = e.Replaces
		for _, r := range e.Replaces {
			replaced[r] = true
		}
	}
	if len(added) == 0 {
		return nil
	}
	// A crash after an evicted file replaced local ones, before they
	// were deleted, leaves both: the evicted one holds their rows.
	keep := l.files[:0]
	for _, f := range l.files {
		if !replaced[f.ID] {
			keep = append(keep, f)
			continue
		}
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sink: remove file replaced by an evicted one: %w", err)
		}
	}
	l.files = append(keep, added...)
	sort.Slice(l.files, func(i, j int) bool { return l.files[i].ID < l.files[j].ID })
	for _, f := range added {
		if t, ok := idTime(f.ID); ok && t.After(l.lastID) {
			l.lastID = t
		}
		if f.MaxOffset >= 0 {
			sk := streamOf(f.Partition)
			l.last[sk] = max(l.last[sk], f.MaxOffset+1)
		}
	}
	return nil
}

// Fetch makes the given files of the lake local: it downloads those
// evicted from the local cache (into a temporary name, checks the size,
// fsyncs and renames it into place at FileInfo.Path) and pins all of
// them, so that no eviction deletes them, until release is called
// (release is safe to call more than once). Files are matched by ID; a
// file no longer in the lake fails it with ErrGone. With Remote.CacheBytes > 0,
// files whose bytes together exceed it are refused with
// ErrCacheTooSmall. Without Config.Remote every file is local: Fetch
// only checks they are in the lake. Safe for concurrent use; two
// Fetches of one file download it once.
func (l *Lake) Fetch(ctx context.Context, files []FileInfo) (release func(), err error) {
	return l.fetch(ctx, files, true)
}

func (l *Lake) fetch(ctx context.Context, files []FileInfo, bounded bool) (release func(), err error) {
	if l.rem == nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, f := range files {
			if _, ok := l.indexLocked(f.ID); !ok {
				return nil, fmt.Errorf("%w: fetch %s", ErrGone, f.ID)
			}
		}
		return func() {}, nil
	}
	c := &l.cache
	ids := make([]string, 0, len(files))
	seen := make(map[string]bool, len(files))
	var total int64
	l.mu.Lock()
	for _, f := range files {
		i, ok := l.indexLocked(f.ID)
		if !ok {
			l.mu.Unlock()
			return nil, fmt.Errorf("%w: fetch %s", ErrGone, f.ID)
		}
		if !seen[f.ID] {
			seen[f.ID] = true
			ids = append(ids, f.ID)
			total += l.files[i].Bytes
		}
	}
	if limit := l.rem.cfg.CacheBytes; bounded && limit > 0 && total > limit {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: %d files of %d bytes, the cache holds %d", ErrCacheTooSmall, len(ids), total, limit)
	}
	now := time.Now()
	for _, id := range ids {
		c.pins[id]++
		c.used[id] = now
	}
	l.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			l.mu.Lock()
			for _, id := range ids {
				if c.pins[id]--; c.pins[id] <= 0 {
					delete(c.pins, id)
				}
			}
			l.mu.Unlock()
			l.trimCache()
		})
	}
	for _, id := range ids {
		if err := l.fetchOne(ctx, id); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

// fetchOne downloads file id if it is evicted, or waits for the
// download in progress. The file must be pinned.
func (l *Lake) fetchOne(ctx context.Context, id string) error {
	c := &l.cache
	for {
		l.mu.Lock()
		i, ok := l.indexLocked(id)
		if !ok {
			l.mu.Unlock()
			return fmt.Errorf("%w: fetch %s", ErrGone, id)
		}
		f := l.files[i]
		if !f.Evicted {
			l.mu.Unlock()
			return nil
		}
		if ch, busy := c.fetching[id]; busy {
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		ch := make(chan struct{})
		c.fetching[id] = ch
		l.mu.Unlock()
		err := l.download(ctx, f)
		l.mu.Lock()
		delete(c.fetching, id)
		close(ch)
		l.mu.Unlock()
		if err != nil {
			c.fetchFailures.Add(1)
			return fmt.Errorf("sink: fetch %s: %w", f.ID, err)
		}
		c.fetches.Add(1)
		c.fetchedBytes.Add(f.Bytes)
		return nil
	}
}

// download brings evicted f back to f.Path and marks it local.
func (l *Lake) download(ctx context.Context, f FileInfo) error {
	dir := filepath.Dir(f.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+f.ID+".fetch"+tmpSuffix) // deleted by scan if left behind
	defer os.Remove(tmp)
	if err := l.rem.cfg.Store.Get(ctx, l.rem.key(f), tmp); err != nil {
		return err
	}
	out, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	st, err := out.Stat()
	if err == nil && st.Size() != f.Bytes {
		err = fmt.Errorf("downloaded %d bytes, the file has %d", st.Size(), f.Bytes)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// The object was checked by checksum when it was put, but the bucket
	// is outside: its footer is read as a published file's at start
	// (readers such as compaction's decode the Arrow schema it stores),
	// and it must be the file evicted, not another.
	got, _, err := readFooter(tmp, f.Partition, f.ID)
	if err != nil {
		return fmt.Errorf("the bucket's copy is damaged: %w", err)
	}
	if err := sameRows(got, f); err != nil {
		return err
	}
	c := &l.cache
	c.trimMu.Lock()
	defer c.trimMu.Unlock()
	// Under l.mu, so that a file removed meanwhile (retention) is not
	// brought back to disk after its removal.
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.indexLocked(f.ID)
	if !ok {
		return fmt.Errorf("%w: %s left it while being downloaded", ErrGone, f.ID)
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		return err
	}
	l.files[i].Evicted = false
	delete(c.replaces, f.ID)
	return nil
}

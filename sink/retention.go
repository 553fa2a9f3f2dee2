package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weirlabs/weir/internal/durable"
)

// Retention (docs/lake.md, "Retention") removes published files whose
// rows are all older than their stream's retention period. A file's rows
// all lie in its hour partition (its date for a day file), so a file
// expires once the end of its hour (date) is more than the period ago.
//
// Removing a file is three steps, each safe to interrupt:
//
//  1. the decision is made durable: the removal journal (.removed.json
//     in the lake root) names the file, the files it replaced if
//     compaction wrote it, and the exact _offset values it held;
//  2. the file leaves Files and the Observer is told (Removed): the
//     query engine drops it from its views in one change and deletes it
//     once no running query can read it (without an Observer, the lake
//     deletes it at once);
//  3. empty hour and date directories are removed, at that pass or a
//     later one (never one a file is being written in).
//
// At start-up, New deletes every file the journal names before it lists
// anything, so a file is either listed or gone, never shown again after
// a crash. The journal also keeps the removed offsets, so that
// LastOffset never goes back (offsets stay unique) and PublishedOffsets
// counts them as published (a write-ahead log that still holds them does
// not bring the rows back).

// Retention sets how long published rows are kept. A zero period keeps
// rows forever. The most specific period applies: Streams, then Tenants,
// then Default.
type Retention struct {
	// Default applies to every stream without a more specific period.
	Default time.Duration
	// Tenants maps a tenant to the period of its streams.
	Tenants map[string]time.Duration
	// Streams maps "tenant/stream" to that stream's period.
	Streams map[string]time.Duration
	// Interval is how often expired files are looked for; 0 means
	// DefaultRetentionInterval.
	Interval time.Duration
	// Hold, when set, is asked about each expired file before it is
	// removed, and keeps it by returning true (records consumers have not
	// read yet). It is called with the lake's lock held: it must not call
	// the Lake.
	Hold func(f FileInfo, now time.Time) bool
}

// DefaultRetentionInterval is how often retention runs by default.
const DefaultRetentionInterval = time.Minute

// Enabled reports whether any period is set.
func (r Retention) Enabled() bool {
	if r.Default > 0 {
		return true
	}
	for _, d := range r.Tenants {
		if d > 0 {
			return true
		}
	}
	for _, d := range r.Streams {
		if d > 0 {
			return true
		}
	}
	return false
}

// Period returns the retention period of a tenant's stream, 0 for
// forever.
func (r Retention) Period(tenant, stream string) time.Duration {
	if d, ok := r.Streams[tenant+"/"+stream]; ok {
		return d
	}
	if d, ok := r.Tenants[tenant]; ok {
		return d
	}
	return r.Default
}

// Expired reports whether every row of a file of partition p, all of
// whose rows lie in p's hour (its date for a day file, Partition.Day),
// is older than its period at now.
func (r Retention) Expired(p Partition, now time.Time) bool {
	d := r.Period(p.Tenant, p.Stream)
	if d <= 0 {
		return false
	}
	p.Hour = p.Hour.UTC().Truncate(time.Hour)
	end := p.End()
	return !end.After(now.Add(-d))
}

func (r Retention) interval() time.Duration {
	if r.Interval > 0 {
		return r.Interval
	}
	return DefaultRetentionInterval
}

// validate reports the first invalid setting.
func (r Retention) validate() error {
	if r.Default < 0 {
		return fmt.Errorf("sink: Retention.Default must not be negative, got %s", r.Default)
	}
	for t, d := range r.Tenants {
		if !validName(t) {
			return fmt.Errorf("sink: Retention.Tenants: invalid tenant %q", t)
		}
		if d < 0 {
			return fmt.Errorf("sink: Retention.Tenants[%q] must not be negative, got %s", t, d)
		}
	}
	for k, d := range r.Streams {
		t, s, ok := strings.Cut(k, "/")
		if !ok || !validName(t) || !validName(s) {
			return fmt.Errorf("sink: Retention.Streams: key %q is not tenant/stream", k)
		}
		if d < 0 {
			return fmt.Errorf("sink: Retention.Streams[%q] must not be negative, got %s", k, d)
		}
	}
	if r.Interval < 0 || r.Interval > 0 && r.Interval < minMaxFileAge {
		return fmt.Errorf("sink: Retention.Interval must be 0 (the default) or at least %s, got %s", minMaxFileAge, r.Interval)
	}
	return nil
}

// RetentionStats counts what retention removed since New.
type RetentionStats struct {
	Files, Rows, Bytes int64
	// Runs counts passes, Failures passes that failed (logged).
	Runs, Failures int64
}

// removedJournal is the file, in the lake root, that names removed files
// and their offsets. Its name starts with a dot, so lake globs never
// match it, and does not end in .tmp, so start-up keeps it.
const removedJournal = ".removed.json"

// retention is the Lake's retention state.
type retention struct {
	cancel context.CancelFunc // stops the retainer; nil when not started
	done   chan struct{}      // closed when the retainer returns

	files, rows, bytes, runs, failures atomic.Int64

	// Guarded by Lake.mu.
	offsets map[streamKey]OffsetSet // removed offsets, per stream partition
	// Guarded by Lake.compacting (held by every writer of the journal).
	journal     map[string]bool // paths relative to Dir, removed but maybe still on disk
	pendingDirs map[string]bool // hour directories to remove once empty
}

// journalFile is the JSON form of the removal journal.
type journalFile struct {
	// Files are paths, relative to the lake root, of files that were
	// removed and may still be on disk; New deletes them.
	Files []string `json:"files"`
	// Offsets are the _offset values removed files held, per stream
	// partition, as half-open ranges.
	Offsets []journalOffsets `json:"offsets"`
}

type journalOffsets struct {
	Tenant string     `json:"tenant"`
	Stream string     `json:"stream"`
	Part   int32      `json:"part"`
	Ranges [][2]int64 `json:"ranges"`
}

// startRetention starts the retainer when a period is set. l.mu must be
// held (Start).
func (l *Lake) startRetention() {
	if !l.cfg.Retention.Enabled() || l.ret.cancel != nil {
		return
	}
	var ctx context.Context
	ctx, l.ret.cancel = context.WithCancel(context.Background())
	l.ret.done = make(chan struct{})
	go l.retainer(ctx, l.ret.done)
}

// stopRetention stops the retainer and waits for it, or for ctx. A pass
// in progress is cut short; the lake stays consistent.
func (l *Lake) stopRetention(ctx context.Context) error {
	l.mu.Lock()
	cancel, done := l.ret.cancel, l.ret.done
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sink: waiting for retention: %w", context.Cause(ctx))
	}
}

// retainer runs Retain at once and then every Retention.Interval until
// ctx is cancelled.
func (l *Lake) retainer(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("stage", "retention")))
	t := time.NewTicker(l.cfg.Retention.interval())
	defer t.Stop()
	for {
		if _, err := l.Retain(ctx); err != nil && ctx.Err() == nil {
			l.log.Error("sink: retention; retrying at the next tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RetentionStats returns what retention removed since New.
func (l *Lake) RetentionStats() RetentionStats {
	return RetentionStats{
		Files: l.ret.files.Load(), Rows: l.ret.rows.Load(), Bytes: l.ret.bytes.Load(),
		Runs: l.ret.runs.Load(), Failures: l.ret.failures.Load(),
	}
}

// Retain removes the published files that Config.Retention says have
// expired and returns them. It never touches open files or files being
// published, and takes turns with Compact, so it never removes a file
// that compaction is reading. Start runs it every Retention.Interval.
func (l *Lake) Retain(ctx context.Context) ([]FileInfo, error) {
	return l.retain(ctx, time.Now())
}

func (l *Lake) retain(ctx context.Context, now time.Time) ([]FileInfo, error) {
	l.ret.runs.Add(1)
	files, err := l.retainLocking(ctx, now)
	if err != nil && ctx.Err() == nil {
		l.ret.failures.Add(1)
	}
	return files, err
}

func (l *Lake) retainLocking(ctx context.Context, now time.Time) ([]FileInfo, error) {
	select {
	case l.compacting <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-l.compacting }()
	rcfg := l.cfg.Retention
	var expired []FileInfo
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil
	}
	for _, f := range l.files {
		if !l.announcing[f.ID] && rcfg.Expired(f.Partition, now) && (rcfg.Hold == nil || !rcfg.Hold(f, now)) {
			expired = append(expired, f)
		}
	}
	l.mu.Unlock()
	if len(expired) == 0 {
		l.removeEmptyDirs()
		return nil, nil
	}
	if err := l.removeFiles(ctx, expired, "retention"); err != nil {
		return nil, err
	}
	var rows, bytes int64
	for _, f := range expired {
		rows += f.Rows
		bytes += f.Bytes
	}
	l.ret.files.Add(int64(len(expired)))
	l.ret.rows.Add(rows)
	l.ret.bytes.Add(bytes)
	l.log.Info("sink: retention removed expired files", "files", len(expired), "rows", rows, "bytes", bytes)
	l.removeEmptyDirs()
	return expired, nil
}

// removeFiles takes published files out of the lake for good: it
// journals them with their offsets (and, for compacted files, the files
// they replaced), removes them from Files and hands them to the Observer
// (Removed), which deletes them once no reader needs them; without an
// Observer they are deleted at once. l.compacting must be held.
func (l *Lake) removeFiles(ctx context.Context, files []FileInfo, why string) error {
	// Evicted files are fetched to read their offsets (unbounded by the
	// cache: they are deleted right after).
	release, err := l.fetch(ctx, files, false)
	if err != nil {
		return fmt.Errorf("%s: %w", why, err)
	}
	defer release()
	removed := make(map[streamKey]OffsetSet)
	var paths []string
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, replaces, err := readFooter(f.Path, f.Partition, f.ID)
		if err != nil {
			return fmt.Errorf("%s: %w", why, err)
		}
		offs, err := readOffsets(ctx, f.Path, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", why, err)
		}
		sk := streamOf(f.Partition)
		removed[sk] = removed[sk].union(toOffsetSet(offs))
		dir := f.Partition.Dir()
		paths = append(paths, filepath.Join(dir, f.ID+fileExt))
		// A compacted file's inputs may still be on disk, waiting for
		// the Observer to delete them; they must not come back either.
		for _, r := range replaces {
			paths = append(paths, filepath.Join(dir, r+fileExt))
		}
	}
	if err := l.journalRemoval(paths, removed); err != nil {
		return fmt.Errorf("%s: %w", why, err)
	}
	gone := make(map[string]bool, len(files))
	for _, f := range files {
		gone[f.ID] = true
	}
	l.mu.Lock()
	l.files = slices.DeleteFunc(l.files, func(f FileInfo) bool { return gone[f.ID] })
	if l.ret.offsets == nil {
		l.ret.offsets = make(map[streamKey]OffsetSet)
	}
	for sk, set := range removed {
		l.ret.offsets[sk] = l.ret.offsets[sk].union(set)
	}
	if l.rem != nil {
		l.rem.removedLocked(files)
	}
	l.mu.Unlock()
	l.forgetEvicted(files)
	defer l.committedChanged()
	if l.ret.pendingDirs == nil {
		l.ret.pendingDirs = make(map[string]bool)
	}
	for _, f := range files {
		if len(l.ret.pendingDirs) < maxDurableDirs {
			l.ret.pendingDirs[filepath.Join(l.cfg.Dir, f.Partition.Dir())] = true
		}
	}
	if l.obs != nil {
		l.obs.Removed(files)
		return nil
	}
	for _, f := range files {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.log.Error("sink: remove file", "path", f.Path, "err", err)
		}
	}
	return nil
}

// journalRemoval adds paths (relative to Dir) and offsets to the
// removal journal and makes it durable. Paths of earlier removals that
// are gone from disk, durably, leave the journal. l.compacting must be
// held.
func (l *Lake) journalRemoval(paths []string, offsets map[streamKey]OffsetSet) error {
	if l.ret.journal == nil {
		l.ret.journal = make(map[string]bool)
	}
	synced := make(map[string]bool)
	for rel := range l.ret.journal {
		if l.goneDurably(rel, synced) {
			delete(l.ret.journal, rel)
		}
	}
	for _, p := range paths {
		l.ret.journal[p] = true
	}
	l.mu.Lock()
	all := make(map[streamKey]OffsetSet, len(l.ret.offsets)+len(offsets))
	for sk, set := range l.ret.offsets {
		all[sk] = set
	}
	l.mu.Unlock()
	for sk, set := range offsets {
		all[sk] = all[sk].union(set)
	}
	return l.writeJournal(all)
}

// goneDurably reports whether the file at rel (relative to Dir) is gone
// and its removal durable: it fsyncs the nearest existing directory
// above it (once per directory, remembered in synced).
func (l *Lake) goneDurably(rel string, synced map[string]bool) bool {
	path := filepath.Join(l.cfg.Dir, rel)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if synced[d] {
			return true
		}
		if _, err := os.Stat(d); err == nil {
			if durable.SyncDir(d) != nil {
				return false
			}
			synced[d] = true
			return true
		}
		if d == l.cfg.Dir || d == filepath.Dir(d) {
			return false
		}
	}
}

// writeJournal replaces the removal journal with l.ret.journal and
// offsets: temporary file, fsync, rename, directory fsync.
func (l *Lake) writeJournal(offsets map[streamKey]OffsetSet) error {
	var jf journalFile
	for rel := range l.ret.journal {
		jf.Files = append(jf.Files, filepath.ToSlash(rel))
	}
	sort.Strings(jf.Files)
	for sk, set := range offsets {
		jo := journalOffsets{Tenant: sk.tenant, Stream: sk.stream, Part: sk.part}
		for _, r := range set {
			jo.Ranges = append(jo.Ranges, [2]int64{r.From, r.To})
		}
		jf.Offsets = append(jf.Offsets, jo)
	}
	sort.Slice(jf.Offsets, func(i, j int) bool {
		a, b := jf.Offsets[i], jf.Offsets[j]
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		if a.Stream != b.Stream {
			return a.Stream < b.Stream
		}
		return a.Part < b.Part
	})
	raw, err := json.Marshal(jf)
	if err != nil {
		return err
	}
	if err := writeDurably(l.cfg.Dir, removedJournal, raw); err != nil {
		return fmt.Errorf("removal journal: %w", err)
	}
	return nil
}

// recoverRemoved reads the removal journal at start-up (after scan):
// files it names are deleted and dropped from Files, and the offsets
// they held count for LastOffset and PublishedOffsets.
func (l *Lake) recoverRemoved() error {
	// A journal being written when the process died never replaced the
	// journal; the old one holds.
	if err := os.Remove(filepath.Join(l.cfg.Dir, removedJournal+".tmp")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sink: remove leftover removal journal: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(l.cfg.Dir, removedJournal))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sink: read removal journal: %w", err)
	}
	var jf journalFile
	if err := json.Unmarshal(raw, &jf); err != nil {
		return fmt.Errorf("sink: removal journal %s: %w", filepath.Join(l.cfg.Dir, removedJournal), err)
	}
	l.ret.offsets = make(map[streamKey]OffsetSet, len(jf.Offsets))
	for _, jo := range jf.Offsets {
		sk := streamKey{tenant: jo.Tenant, stream: jo.Stream, part: jo.Part}
		var set OffsetSet
		for _, r := range jo.Ranges {
			if r[0] < r[1] {
				set = append(set, OffsetRange{From: r[0], To: r[1]})
			}
		}
		set = OffsetSet(nil).union(set)
		l.ret.offsets[sk] = set
		if n := len(set); n > 0 {
			l.last[sk] = max(l.last[sk], set[n-1].To)
		}
	}
	l.ret.journal = make(map[string]bool, len(jf.Files))
	gone := make(map[string]bool, len(jf.Files))
	for _, rel := range jf.Files {
		rel = filepath.FromSlash(rel)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("sink: removal journal names %q, outside the lake", rel)
		}
		l.ret.journal[rel] = true
		gone[filepath.Join(l.cfg.Dir, rel)] = true
	}
	var deleted int
	dirs := make(map[string]bool)
	for _, rel := range jf.Files {
		path := filepath.Join(l.cfg.Dir, filepath.FromSlash(rel))
		err := os.Remove(path)
		switch {
		case err == nil:
			deleted++
			dirs[filepath.Dir(path)] = true
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("sink: remove file the removal journal names: %w", err)
		}
	}
	l.files = slices.DeleteFunc(l.files, func(f FileInfo) bool { return gone[f.Path] })
	if deleted > 0 {
		l.log.Warn("sink: deleted files removed before a restart (retention or delete)", "count", deleted)
	}
	l.ret.pendingDirs = dirs
	l.removeEmptyDirs()
	// The journal is rewritten without the files now durably gone; it
	// keeps the offsets for good.
	synced := make(map[string]bool)
	for rel := range l.ret.journal {
		if l.goneDurably(rel, synced) {
			delete(l.ret.journal, rel)
		}
	}
	if err := l.writeJournal(l.ret.offsets); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	return nil
}

// removeEmptyDirs removes the pending hour directories that are empty,
// and then their date directories if empty, unless a file is open or
// being published in them. Directories that are not empty stay pending.
// l.compacting must be held (or the Lake not yet shared).
func (l *Lake) removeEmptyDirs() {
	for dir := range l.ret.pendingDirs {
		l.mu.Lock()
		date := filepath.Dir(dir)
		busy := false
		inUse := func(f *openFile) bool { return f.dir == dir || filepath.Dir(f.dir) == date }
		for _, f := range l.open {
			busy = busy || inUse(f)
		}
		for f := range l.sealing {
			busy = busy || inUse(f)
		}
		var err error
		if !busy {
			// Held across the rmdir so that no file opens in dir
			// meanwhile: a new file registers under l.mu before it
			// creates its directory. rmdir of an empty directory is
			// cheap.
			if err = os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
				delete(l.durable, dir)
				if os.Remove(date) == nil {
					delete(l.durable, date)
				}
			}
		}
		l.mu.Unlock()
		if !busy && (err == nil || errors.Is(err, fs.ErrNotExist)) {
			delete(l.ret.pendingDirs, dir)
		}
	}
}

// removedOffsets returns the removed offsets of a stream partition at or
// above from.
func (l *Lake) removedOffsets(sk streamKey, from int64) OffsetSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out OffsetSet
	for _, r := range l.ret.offsets[sk] {
		if r.To > from {
			out = append(out, OffsetRange{From: max(r.From, from), To: r.To})
		}
	}
	return out
}

// toOffsetSet returns the set of the offsets in offs, in any order.
func toOffsetSet(offs []int64) OffsetSet {
	offs = slices.Clone(offs)
	slices.Sort(offs)
	var set OffsetSet
	for _, o := range offs {
		if n := len(set); n > 0 && set[n-1].To >= o {
			set[n-1].To = max(set[n-1].To, o+1)
			continue
		}
		set = append(set, OffsetRange{From: o, To: o + 1})
	}
	return set
}

// union returns the set of offsets in s or t; s and t are not changed.
func (s OffsetSet) union(t OffsetSet) OffsetSet {
	all := make(OffsetSet, 0, len(s)+len(t))
	all = append(all, s...)
	all = append(all, t...)
	sort.Slice(all, func(i, j int) bool { return all[i].From < all[j].From })
	var out OffsetSet
	for _, r := range all {
		if r.From >= r.To {
			continue
		}
		if n := len(out); n > 0 && out[n-1].To >= r.From {
			out[n-1].To = max(out[n-1].To, r.To)
			continue
		}
		out = append(out, r)
	}
	return out
}

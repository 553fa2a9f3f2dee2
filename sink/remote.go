package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weirlabs/weir/internal/objstore"
)

// The lake in object storage (docs/lake.md, "Object storage").
//
// With Config.Remote set, every file the lake publishes (by a Write, by
// compaction, by a delete) is also uploaded to the bucket under
// <Prefix>/<the same relative path as on disk>. The local file stays:
// queries read it. A file counts as committed (CommittedFiles, and for
// OldestUnpublished, hence the buffer's COMMITTED ack) only once its
// upload is confirmed and recorded:
//
//  1. upload: Store.Put, which the server verifies by checksum, and a
//     size check;
//  2. record: the file's relative path is appended to the upload log
//     (.uploaded.log in the lake root) and fsynced.
//
// A crash between 1 and 2 leaves an object the lake does not know as
// uploaded: it is uploaded again at start (the same key, so the object
// is replaced, never doubled).
//
// A compacted or delete-rewritten file N replaces files whose objects
// hold the same rows. Those objects stay, and stay committed, until N is
// uploaded: the carry journal (.carry.json, written to a temporary file,
// fsynced, renamed, directory fsynced) names them before N is renamed
// into place. Once N is recorded as uploaded they leave CommittedFiles
// and are deleted from the bucket. Files removed by retention or by a
// delete leave CommittedFiles at once, and their objects are deleted.
//
// Remote deletions are not journaled: at every start the uploader lists
// the prefix and deletes each object in the lake layout that names no
// file of the lake, that no carry entry names, and that this lake wrote:
// every object carries the lake's identity (.lake-id, made once, in
// the user metadata key weir-lake), checked with a Head before the
// delete. Whatever step a crash interrupted (upload, record, local
// delete, remote delete), the bucket then ends with exactly the lake's
// files; and a lake started on an empty data directory (a lost disk, a
// second server pointed at the same prefix by mistake) never deletes
// objects it did not write.

// Remote configures the lake's object storage.
type Remote struct {
	// Store is the bucket.
	Store objstore.Store
	// Prefix is put before every key: "<Prefix>/tenant=.../x.parquet".
	// No leading or trailing slash; empty for the bucket's root.
	Prefix string
	// Uploads is how many uploads (and remote deletes) run at once; 0
	// means 2.
	Uploads int
	// RetryMin and RetryMax bound the pause after a failed upload or
	// delete, which doubles at each consecutive failure; 0 means 200 ms
	// and 10 s.
	RetryMin, RetryMax time.Duration
	// CacheBytes bounds the local copies of uploaded files: past it,
	// the least recently used are deleted locally and fetched back from
	// the bucket when read (Lake.Fetch; cache.go). Files not yet
	// uploaded are never deleted and do not count. 0 keeps every file
	// local.
	CacheBytes int64
	// Referenced, when set, reports whether a reader may still be sent
	// to the object at location (Store.URI of its key; a file's
	// Location): an Iceberg table's current snapshot lists it. Such an
	// object is not deleted yet, neither a replaced or removed file's
	// nor garbage found by the listing at start; the lake asks again
	// at its next attempt to delete, after Lake.WakeRemote (see
	// remoteref.go). It is called with the lake's locks held: it must
	// be quick and must not call the Lake.
	Referenced func(location string) bool
}

func (r *Remote) validate() error {
	switch {
	case r.Store == nil:
		return errors.New("sink: Remote.Store must be set")
	case strings.HasPrefix(r.Prefix, "/") || strings.HasSuffix(r.Prefix, "/"):
		return fmt.Errorf("sink: Remote.Prefix %q must not start or end with a slash", r.Prefix)
	case r.Uploads < 0 || r.Uploads > 64:
		return fmt.Errorf("sink: Remote.Uploads must be in [0, 64], got %d", r.Uploads)
	case r.CacheBytes < 0:
		return fmt.Errorf("sink: Remote.CacheBytes must not be negative, got %d", r.CacheBytes)
	case r.RetryMin < 0 || r.RetryMax < 0 || r.RetryMax > 0 && r.RetryMax < r.RetryMin:
		return fmt.Errorf("sink: Remote.RetryMin and RetryMax must be positive with RetryMin <= RetryMax, got %s and %s", r.RetryMin, r.RetryMax)
	}
	return nil
}

// RemoteStats describes the uploads of a lake in object storage.
type RemoteStats struct {
	// PendingFiles and PendingBytes are the published files not yet
	// confirmed in the bucket.
	PendingFiles, PendingBytes int64
	// UploadedFiles and UploadedBytes count confirmed uploads since New.
	UploadedFiles, UploadedBytes int64
	// UploadFailures and DeleteFailures count failed attempts since New;
	// DeletedObjects the objects deleted from the bucket.
	UploadFailures, DeleteFailures, DeletedObjects int64
	// Mended counts local copies found damaged or missing while the lake
	// ran and replaced by the bucket's (Lake.Mend).
	Mended int64
	// Failing is set while the latest attempt failed; LastError says
	// why (empty when not failing) and Permanent whether the server
	// refused (credentials, missing bucket) rather than was unreachable.
	Failing   bool
	Permanent bool
	LastError string
}

// Files of the lake root for object storage.
const (
	uploadLog    = ".uploaded.log"
	carryJournal = ".carry.json"
	lakeIDFile   = ".lake-id"
)

// ownerMeta is the user metadata key of the identity of the lake that
// wrote an object.
const ownerMeta = "weir-lake"

// remote is the Lake's object-storage state. Lock order: Lake.mu, then
// remote.mu (remote.mu is never held while taking Lake.mu).
type remote struct {
	cfg    Remote
	dir    string
	id     string // the lake's identity (lakeIDFile), put on every object
	log    *slog.Logger
	notify func()
	trim   func() // called after an upload is recorded

	mu       sync.Mutex
	uploaded map[string]FileInfo            // by ID: files of the lake confirmed in the bucket
	pending  map[string]*pendingUp          // by ID: files of the lake not confirmed yet
	lows     map[streamKey]map[string]int64 // pending IDs whose rows are in no object, by stream partition: their lowest _offset
	carry    map[string]*carryEntry         // by ID of a pending file: uploaded files it replaced
	frozen   map[string]bool                // pending IDs being replaced: their upload is not recorded
	inflight map[string]bool                // IDs being uploaded, keys being deleted
	deletes  map[string]bool                // object keys to delete
	listed   bool                           // the bucket was listed since New
	listing  bool
	// committedNow is set by a job that changed what committed
	// returns; the worker then calls notify, outside r.mu.
	committedNow bool
	ulog         *os.File
	ulogEnd      int64 // where the next line goes; zeros from there
	ulogSize     int64
	changed      chan struct{} // closed and replaced at every change, for Sync

	failures int // consecutive
	failing  error
	loggedAt time.Time
	stats    RemoteStats
	stop     chan struct{}
	cancel   context.CancelFunc
	wake     chan struct{}
	wg       sync.WaitGroup
	started  bool
	stopped  bool
}

type pendingUp struct {
	info FileInfo
}

// carryEntry is a pending file's journal entry.
type carryEntry struct {
	// Low is the lowest _offset of the file's rows that are in no
	// object (rows of replaced files that were not uploaded either), or
	// -1.
	Low     int64        `json:"low"`
	File    string       `json:"file"` // relative path, slash-separated
	Carries []carriedRef `json:"carries"`
	files   []FileInfo
}

type carriedRef struct {
	File      string `json:"file"`
	Part      int32  `json:"part"`
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
	MinOffset int64  `json:"min_offset"`
	MaxOffset int64  `json:"max_offset"`
	Columns   int    `json:"columns"`
	Compacted bool   `json:"compacted,omitempty"`
	Rollup    bool   `json:"rollup,omitempty"`
	Counts    int    `json:"rollup_counts,omitempty"` // FileInfo.RollupCounts
	Schema    uint64 `json:"schema,omitempty"`        // FileInfo.schema
}

// refOf returns the reference to f that journals carry.
func refOf(f FileInfo) carriedRef {
	return carriedRef{
		File: relOf(f), Part: f.Partition.Part, Rows: f.Rows, Bytes: f.Bytes,
		MinOffset: f.MinOffset, MaxOffset: f.MaxOffset, Columns: f.Columns,
		Compacted: f.Compacted, Rollup: f.Rollup, Counts: f.RollupCounts, Schema: f.schema,
	}
}

// info describes the file that c refers to in the lake at dir.
func (c carriedRef) info(dir string) (FileInfo, error) {
	p, id, err := parsePath(filepath.FromSlash(c.File))
	if err != nil {
		return FileInfo{}, err
	}
	p.Part = c.Part
	return FileInfo{
		ID: id, Partition: p, Path: filepath.Join(dir, filepath.FromSlash(c.File)),
		Rows: c.Rows, Bytes: c.Bytes, MinOffset: c.MinOffset, MaxOffset: c.MaxOffset,
		Columns: c.Columns, Compacted: c.Compacted, Rollup: c.Rollup, RollupCounts: c.Counts, schema: c.Schema,
	}, nil
}

// relOf returns f's path relative to the lake root, slash-separated.
func relOf(f FileInfo) string {
	return filepath.ToSlash(filepath.Join(f.Partition.Dir(), f.ID+fileExt))
}

func (r *remote) key(f FileInfo) string { return r.keyOfRel(relOf(f)) }

func (r *remote) keyOfRel(rel string) string { return objectKey(r.cfg.Prefix, rel) }

// objectKey is the key of the object of the file at rel, a slash-separated
// path relative to the lake root, under prefix.
func objectKey(prefix, rel string) string {
	if prefix == "" {
		return rel
	}
	return path.Join(prefix, rel)
}

func (r *remote) retryMin() time.Duration {
	if r.cfg.RetryMin > 0 {
		return r.cfg.RetryMin
	}
	return 200 * time.Millisecond
}

func (r *remote) retryMax() time.Duration {
	if r.cfg.RetryMax > 0 {
		return r.cfg.RetryMax
	}
	return 10 * time.Second
}

// openRemote reads the upload log and the carry journal after scan and
// sorts the lake's files into uploaded and pending. It runs in New.
func (l *Lake) openRemote() error {
	r := &remote{
		cfg: *l.cfg.Remote, dir: l.cfg.Dir, log: l.log, notify: l.committedChanged, trim: l.trimCache,
		uploaded: make(map[string]FileInfo), pending: make(map[string]*pendingUp),
		lows: make(map[streamKey]map[string]int64), carry: make(map[string]*carryEntry),
		frozen: make(map[string]bool), inflight: make(map[string]bool), deletes: make(map[string]bool),
		changed: make(chan struct{}), wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	id, err := lakeID(l.cfg.Dir)
	if err != nil {
		return err
	}
	r.id = id
	raw, done, logEnd, err := readUploadLog(l.cfg.Dir)
	if err != nil {
		return err
	}
	replaced := l.scanReplaced
	l.scanReplaced = nil
	if replaced == nil {
		replaced = make(map[string]bool)
	}
	if err := l.openEvicted(done, replaced); err != nil {
		return err
	}
	entries, err := readCarryJournal(l.cfg.Dir)
	if err != nil {
		return err
	}
	for _, f := range l.files {
		rel := relOf(f)
		if done[rel] {
			r.uploaded[f.ID] = f
			continue
		}
		low := f.MinOffset
		if e := entries[rel]; e != nil {
			low = e.Low
			for _, c := range e.Carries {
				f, err := c.info(l.cfg.Dir)
				if err != nil {
					return fmt.Errorf("sink: carry journal names %q: %w", c.File, err)
				}
				e.files = append(e.files, f)
			}
			if len(e.files) > 0 {
				r.carry[f.ID] = e
			}
		}
		r.addPendingLocked(f, low)
	}
	// The log is rewritten with the lake's uploaded files only.
	var b strings.Builder
	for _, f := range l.files {
		if _, ok := r.uploaded[f.ID]; ok {
			b.WriteString(relOf(f) + "\n")
		}
	}
	// Both rewrites only drop entries: on a full disk the old files,
	// which say the same and more, are kept.
	data := append([]byte(b.String()), make([]byte, logReserve)...)
	if err := writeDurably(l.cfg.Dir, uploadLog, data); err == nil {
		logEnd = b.Len()
	} else if raw != nil {
		l.log.Warn("sink: could not rewrite the upload log; appending to it as it is", "err", err)
	} else {
		return fmt.Errorf("sink: %w", err)
	}
	if err := r.writeCarryLocked(); err != nil {
		l.log.Warn("sink: could not rewrite the carry journal; it stays as it is", "err", err)
	}
	r.ulog, err = os.OpenFile(filepath.Join(l.cfg.Dir, uploadLog), os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("sink: open upload log: %w", err)
	}
	st, err := r.ulog.Stat()
	if err != nil {
		r.ulog.Close()
		return fmt.Errorf("sink: upload log: %w", err)
	}
	r.ulogEnd, r.ulogSize = int64(logEnd), st.Size()
	l.rem = r
	return nil
}

// readUploadLog reads the upload log of the lake in dir: its bytes (nil
// when there is none), the relative paths it records as uploaded, and
// where its last whole line ends.
func readUploadLog(dir string) (raw []byte, done map[string]bool, end int, err error) {
	raw, err = os.ReadFile(filepath.Join(dir, uploadLog))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, 0, fmt.Errorf("sink: read upload log: %w", err)
	}
	done = make(map[string]bool)
	for text := string(raw); ; {
		line, rest, ok := strings.Cut(text, "\n")
		if !ok || strings.IndexByte(line, 0) >= 0 {
			break // the reserve, or a line torn by a crash: never recorded
		}
		done[line] = true
		end += len(line) + 1
		text = rest
	}
	return raw, done, end, nil
}

// readCarryJournal reads the carry journal of the lake in dir: its
// entries by the relative path of the file that carries them.
func readCarryJournal(dir string) (map[string]*carryEntry, error) {
	entries := make(map[string]*carryEntry)
	raw, err := os.ReadFile(filepath.Join(dir, carryJournal))
	if errors.Is(err, fs.ErrNotExist) {
		return entries, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sink: read carry journal: %w", err)
	}
	var es []*carryEntry
	if err := json.Unmarshal(raw, &es); err != nil {
		return nil, fmt.Errorf("sink: carry journal %s: %w", filepath.Join(dir, carryJournal), err)
	}
	for _, e := range es {
		entries[e.File] = e
	}
	return entries, nil
}

// lakeID returns the lake's identity, stored in dir/.lake-id, made (16
// random bytes in hex, written durably) the first time.
func lakeID(dir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, lakeIDFile))
	if err == nil {
		id := strings.TrimSpace(string(raw))
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			return "", fmt.Errorf("sink: %s holds %q, not a lake identity (32 hex digits)", filepath.Join(dir, lakeIDFile), id)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("sink: read lake identity: %w", err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sink: make lake identity: %w", err)
	}
	id := hex.EncodeToString(b[:])
	if err := writeDurably(dir, lakeIDFile, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("sink: write lake identity: %w", err)
	}
	return id, nil
}

// logReserve is the space, in zero bytes, kept allocated at the end of
// the upload log, so that uploads can be recorded on a full disk (about
// 800 of them): recording them is what lets the buffer trim its
// write-ahead log and free space. The log is extended by as much when
// less than a quarter is left.
const logReserve = 64 << 10

// recordUploadLocked writes rel's line into the upload log's reserve and
// fsyncs it. r.mu must be held.
func (r *remote) recordUploadLocked(rel string) error {
	line := []byte(rel + "\n")
	if r.ulogSize-r.ulogEnd-int64(len(line)) < logReserve/4 {
		// Best effort; the rest of the reserve is used meanwhile.
		if _, err := r.ulog.WriteAt(make([]byte, logReserve), r.ulogSize); err == nil {
			r.ulogSize += logReserve
		}
	}
	if r.ulogEnd+int64(len(line)) > r.ulogSize {
		return fmt.Errorf("upload log: reserve used up and the disk is full")
	}
	if _, err := r.ulog.WriteAt(line, r.ulogEnd); err != nil {
		return err
	}
	if err := r.ulog.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	r.ulogEnd += int64(len(line))
	return nil
}

// writeCarryLocked replaces the carry journal with r.carry. r.mu must be
// held (or r not yet shared).
func (r *remote) writeCarryLocked() error {
	es := make([]*carryEntry, 0, len(r.carry))
	for _, e := range r.carry {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].File < es[j].File })
	raw, err := json.Marshal(es)
	if err != nil {
		return err
	}
	return writeDurably(r.dir, carryJournal, raw)
}

// addPendingLocked makes f wait for its upload; low is the lowest
// _offset of its rows that are in no object, or -1. r.mu must be held.
func (r *remote) addPendingLocked(f FileInfo, low int64) {
	r.pending[f.ID] = &pendingUp{info: f}
	if low >= 0 {
		sk := streamOf(f.Partition)
		if r.lows[sk] == nil {
			r.lows[sk] = make(map[string]int64)
		}
		r.lows[sk][f.ID] = low
	}
}

func (r *remote) dropPendingLocked(f FileInfo) {
	delete(r.pending, f.ID)
	delete(r.frozen, f.ID)
	sk := streamOf(f.Partition)
	if m := r.lows[sk]; m != nil {
		delete(m, f.ID)
		if len(m) == 0 {
			delete(r.lows, sk)
		}
	}
}

// changedLocked wakes Sync waiters and an idle uploader. r.mu must be
// held.
func (r *remote) changedLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// published makes a file just published by a Write wait for its
// upload. Lake.mu must be held, so that its rows count in
// OldestUnpublished without a gap.
func (r *remote) publishedLocked(f FileInfo) {
	r.mu.Lock()
	r.addPendingLocked(f, f.MinOffset)
	r.changedLocked()
	r.mu.Unlock()
}

// oldest returns the lowest _offset of sk held by files not uploaded.
func (r *remote) oldest(sk streamKey) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var low int64
	ok := false
	for _, o := range r.lows[sk] {
		if !ok || o < low {
			low, ok = o, true
		}
	}
	return low, ok
}

// prepareReplace journals, before a compacted or rewritten file with ID
// id (in p) is renamed into place, which objects hold the rows of olds
// until it is uploaded, and stops the uploads of olds from being
// recorded. A failure changes nothing.
func (r *remote) prepareReplace(id string, p Partition, olds []FileInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &carryEntry{Low: -1, File: relOf(FileInfo{ID: id, Partition: p})}
	var frozen []string
	for _, o := range olds {
		if u, ok := r.uploaded[o.ID]; ok {
			e.files = append(e.files, u)
			continue
		}
		if _, ok := r.pending[o.ID]; !ok {
			continue
		}
		if oe := r.carry[o.ID]; oe != nil {
			e.files = append(e.files, oe.files...)
		}
		if low, ok := r.lows[streamOf(o.Partition)][o.ID]; ok && (e.Low < 0 || low < e.Low) {
			e.Low = low
		}
		r.frozen[o.ID] = true
		frozen = append(frozen, o.ID)
	}
	for _, f := range e.files {
		e.Carries = append(e.Carries, refOf(f))
	}
	r.carry[id] = e
	if err := r.writeCarryLocked(); err != nil {
		delete(r.carry, id)
		for _, o := range frozen {
			delete(r.frozen, o)
		}
		return err
	}
	return nil
}

// abortReplace undoes prepareReplace when the file was not published.
func (r *remote) abortReplace(id string, olds []FileInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.carry, id)
	for _, o := range olds {
		delete(r.frozen, o.ID)
	}
	r.changedLocked()
}

// replacedLocked records that n, prepared by prepareReplace, replaced
// olds in the lake's files. Lake.mu must be held.
func (r *remote) replacedLocked(n FileInfo, olds []FileInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	low := int64(-1)
	if e := r.carry[n.ID]; e != nil {
		low = e.Low
		if len(e.files) == 0 {
			delete(r.carry, n.ID)
		}
	}
	for _, o := range olds {
		if _, ok := r.uploaded[o.ID]; ok {
			delete(r.uploaded, o.ID) // n carries it
			continue
		}
		if _, ok := r.pending[o.ID]; ok {
			r.dropPendingLocked(o)
			delete(r.carry, o.ID) // n carries those
			r.deletes[r.key(o)] = true
		}
	}
	r.addPendingLocked(n, low)
	r.changedLocked()
}

// removedLocked records that files left the lake for good. Lake.mu must
// be held.
func (r *remote) removedLocked(files []FileInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range files {
		if _, ok := r.uploaded[f.ID]; ok {
			delete(r.uploaded, f.ID)
			r.deletes[r.key(f)] = true
			continue
		}
		if _, ok := r.pending[f.ID]; ok {
			r.dropPendingLocked(f)
			r.deletes[r.key(f)] = true
			if e := r.carry[f.ID]; e != nil {
				for _, c := range e.files {
					r.deletes[r.key(c)] = true
				}
				delete(r.carry, f.ID)
			}
		}
	}
	r.changedLocked()
}

// committed returns the files in the bucket that make up the lake.
func (r *remote) committed() []FileInfo {
	r.mu.Lock()
	out := make([]FileInfo, 0, len(r.uploaded))
	for _, f := range r.uploaded {
		out = append(out, f)
	}
	for _, e := range r.carry {
		for _, c := range e.files {
			// While a replacement is being prepared (prepareReplace to
			// replacedLocked), its old files are both uploaded and
			// carried: list them once.
			if _, dup := r.uploaded[c.ID]; !dup {
				out = append(out, c)
			}
		}
	}
	r.mu.Unlock()
	for i := range out {
		out[i].Location = r.cfg.Store.URI(r.key(out[i]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (r *remote) statsNow() RemoteStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.PendingFiles = int64(len(r.pending))
	for _, p := range r.pending {
		s.PendingBytes += p.info.Bytes
	}
	if r.failing != nil {
		s.Failing, s.LastError, s.Permanent = true, r.failing.Error(), objstore.IsPermanent(r.failing)
	}
	return s
}

// idle reports whether nothing waits: every file uploaded, every
// object to delete deleted, the bucket listed.
func (r *remote) idleLocked() bool {
	return len(r.pending) == len(r.frozen) && len(r.deletes) == 0 && r.listed && len(r.inflight) == 0
}

// sync waits until the uploader is idle or ctx ends.
func (r *remote) sync(ctx context.Context) error {
	for {
		r.mu.Lock()
		idle, ch, err := r.idleLocked(), r.changed, r.failing
		r.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("sink: waiting for uploads: %w (last failure: %v)", context.Cause(ctx), err)
			}
			return fmt.Errorf("sink: waiting for uploads: %w", context.Cause(ctx))
		}
	}
}

// start starts the uploaders.
func (r *remote) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.stopped {
		return
	}
	r.started = true
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	n := r.cfg.Uploads
	if n == 0 {
		n = 2
	}
	for range n {
		r.wg.Go(func() { r.worker(ctx) })
	}
}

// shutdown stops the uploaders, cancelling uploads in progress (they
// are done again at the next start), and closes the upload log.
func (r *remote) shutdown() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	r.wg.Wait()
	r.mu.Lock()
	r.ulog.Close()
	r.mu.Unlock()
}

type job struct {
	list   bool
	upload FileInfo
	del    string
}

// next picks the next job: listing the bucket once, then the oldest
// pending upload, then a delete.
func (r *remote) nextLocked() (job, bool) {
	if !r.listed && !r.listing {
		r.listing = true
		return job{list: true}, true
	}
	var best *FileInfo
	for id, p := range r.pending {
		if r.inflight[id] || r.frozen[id] {
			continue
		}
		if best == nil || id < best.ID {
			f := p.info
			best = &f
		}
	}
	if best != nil {
		r.inflight[best.ID] = true
		return job{upload: *best}, true
	}
	for k := range r.deletes {
		if !r.inflight[k] && !r.referencedLocked(k) {
			r.inflight[k] = true
			return job{del: k}, true
		}
	}
	return job{}, false
}

func (r *remote) worker(ctx context.Context) {
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("stage", "upload")))
	r.trim() // a cache over its bound at start (CacheBytes lowered)
	for {
		r.mu.Lock()
		j, ok := r.nextLocked()
		r.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		var err error
		switch {
		case j.list:
			err = r.list(ctx)
		case j.del != "":
			err = r.del(ctx, j.del)
		default:
			err = r.upload(ctx, j.upload)
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		notify := r.committedNow
		r.committedNow = false
		r.mu.Unlock()
		if notify {
			r.notify()
			r.trim()
		}
		r.mu.Lock()
		// More work may wait: pass the wake-up on.
		select {
		case r.wake <- struct{}{}:
		default:
		}
		pause := r.resultLocked(err)
		r.mu.Unlock()
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// resultLocked records the outcome of a job and returns the pause before
// the worker's next one.
func (r *remote) resultLocked(err error) time.Duration {
	now := time.Now()
	if err == nil {
		if r.failing != nil {
			r.log.Info("sink: object storage reachable again; uploads resumed", "failures", r.failures)
		}
		r.failures, r.failing = 0, nil
		return 0
	}
	r.failures++
	first := r.failing == nil
	r.failing = err
	if first || now.Sub(r.loggedAt) >= 30*time.Second {
		r.loggedAt = now
		msg := "sink: object storage failing; files wait locally and uploads are retried (logged at most every 30s)"
		if objstore.IsPermanent(err) {
			msg = "sink: object storage refuses the lake's requests; fix the bucket or the credentials (files wait locally; retried, logged at most every 30s)"
		}
		r.log.Error(msg, "failures", r.failures, "pending_files", len(r.pending), "err", err)
	}
	r.changedLocked()
	d := r.retryMin()
	for i := 1; i < r.failures && d < r.retryMax(); i++ {
		d *= 2
	}
	return min(d, r.retryMax())
}

// upload uploads f and records it.
func (r *remote) upload(ctx context.Context, f FileInfo) error {
	key := r.key(f)
	_, err := r.cfg.Store.Put(ctx, key, f.Path, map[string]string{ownerMeta: r.id})
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inflight, f.ID)
	if err != nil {
		if _, live := r.pending[f.ID]; !live && errors.Is(err, fs.ErrNotExist) {
			return nil // removed or replaced meanwhile
		}
		r.stats.UploadFailures++
		return err
	}
	if _, live := r.pending[f.ID]; !live {
		// Removed or replaced while uploading: the object is garbage.
		r.deletes[key] = true
		r.changedLocked()
		return nil
	}
	if r.frozen[f.ID] {
		return nil // being replaced: replacedLocked or abortReplace decides
	}
	if err := r.recordUploadLocked(relOf(f)); err != nil {
		r.stats.UploadFailures++
		return fmt.Errorf("record upload of %s: %w", f.ID, err)
	}
	r.dropPendingLocked(f)
	r.uploaded[f.ID] = f
	if e := r.carry[f.ID]; e != nil {
		for _, c := range e.files {
			r.deletes[r.key(c)] = true
		}
		delete(r.carry, f.ID)
	}
	r.stats.UploadedFiles++
	r.stats.UploadedBytes += f.Bytes
	r.changedLocked()
	r.committedNow = true
	return nil
}

// del deletes the object at key (garbage: see list).
func (r *remote) del(ctx context.Context, key string) error {
	err := r.cfg.Store.Delete(ctx, key)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inflight, key)
	if err != nil {
		r.stats.DeleteFailures++
		return err
	}
	delete(r.deletes, key)
	r.stats.DeletedObjects++
	r.changedLocked()
	r.committedNow = true
	return nil
}

// list lists the prefix and queues for deletion every object in the lake
// layout that is neither a file of the lake nor carried by one, as they
// stand when the object is listed (an object that is garbage stays so:
// file IDs are never reused, and only files of the lake get carried),
// and that this lake wrote (its weir-lake metadata, read with a Head).
// Objects of other lakes are left alone and counted in a warning.
func (r *remote) list(ctx context.Context) error {
	prefix := ""
	if r.cfg.Prefix != "" {
		prefix = r.cfg.Prefix + "/"
	}
	var candidates []string
	err := r.cfg.Store.List(ctx, prefix, func(o objstore.Object) error {
		rel := strings.TrimPrefix(o.Key, prefix)
		_, id, err := parsePath(filepath.FromSlash(rel))
		if err != nil || !strings.HasSuffix(rel, fileExt) {
			return nil // not in the lake's layout: left alone
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.neededLocked(id) && !r.deletes[o.Key] {
			candidates = append(candidates, o.Key)
		}
		return nil
	})
	n, foreign := 0, 0
	for _, key := range candidates {
		if err != nil {
			break
		}
		var obj objstore.Object
		obj, err = r.cfg.Store.Head(ctx, key)
		if errors.Is(err, objstore.ErrNotFound) {
			err = nil
			continue
		}
		if err != nil {
			break
		}
		if obj.Meta[ownerMeta] != r.id {
			foreign++
			continue
		}
		r.mu.Lock()
		if !r.deletes[key] {
			r.deletes[key] = true
			n++
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listing = false
	if foreign > 0 {
		r.log.Warn("sink: objects in the lake's layout under the prefix were written by another lake (another data directory, or one that was lost); left alone",
			"count", foreign, "prefix", prefix, "lake_id", r.id)
	}
	if n > 0 {
		r.log.Warn("sink: deleting objects the lake no longer holds (left by an interrupted removal or upload)", "count", n)
		r.changedLocked()
	}
	if err != nil {
		return err
	}
	r.listed = true
	r.changedLocked()
	return nil
}

// neededLocked reports whether the object of file id is part of the
// lake: the file is one of the lake's, or a pending file carries it.
// r.mu must be held.
func (r *remote) neededLocked(id string) bool {
	if _, ok := r.uploaded[id]; ok {
		return true
	}
	if _, ok := r.pending[id]; ok {
		return true
	}
	for _, e := range r.carry {
		for _, c := range e.files {
			if c.ID == id {
				return true
			}
		}
	}
	return false
}

// committedChanged calls Config.OnCommitted.
func (l *Lake) committedChanged() {
	if fn := l.cfg.OnCommitted; fn != nil {
		fn()
	}
}

// RemoteStats describes the uploads to object storage; ok is false
// without Config.Remote.
func (l *Lake) RemoteStats() (s RemoteStats, ok bool) {
	if l.rem == nil {
		return s, false
	}
	return l.rem.statsNow(), true
}

// SyncRemote waits until every published file is uploaded and recorded,
// every object to delete is deleted and the bucket was listed once
// (see Start), or until ctx ends. Without Config.Remote it returns nil.
// Files published meanwhile are waited for too.
func (l *Lake) SyncRemote(ctx context.Context) error {
	if l.rem == nil {
		return nil
	}
	return l.rem.sync(ctx)
}

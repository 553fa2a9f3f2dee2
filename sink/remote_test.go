package sink_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	pq "github.com/parquet-go/parquet-go"

	"github.com/weirlabs/weir/internal/objstore"
	"github.com/weirlabs/weir/internal/objstore/miniotest"
	"github.com/weirlabs/weir/sink"
)

// remoteConfig returns testConfig with the lake in st under prefix.
func remoteConfig(t *testing.T, st objstore.Store, prefix string) sink.Config {
	cfg := testConfig(t)
	cfg.Remote = &sink.Remote{Store: st, Prefix: prefix, Uploads: 1, RetryMin: 5 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	return cfg
}

func syncRemote(t *testing.T, l *sink.Lake) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.SyncRemote(ctx); err != nil {
		t.Fatal(err)
	}
}

// writeRows writes rows [first, first+n) of stream into p as one file.
func writeRows(t *testing.T, l *sink.Lake, p sink.Partition, first int64, n int) {
	t.Helper()
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: n, BatchRows: n, FirstOffset: first, Part: p.Part, Seed: uint64(first)})
	defer ReleaseAll(recs)
	write(t, l, p, recs)
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// uploadHours has a lake with cfg write n files of rows rows each, one an
// hour from hour0 with consecutive offsets, upload them and shut down,
// and returns the files.
func uploadHours(t *testing.T, cfg sink.Config, n, rows int) []sink.FileInfo {
	t.Helper()
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p := part("app", 0)
		p.Hour = hour0.Add(time.Duration(i) * time.Hour)
		writeRows(t, l, p, int64(i*rows), rows)
	}
	syncRemote(t, l)
	shutdown(t, l)
	return l.Files()
}

// offsetRow reads the _offset column with parquet-go.
type offsetRow struct {
	Offset int64 `parquet:"_offset"`
}

// bucketOffsets downloads every object under prefix and returns how
// often each _offset occurs in them, read with parquet-go.
func bucketOffsets(t *testing.T, srv *miniotest.Server, prefix string) (map[string]int64, map[int64]int) {
	t.Helper()
	st := srv.Store(t)
	keys := srv.Keys(t, prefix+"/")
	dir := t.TempDir()
	seen := make(map[int64]int)
	i := 0
	for k := range keys {
		i++
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := st.Get(context.Background(), k, path); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		stat, _ := f.Stat()
		rows, err := pq.Read[offsetRow](f, stat.Size())
		f.Close()
		if err != nil {
			t.Fatalf("read %s with parquet-go: %v", k, err)
		}
		for _, r := range rows {
			seen[r.Offset]++
		}
	}
	return keys, seen
}

// checkBucket checks that the bucket holds exactly the lake's files, as
// CommittedFiles lists them, and that every offset in want is in it
// once and no other.
func checkBucket(t *testing.T, srv *miniotest.Server, prefix string, l *sink.Lake, want map[int64]bool) {
	t.Helper()
	keys, seen := bucketOffsets(t, srv, prefix)
	files := l.Files()
	committed := l.CommittedFiles()
	if len(committed) != len(files) {
		t.Errorf("%d committed files, %d files", len(committed), len(files))
	}
	wantKeys := make(map[string]bool)
	for i, f := range files {
		rel, err := filepath.Rel(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(f.Path))))), f.Path)
		if err != nil {
			t.Fatal(err)
		}
		key := prefix + "/" + filepath.ToSlash(rel)
		wantKeys[key] = true
		if _, ok := keys[key]; !ok {
			t.Errorf("file %s is not in the bucket at %s", f.ID, key)
		} else if keys[key] != f.Bytes {
			t.Errorf("object %s has %d bytes, the file %d", key, keys[key], f.Bytes)
		}
		if i < len(committed) && committed[i].Location != "s3://"+srv.Bucket+"/"+key {
			t.Errorf("committed file %d: location %s, want s3://%s/%s", i, committed[i].Location, srv.Bucket, key)
		}
	}
	for k := range keys {
		if !wantKeys[k] {
			t.Errorf("object %s is no file of the lake", k)
		}
	}
	for o, n := range seen {
		if n != 1 || !want[o] {
			t.Errorf("offset %d is %d times in the bucket (wanted: %v)", o, n, want[o])
		}
	}
	for o := range want {
		if seen[o] == 0 {
			t.Errorf("offset %d is not in the bucket", o)
		}
	}
}

func offsetRange(from, to int64) map[int64]bool {
	m := make(map[int64]bool)
	for o := from; o < to; o++ {
		m[o] = true
	}
	return m
}

func TestRemoteUploadAndRestart(t *testing.T) {
	srv := miniotest.Start(t)
	gate := make(chan struct{})
	st := &faultStore{Store: srv.Store(t), before: func(op, key string) error {
		if op == "put" {
			<-gate
		}
		return nil
	}}
	cfg := remoteConfig(t, st, "lake/x")
	var nudges atomic.Int64
	cfg.OnCommitted = func() { nudges.Add(1) }
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeRows(t, l, part("app", 0), 100, 500)
	writeRows(t, l, part("app", 1), 0, 300)
	writeRows(t, l, part("app", 0), 600, 200)
	// Published locally, not yet in the bucket: not committed, and the
	// buffer must keep the rows.
	if n := len(l.Files()); n != 3 {
		t.Fatalf("%d files published", n)
	}
	if c := l.CommittedFiles(); len(c) != 0 {
		t.Fatalf("committed before any upload: %+v", c)
	}
	if o, ok := l.OldestUnpublished("acme", "app", 0); !ok || o != 100 {
		t.Fatalf("OldestUnpublished = %d, %v; want 100, true", o, ok)
	}
	if s, _ := l.RemoteStats(); s.PendingFiles != 3 || s.PendingBytes == 0 {
		t.Fatalf("stats %+v", s)
	}
	close(gate)
	syncRemote(t, l)
	if o, ok := l.OldestUnpublished("acme", "app", 0); ok {
		t.Fatalf("OldestUnpublished = %d after the uploads", o)
	}
	if s, _ := l.RemoteStats(); s.PendingFiles != 0 || s.UploadedFiles != 3 || s.Failing {
		t.Fatalf("stats %+v", s)
	}
	// 3 publishes, 3 uploads (each upload's call may follow SyncRemote).
	waitFor(t, "6 calls of OnCommitted", func() bool { return nudges.Load() >= 6 })
	want := offsetRange(100, 800)
	for o := range offsetRange(0, 300) {
		want[o+1_000_000] = true // part 1; offsets are per partition, so keep them apart
	}
	// Part 1's offsets collide with part 0's: check the stream partitions
	// by file instead.
	_, seen := bucketOffsets(t, srv, "lake/x")
	for o := int64(0); o < 800; o++ {
		wantN := 0
		if o < 300 {
			wantN++
		}
		if o >= 100 {
			wantN++
		}
		if seen[o] != wantN {
			t.Fatalf("offset %d is %d times in the bucket, want %d", o, seen[o], wantN)
		}
	}
	shutdown(t, l)

	// A new Lake on the same directory uploads nothing again.
	cfg.OnCommitted = nil
	l2 := newLake(t, cfg, nil)
	if err := l2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l2)
	syncRemote(t, l2)
	if s, _ := l2.RemoteStats(); s.UploadedFiles != 0 || s.DeletedObjects != 0 {
		t.Fatalf("after a restart: stats %+v", s)
	}
	if got := len(l2.CommittedFiles()); got != 3 {
		t.Fatalf("after a restart: %d committed files", got)
	}
	if len(srv.Keys(t, "lake/x/")) != 3 {
		t.Fatalf("objects %v", srv.Keys(t, "lake/x/"))
	}
}

func TestRemoteServerStoppedMidUpload(t *testing.T) {
	srv := miniotest.Start(t)
	var once sync.Once
	st := &faultStore{Store: srv.Store(t), before: func(op, key string) error {
		if op == "put" {
			once.Do(srv.Stop) // the server goes away as the first upload starts
		}
		return nil
	}}
	cfg := remoteConfig(t, st, "p")
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	writeRows(t, l, part("app", 0), 0, 400)
	waitFor(t, "uploads failing", func() bool { s, _ := l.RemoteStats(); return s.Failing })
	// Ingest goes on: files are published and wait locally.
	writeRows(t, l, part("app", 0), 400, 400)
	writeRows(t, l, part("app", 0), 800, 400)
	if n := len(l.Files()); n != 3 {
		t.Fatalf("%d files published while the server is away", n)
	}
	s, _ := l.RemoteStats()
	if s.PendingFiles != 3 || s.UploadFailures == 0 || s.Permanent || s.LastError == "" {
		t.Fatalf("stats while the server is away: %+v", s)
	}
	if o, ok := l.OldestUnpublished("acme", "app", 0); !ok || o != 0 {
		t.Fatalf("OldestUnpublished = %d, %v", o, ok)
	}
	srv.Restart()
	syncRemote(t, l)
	if s, _ := l.RemoteStats(); s.Failing || s.PendingFiles != 0 {
		t.Fatalf("stats after the restart: %+v", s)
	}
	checkBucket(t, srv, "p", l, offsetRange(0, 1200))
}

func TestRemoteWrongCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	bad := srv.Config()
	bad.SecretAccessKey = "not-the-secret"
	st, err := objstore.NewS3(context.Background(), bad)
	if err != nil {
		t.Fatal(err)
	}
	cfg := remoteConfig(t, st, "p")
	var logs logBuffer
	l, err := sink.New(cfg, nil, newLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	writeRows(t, l, part("app", 0), 0, 100)
	waitFor(t, "a permanent failure", func() bool { s, _ := l.RemoteStats(); return s.Failing && s.Permanent })
	writeRows(t, l, part("app", 0), 100, 100)
	if n := len(l.Files()); n != 2 {
		t.Fatalf("%d files published locally, want 2", n)
	}
	if len(l.CommittedFiles()) != 0 {
		t.Fatal("files committed with wrong credentials")
	}
	s, _ := l.RemoteStats()
	if !strings.Contains(s.LastError, "credentials") {
		t.Errorf("last error %q does not mention the credentials", s.LastError)
	}
	if !strings.Contains(logs.String(), "fix the bucket or the credentials") {
		t.Errorf("log does not say what to fix:\n%s", logs.String())
	}
	if len(srv.Keys(t, "")) != 0 {
		t.Fatal("objects stored with wrong credentials")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// faultStore wraps a Store, calling before and after (when set) around
// Put and Delete; an error from either is returned instead of going on.
type faultStore struct {
	objstore.Store
	before, after func(op, key string) error
}

func (s *faultStore) Put(ctx context.Context, key, path string, meta map[string]string) (objstore.Object, error) {
	if s.before != nil {
		if err := s.before("put", key); err != nil {
			return objstore.Object{}, err
		}
	}
	o, err := s.Store.Put(ctx, key, path, meta)
	if err == nil && s.after != nil {
		err = s.after("put", key)
	}
	return o, err
}

func (s *faultStore) Delete(ctx context.Context, key string) error {
	if s.before != nil {
		if err := s.before("delete", key); err != nil {
			return err
		}
	}
	err := s.Store.Delete(ctx, key)
	if err == nil && s.after != nil {
		err = s.after("delete", key)
	}
	return err
}

var errCrashed = errors.New("crashed")

// crasher is a faultStore hook that "crashes" the process at the first
// call of op (put or delete) that match accepts, before or after the
// call reaches the server: that call and every later one fail, so the
// bucket stays as it was at the crash. The crashing call blocks until
// the test has copied the lake directory (the crash image, taken while
// the lake is quiescent: local steps after the crash point may be done,
// as when the bucket stays away and the process dies later).
type crasher struct {
	dir     string // the lake's
	op      string
	after   bool
	match   func(key string) bool // nil: any key
	armed   atomic.Bool
	crashed chan struct{} // closed at the crash
	release chan struct{} // closed by the test once the image is taken
	mu      sync.Mutex
	dead    bool
}

func newCrasher(op string, after bool) *crasher {
	return &crasher{op: op, after: after, crashed: make(chan struct{}), release: make(chan struct{})}
}

func (c *crasher) hook(after bool) func(op, key string) error {
	return func(op, key string) error {
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			return errCrashed
		}
		if !c.armed.Load() || op != c.op || after != c.after || c.match != nil && !c.match(key) {
			c.mu.Unlock()
			return nil
		}
		c.dead = true
		close(c.crashed)
		c.mu.Unlock()
		<-c.release
		return errCrashed
	}
}

// replaces reports whether the lake file of key (under dir, after
// prefix) names files it replaces in its footer: a compacted or
// rewritten file.
func replaces(dir, prefix, key string) bool {
	path := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(key, prefix+"/")))
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	pf, err := pq.OpenFile(f, st.Size())
	if err != nil {
		return false
	}
	v, ok := pf.Lookup("weir.replaces")
	return ok && v != ""
}

// copyDir copies the lake at from to to. A file that vanishes during the
// walk (compaction deleting the files it replaced, just after it
// published its own) is left out, as if the crash came after that.
func copyDir(from, to string) error {
	return filepath.Walk(from, func(path string, fi os.FileInfo, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		in, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// TestRemoteCrashPoints crashes the lake before and after the upload of
// a published file, of a compacted file and of a delete-rewritten file,
// and before and after the remote delete that compaction, retention and
// a delete make, then restarts a Lake from the crash image: the bucket
// must end with exactly the lake's files, no row lost or twice.
func TestRemoteCrashPoints(t *testing.T) {
	srv := miniotest.Start(t)
	oldHour := hour0                                // expires under a 30-day retention
	newHour := time.Now().UTC().Truncate(time.Hour) // does not
	type scenario struct {
		name     string
		op       string // put or delete
		after    bool
		replaced bool                                            // put: crash at the upload of a compacted or rewritten file only
		action   func(t *testing.T, l *sink.Lake) map[int64]bool // returns the offsets that must remain
	}
	// Base content: part 0, old hour: offsets 0-299 (two files); new
	// hour: 300-399.
	base := func(t *testing.T, l *sink.Lake) {
		writeRows(t, l, sink.Partition{Tenant: "acme", Stream: "app", Hour: oldHour}, 0, 150)
		writeRows(t, l, sink.Partition{Tenant: "acme", Stream: "app", Hour: oldHour}, 150, 150)
		writeRows(t, l, sink.Partition{Tenant: "acme", Stream: "app", Hour: newHour}, 300, 100)
	}
	publish := func(t *testing.T, l *sink.Lake) map[int64]bool {
		writeRows(t, l, sink.Partition{Tenant: "acme", Stream: "app", Hour: newHour}, 400, 100)
		return offsetRange(0, 500)
	}
	// compact publishes a file that the compactor (the base is compacted
	// already) rewrites, uploaded or not yet.
	compact := func(t *testing.T, l *sink.Lake) map[int64]bool {
		writeRows(t, l, sink.Partition{Tenant: "acme", Stream: "app", Hour: newHour}, 400, 100)
		return offsetRange(0, 500)
	}
	retain := func(t *testing.T, l *sink.Lake) map[int64]bool {
		if _, err := l.Retain(context.Background()); err != nil {
			t.Fatal(err)
		}
		return offsetRange(300, 400)
	}
	del := func(t *testing.T, l *sink.Lake) map[int64]bool {
		res, err := l.DeleteRows(context.Background(), "acme", "app", oldHour, map[int32]sink.OffsetSet{0: {{From: 10, To: 20}, {From: 150, To: 300}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows != 160 || res.Rewritten != 1 || res.Removed != 1 {
			t.Fatalf("delete: %+v", res)
		}
		want := offsetRange(0, 400)
		for o := int64(10); o < 20; o++ {
			delete(want, o)
		}
		for o := int64(150); o < 300; o++ {
			delete(want, o)
		}
		return want
	}
	all := offsetRange(0, 500) // every offset written
	var scenarios []scenario
	for _, after := range []bool{false, true} {
		scenarios = append(scenarios,
			scenario{"publish/put", "put", after, false, publish},
			scenario{"compact/put", "put", after, true, compact},
			scenario{"compact/delete", "delete", after, false, compact},
			scenario{"retention/delete", "delete", after, false, retain},
			scenario{"delete/put", "put", after, true, del},
			scenario{"delete/delete", "delete", after, false, del},
		)
	}
	for i, sc := range scenarios {
		name := sc.name + map[bool]string{false: "/before", true: "/after"}[sc.after]
		t.Run(name, func(t *testing.T) {
			prefix := fmt.Sprintf("crash%d", i)
			cr := newCrasher(sc.op, sc.after)
			st := &faultStore{Store: srv.Store(t), before: cr.hook(false), after: cr.hook(true)}
			cfg := remoteConfig(t, st, prefix)
			compacting := strings.HasPrefix(sc.name, "compact/")
			if compacting {
				cfg.CompactAge = 50 * time.Millisecond
			}
			cfg.Retention = sink.Retention{Default: 30 * day, Interval: time.Hour}
			cr.dir = cfg.Dir
			if sc.replaced {
				cr.match = func(key string) bool { return replaces(cfg.Dir, prefix, key) }
			}
			l := newLake(t, cfg, nil)
			if err := l.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The retainer's first pass runs at Start; the next one is an
			// hour away. The scenario calls Retain itself.
			waitFor(t, "the first retention pass", func() bool { return l.RetentionStats().Runs > 0 })
			base(t, l)
			if compacting {
				waitFor(t, "the base compacted", func() bool {
					for _, f := range l.Files() {
						if !f.Compacted {
							return false
						}
					}
					return true
				})
			}
			syncRemote(t, l)
			cr.armed.Store(true)
			want := sc.action(t, l)
			select {
			case <-cr.crashed:
			case <-time.After(30 * time.Second):
				t.Fatal("the crash point was never reached")
			}
			if compacting {
				waitFor(t, "the new file compacted", func() bool {
					for _, f := range l.Files() {
						if !f.Compacted {
							return false
						}
					}
					return true
				})
			}
			image := filepath.Join(t.TempDir(), "lake")
			if err := copyDir(cfg.Dir, image); err != nil {
				t.Fatal(err)
			}
			close(cr.release)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			l.Shutdown(ctx)
			cancel()

			// Restart from the crash image with a healthy store.
			cfg2 := remoteConfig(t, srv.Store(t), prefix)
			cfg2.Dir = image
			l2, err := sink.New(cfg2, nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if err := l2.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer shutdown(t, l2)
			syncRemote(t, l2)
			// A crash may come before the action's local steps are done
			// (a delete then did not happen): the lake keeps every row
			// the action keeps, and no row twice or from elsewhere.
			local := offsetsIn(t, l2.Files())
			got := make(map[int64]bool)
			for o, n := range local {
				if n != 1 || !all[o] {
					t.Errorf("offset %d is %d times in the lake's files", o, n)
				}
				got[o] = true
			}
			for o := range want {
				if !got[o] {
					t.Errorf("offset %d is lost", o)
				}
			}
			checkBucket(t, srv, prefix, l2, got)
		})
	}
}

// TestRemoteCommittedDuringCompaction: until a compacted file is
// uploaded, CommittedFiles keeps the uploaded files it replaced (their
// objects hold the rows), and their rows do not count as unpublished;
// once it is, it takes their place and their objects are deleted.
func TestRemoteCommittedDuringCompaction(t *testing.T) {
	srv := miniotest.Start(t)
	var gated atomic.Bool
	gate := make(chan struct{})
	st := &faultStore{Store: srv.Store(t), before: func(op, key string) error {
		if op == "put" && gated.Load() {
			<-gate
		}
		return nil
	}}
	cfg := remoteConfig(t, st, "c")
	cfg.CompactAge = time.Hour // no compactor tick within the test; Compact is called
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { shutdown(t, l) }()
	writeRows(t, l, part("app", 0), 0, 100)
	writeRows(t, l, part("app", 0), 100, 100)
	syncRemote(t, l)
	before := l.CommittedFiles()
	if len(before) != 2 {
		t.Fatalf("committed %+v", before)
	}
	gated.Store(true)
	// Compact the files as if they were an hour old: a Lake on the same
	// directory with CompactAge at the minimum.
	shutdown(t, l)
	cfg.CompactAge = 50 * time.Millisecond
	l = newLake(t, cfg, nil)
	if n, err := l.CompactAt(context.Background(), time.Now().Add(cfg.CompactAge)); err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := l.Files()
	if len(files) != 1 || !files[0].Compacted {
		t.Fatalf("files after compaction: %+v", files)
	}
	// The compacted file's upload is held: the old files stay committed.
	got := l.CommittedFiles()
	if len(got) != 2 || got[0].ID != before[0].ID || got[1].ID != before[1].ID || got[0].Location != before[0].Location {
		t.Fatalf("committed while the compacted file is not uploaded: %+v", got)
	}
	if o, ok := l.OldestUnpublished("acme", "app", 0); ok {
		t.Fatalf("OldestUnpublished = %d: rows of uploaded files count as unpublished", o)
	}
	close(gate)
	syncRemote(t, l)
	got = l.CommittedFiles()
	if len(got) != 1 || got[0].ID != files[0].ID {
		t.Fatalf("committed after the upload: %+v", got)
	}
	checkBucket(t, srv, "c", l, offsetRange(0, 200))
}

// TestRemoteTornUploadLog: a line of the upload log torn by a crash (no
// newline before the zero reserve) does not count: that file is
// uploaded again, to the same key, and the bucket holds it once.
func TestRemoteTornUploadLog(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "torn")
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeRows(t, l, part("app", 0), 0, 100)
	writeRows(t, l, part("app", 0), 100, 100)
	syncRemote(t, l)
	shutdown(t, l)
	path := filepath.Join(cfg.Dir, ".uploaded.log")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(raw[:strings.IndexByte(string(raw), 0)]), "\n")
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("upload log %q", raw)
	}
	// The second line loses its newline and half its text, as a crash
	// during its write would leave it.
	torn := lines[0] + lines[1][:len(lines[1])/2]
	if err := os.WriteFile(path, append([]byte(torn), make([]byte, 100)...), 0o644); err != nil {
		t.Fatal(err)
	}
	l = newLake(t, cfg, nil)
	if s, _ := l.RemoteStats(); s.PendingFiles != 1 {
		t.Fatalf("after a torn line: %+v", s)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	syncRemote(t, l)
	if s, _ := l.RemoteStats(); s.UploadedFiles != 1 {
		t.Fatalf("after a torn line: %+v", s)
	}
	checkBucket(t, srv, "torn", l, offsetRange(0, 200))
}

// TestRemoteForeignObjects checks that a lake deletes only objects it
// wrote: one started on an empty directory (a lost disk, or a second
// server given the same prefix) leaves the first lake's objects alone,
// while the first, restarted, still deletes its own leftovers.
func TestRemoteForeignObjects(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake/x")
	first := newLake(t, cfg, nil)
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeRows(t, first, part("app", 0), 0, 300)
	writeRows(t, first, part("app", 0), 300, 200)
	syncRemote(t, first)
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := srv.Keys(t, "lake/x/")
	if len(before) != 2 {
		t.Fatalf("%d objects after two uploads, want 2", len(before))
	}

	other := newLake(t, remoteConfig(t, srv.Store(t), "lake/x"), nil) // an empty directory
	if err := other.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	syncRemote(t, other) // listed the prefix once
	if got := srv.Keys(t, "lake/x/"); len(got) != len(before) {
		t.Fatalf("a lake on an empty directory deleted objects it did not write: %d left of %d", len(got), len(before))
	}
	if err := other.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The first lake's own leftover: one of its files is gone from its
	// directory (as after a crash between a local removal and the remote
	// delete); at the next start the first lake deletes its object.
	files := first.Files()
	if err := os.Remove(files[0].Path); err != nil {
		t.Fatal(err)
	}
	again := newLake(t, cfg, nil)
	if err := again.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	syncRemote(t, again)
	got := srv.Keys(t, "lake/x/")
	if len(got) != 1 {
		t.Fatalf("%d objects after the first lake's restart, want 1 (its own leftover deleted)", len(got))
	}
	for k := range got {
		if !strings.HasSuffix(k, files[1].ID+".parquet") {
			t.Fatalf("object %s left, want the file %s", k, files[1].ID)
		}
	}
	if err := again.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRemoteDamagedFileRestored: a lake in object storage whose local
// files are found damaged at start takes the bucket's copy of an
// uploaded one (its rows stay in the lake, the damaged copy goes to
// .damaged/), sets aside one not yet uploaded as a local lake does, and
// refuses the start, moving nothing, where that would lose rows only the
// bucket holds (a file that carries replaced files) or where the bucket's
// copy is damaged too.
func TestRemoteDamagedFileRestored(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake")
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeRows(t, l, part("up", 0), 0, 500)
	syncRemote(t, l)
	shutdown(t, l)
	// Not started: nothing is uploaded.
	l = newLake(t, cfg, nil)
	writeRows(t, l, part("local", 0), 0, 300)
	shutdown(t, l)

	files := make(map[string]sink.FileInfo) // by stream
	for _, f := range l.Files() {
		files[f.Partition.Stream] = f
	}
	sound, err := os.ReadFile(files["up"].Path)
	if err != nil {
		t.Fatal(err)
	}
	cutSize := make(map[string]int64)
	cut := func(stream string) {
		t.Helper()
		raw, err := os.ReadFile(files[stream].Path)
		if err != nil {
			t.Fatal(err)
		}
		cutSize[stream] = int64(len(raw) / 2)
		if err := os.WriteFile(files[stream].Path, raw[:len(raw)/2], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cut("up")
	cut("local")
	rel := func(stream string) string {
		r, err := filepath.Rel(cfg.Dir, files[stream].Path)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(r)
	}
	unmoved := func(what string, streams ...string) {
		t.Helper()
		for _, s := range streams {
			if st, err := os.Stat(files[s].Path); err != nil || st.Size() != cutSize[s] {
				t.Errorf("%s: the damaged file of %s was moved or replaced: %v", what, s, err)
			}
		}
		tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(files["up"].Path), ".*"))
		if len(tmps) != 0 {
			t.Errorf("%s: the refused start left %v", what, tmps)
		}
	}

	// The file not yet uploaded carries replaced files whose rows only
	// the bucket holds now.
	carry := fmt.Sprintf(`[{"low": -1, "file": %q, "carries": [{"file": "tenant=acme/stream=local/x.parquet", "part": 0, "rows": 1, "bytes": 1, "min_offset": 0, "max_offset": 0, "columns": 1}]}]`, rel("local"))
	if err := os.WriteFile(filepath.Join(cfg.Dir, ".carry.json"), []byte(carry), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "not yet in the bucket") {
		t.Fatalf("New with a damaged file that carries others: %v", err)
	}
	unmoved("a damaged carrying file", "up", "local")
	if err := os.Remove(filepath.Join(cfg.Dir, ".carry.json")); err != nil {
		t.Fatal(err)
	}

	var logs logBuffer
	l2, err := sink.New(cfg, nil, newLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	syncRemote(t, l2)
	dmg := make(map[string]sink.DamagedFile)
	for _, d := range l2.Damaged() {
		dmg[filepath.ToSlash(d.Path)] = d
	}
	if d := dmg[rel("up")]; !d.Restored || d.Moved != filepath.Join(".damaged", d.Path) {
		t.Errorf("the uploaded file: %+v, want restored and its damaged copy moved", d)
	}
	if d := dmg[rel("local")]; d.Restored || d.Moved == "" {
		t.Errorf("the file not uploaded: %+v, want set aside", d)
	}
	if got, err := os.ReadFile(files["up"].Path); err != nil || !bytes.Equal(got, sound) {
		t.Errorf("the restored file differs from the one published (%v)", err)
	}
	got := l2.Files()
	if len(got) != 1 || got[0].ID != files["up"].ID || got[0].Rows != 500 || got[0].MinOffset != 0 || got[0].MaxOffset != 499 {
		t.Errorf("Files after the restore: %+v", got)
	}
	if o := l2.LastOffset("acme", "local", 0); o != 0 {
		t.Errorf("LastOffset of the stream set aside = %d, want 0 (its rows to be replayed)", o)
	}
	if !strings.Contains(logs.String(), "its copy in the bucket took its place") {
		t.Errorf("the restore was not logged:\n%s", logs.String())
	}
	checkBucket(t, srv, "lake", l2, offsetRange(0, 500))
	shutdown(t, l2)

	// The bucket's copy damaged too: nothing to take, the start stops.
	cut("up")
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("PAR1 not really PAR1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Store(t).Put(context.Background(), "lake/"+rel("up"), junk, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "is damaged too") {
		t.Fatalf("New with the bucket's copy damaged too: %v", err)
	}
	unmoved("the bucket's copy damaged too", "up")
}

// TestRemoteSetAside: in a lake in object storage, SetAside puts the
// bucket's copy of an uploaded file in place of a local copy that differs
// from it; a file reported again is set aside, and its object is deleted
// once the lake starts, as a removed file's is.
func TestRemoteSetAside(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake")
	files := uploadHours(t, cfg, 2, 100)
	sound, err := os.ReadFile(files[1].Path)
	if err != nil {
		t.Fatal(err)
	}
	zeroPages(t, files[1].Path)

	l := newLake(t, cfg, nil)
	why := []error{errors.New("DuckDB: no")}
	if err := l.SetAside(files[1:], why); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(files[1].Path); err != nil || !bytes.Equal(got, sound) {
		t.Errorf("the bucket's copy is not in place (%v)", err)
	}
	if d := l.Damaged(); len(d) != 1 || !d[0].Restored {
		t.Errorf("Damaged = %+v, want the file restored", d)
	}
	if len(l.Files()) != 2 {
		t.Errorf("%d files after the restore, want 2", len(l.Files()))
	}

	// Reported again: the bucket's copy is no better.
	if err := l.SetAside(files[1:], why); err != nil {
		t.Fatal(err)
	}
	d := l.Damaged()
	if len(d) != 2 || d[1].Restored || d[1].Moved == d[0].Moved {
		t.Errorf("Damaged = %+v, want the file set aside beside the first copy", d)
	}
	if got := l.LastOffset("acme", "app", 0); len(l.Files()) != 1 || got != 100 {
		t.Errorf("after the second report: %d files, LastOffset %d", len(l.Files()), got)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	syncRemote(t, l)
	checkBucket(t, srv, "lake", l, offsetRange(0, 100))
}

// TestRemoteMend: in a lake in object storage, Mend puts the bucket's copy
// in place of a local copy found damaged or missing while the lake runs,
// once per file, and leaves the damaged copy under .damaged/; compaction
// mends a file it cannot decode and compacts it at its next pass. A lake
// on local disk has nothing to mend from.
func TestRemoteMend(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake")
	cfg.CompactAge = 0 // Compact compacts every file
	files := uploadHours(t, cfg, 4, 100)
	sound := make(map[string][]byte)
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		sound[f.ID] = b
	}
	ctx := context.Background()
	l := newLake(t, cfg, nil)
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)

	zeroPages(t, files[0].Path)
	if err := os.Remove(files[1].Path); err != nil {
		t.Fatal(err)
	}
	for _, f := range files[:2] {
		if ok, err := l.Mend(ctx, f.Path); !ok || err != nil {
			t.Fatalf("Mend of %s: %v, %v", f.ID, ok, err)
		}
		if b, err := os.ReadFile(f.Path); err != nil || !bytes.Equal(b, sound[f.ID]) {
			t.Errorf("%s is not the bucket's copy after Mend (%v)", f.ID, err)
		}
		if ok, err := l.Mend(ctx, f.Path); ok || err != nil {
			t.Errorf("a second Mend of %s: %v, %v; want nothing done", f.ID, ok, err)
		}
	}
	rel, _ := filepath.Rel(cfg.Dir, files[0].Path)
	if _, err := os.Stat(filepath.Join(cfg.Dir, ".damaged", rel)); err != nil {
		t.Errorf("the damaged copy was not set aside: %v", err)
	}
	if ok, err := l.Mend(ctx, files[3].Path); ok || err != nil {
		t.Errorf("Mend of a sound file: %v, %v; want nothing done", ok, err)
	}
	if s, _ := l.RemoteStats(); s.Mended != 2 {
		t.Errorf("RemoteStats.Mended = %d, want 2", s.Mended)
	}

	// Compaction: the first pass fails on a file whose pages are zeroed
	// and mends it; the next compacts every file.
	zeroPages(t, files[2].Path)
	if _, err := l.Compact(ctx); err == nil {
		t.Fatal("a compaction over a file whose pages are zeroed passed")
	}
	if b, err := os.ReadFile(files[2].Path); err != nil || !bytes.Equal(b, sound[files[2].ID]) {
		t.Fatalf("compaction did not mend the file (%v)", err)
	}
	if _, err := l.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l.CompactionStats(); st.Replaced != 4 || st.Undecodable != 0 {
		t.Errorf("compaction replaced %d files, %d undecodable; want the 4, none", st.Replaced, st.Undecodable)
	}
	syncRemote(t, l)
	checkBucket(t, srv, "lake", l, offsetRange(0, 400))

	local := newLake(t, testConfig(t), nil)
	defer shutdown(t, local)
	writeRows(t, local, part("app", 0), 0, 10)
	if ok, err := local.Mend(ctx, local.Files()[0].Path); ok || err != nil {
		t.Errorf("Mend in a local lake: %v, %v; want nothing done", ok, err)
	}
}

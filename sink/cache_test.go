package sink_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/objstore/miniotest"
	"github.com/weirlabs/weir/sink"
)

// localFiles returns the IDs of the lake's files that are on disk.
func localFiles(t *testing.T, files []sink.FileInfo) map[string]bool {
	t.Helper()
	out := make(map[string]bool)
	for _, f := range files {
		_, err := os.Stat(f.Path)
		switch {
		case err == nil:
			if f.Evicted {
				t.Fatalf("file %s is marked evicted but is on disk", f.ID)
			}
			out[f.ID] = true
		case errors.Is(err, os.ErrNotExist):
			if !f.Evicted {
				t.Fatalf("file %s is missing locally but not marked evicted", f.ID)
			}
		default:
			t.Fatal(err)
		}
	}
	return out
}

func fetch(t *testing.T, l *sink.Lake, files []sink.FileInfo) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release, err := l.Fetch(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	return release
}

// TestCacheEvictFetchRestart fills a lake in MinIO, restarts it with a
// cache bound that holds two of its six files and checks that: the
// least recently used files are evicted locally and stay listed; a
// restart still lists them (with the offsets the buffer continues
// from); Fetch brings them back byte-identical and pins them; a Fetch
// larger than the cache is refused; a delete rewrites and removes
// evicted files (a Fetch of one listed before fails with ErrGone), and
// a restart does not bring the old ones back.
func TestCacheEvictFetchRestart(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake/c")
	cfg.CompactAge = 0
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ps := make([]sink.Partition, 6)
	for i := range ps {
		ps[i] = part("app", 0)
		ps[i].Hour = hour0.Add(time.Duration(i) * time.Hour)
		writeRows(t, l, ps[i], int64(i)*1000, 1000)
	}
	// Compacted: the journal carries what their footers say, rollups
	// included, for the files a restart finds evicted.
	if _, err := l.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	syncRemote(t, l)
	orig := l.Files()
	if len(orig) != 6 {
		t.Fatalf("%d files", len(orig))
	}
	for _, f := range orig {
		if !f.Rollup || f.RollupCounts == 0 {
			t.Fatalf("compacted file %s: rollup %v with %d counts", f.ID, f.Rollup, f.RollupCounts)
		}
	}
	content := make(map[string][]byte)
	var sizes []int64
	for _, f := range orig {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		content[f.ID] = b
		sizes = append(sizes, f.Bytes)
	}
	shutdown(t, l)

	// Room for the two largest files.
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] > sizes[j] })
	cfg.Remote.CacheBytes = sizes[0] + sizes[1]
	l = newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "eviction down to two local files", func() bool {
		s, _ := l.CacheStats()
		return s.Evictions == 4 // counted once the local copies are deleted
	})
	files := l.Files()
	local := localFiles(t, files)
	// Least recently used first: with no Fetch yet, the oldest.
	if len(files) != 6 || len(local) != 2 || !local[orig[4].ID] || !local[orig[5].ID] {
		t.Fatalf("files %d, local %v", len(files), local)
	}
	if n := len(l.CommittedFiles()); n != 6 {
		t.Fatalf("%d committed files", n)
	}
	if s, _ := l.CacheStats(); s.LocalBytes > cfg.Remote.CacheBytes || s.EvictedFiles != 4 {
		t.Fatalf("stats %+v", s)
	}
	shutdown(t, l)

	// A restart lists the evicted files: in the bucket only, not lost.
	l = newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	files = l.Files()
	local = localFiles(t, files)
	if len(files) != 6 || len(local) != 2 {
		t.Fatalf("after a restart: files %d, local %v", len(files), local)
	}
	for i, f := range files {
		if f.ID != orig[i].ID || f.Rollup != orig[i].Rollup || f.RollupCounts != orig[i].RollupCounts || f.Rows != orig[i].Rows {
			t.Errorf("after a restart, file %d (evicted %v): %s with %d rows, rollup %v of %d counts; want %s, %d, %v, %d",
				i, f.Evicted, f.ID, f.Rows, f.Rollup, f.RollupCounts, orig[i].ID, orig[i].Rows, orig[i].Rollup, orig[i].RollupCounts)
		}
	}
	if got := l.LastOffset("acme", "app", 0); got != 6000 {
		t.Fatalf("LastOffset = %d, want 6000", got)
	}
	if _, err := l.Fetch(context.Background(), files); !errors.Is(err, sink.ErrCacheTooSmall) {
		t.Fatalf("Fetch of every file: %v, want ErrCacheTooSmall", err)
	}

	// Fetch brings a file back as it was, and pins it: released, the
	// least recently used local file goes instead.
	release := fetch(t, l, []sink.FileInfo{orig[0]})
	b, err := os.ReadFile(orig[0].Path)
	if err != nil || !bytes.Equal(b, content[orig[0].ID]) {
		t.Fatalf("fetched file differs (err %v)", err)
	}
	release()
	release() // harmless
	files = l.Files()
	local = localFiles(t, files)
	if len(local) != 2 || !local[orig[0].ID] || !local[orig[5].ID] {
		t.Fatalf("after the fetch: local %v", local)
	}
	if s, _ := l.CacheStats(); s.Fetches != 1 || s.FetchedBytes != orig[0].Bytes || s.LocalBytes > cfg.Remote.CacheBytes {
		t.Fatalf("stats %+v", s)
	}

	// A delete rewrites an evicted file (orig[1]: 10 rows go) and
	// removes another whose rows all go (orig[2]).
	for _, d := range []struct {
		i        int
		from, to int64
	}{{1, 1000, 1010}, {2, 2000, 3000}} {
		if files[d.i].ID != orig[d.i].ID || !files[d.i].Evicted {
			t.Fatalf("file %d: %+v", d.i, files[d.i])
		}
		res, err := l.DeleteRows(context.Background(), "acme", "app", ps[d.i].Hour, map[int32]sink.OffsetSet{0: {{From: d.from, To: d.to}}})
		if err != nil || res.Rows != d.to-d.from {
			t.Fatalf("delete: %+v, %v", res, err)
		}
	}
	// A file listed before the delete has left the lake.
	if _, err := l.Fetch(context.Background(), []sink.FileInfo{orig[1]}); !errors.Is(err, sink.ErrGone) {
		t.Fatalf("Fetch of a rewritten file: %v, want ErrGone", err)
	}
	syncRemote(t, l)
	shutdown(t, l)

	// Restarted without a bound: the evicted files are still listed,
	// the deleted ones are not, and fetching them all gives every row
	// left once.
	cfg.Remote.CacheBytes = 0
	l = newLake(t, cfg, nil)
	defer shutdown(t, l)
	files = l.Files()
	if len(files) != 5 {
		t.Fatalf("after the delete and a restart: %d files", len(files))
	}
	ids := make(map[string]bool)
	for _, f := range files {
		ids[f.ID] = true
	}
	if ids[orig[1].ID] || ids[orig[2].ID] {
		t.Fatalf("a deleted or rewritten file came back: %v", ids)
	}
	defer fetch(t, l, files)()
	localFiles(t, l.Files())
	seen := offsetsIn(t, files)
	for o := int64(0); o < 6000; o++ {
		want := 1
		if o >= 1000 && o < 1010 || o >= 2000 && o < 3000 {
			want = 0
		}
		if seen[o] != want {
			t.Fatalf("offset %d seen %d times, want %d", o, seen[o], want)
		}
	}
}

// TestCacheConcurrentFetch fetches files of a lake whose cache holds one
// of them from several goroutines at once: every Fetch sees its files
// whole on disk until it releases them, however the others' releases
// evict, and the cache ends within its bound.
func TestCacheConcurrentFetch(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake/f")
	cfg.CompactAge = 0
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		p := part("app", 0)
		p.Hour = hour0.Add(time.Duration(i) * time.Hour)
		writeRows(t, l, p, int64(i)*500, 500)
	}
	syncRemote(t, l)
	orig := l.Files()
	content := make(map[string][]byte)
	var largest int64
	for _, f := range orig {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		content[f.ID] = b
		largest = max(largest, f.Bytes)
	}
	shutdown(t, l)
	cfg.Remote.CacheBytes = 2 * largest
	l = newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	waitFor(t, "eviction down to the bound", func() bool {
		s, _ := l.CacheStats()
		return s.Evictions >= 2
	})
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range 10 {
				f := orig[(g+i)%len(orig)]
				release, err := l.Fetch(context.Background(), []sink.FileInfo{f})
				if err != nil {
					errs <- err
					return
				}
				b, err := os.ReadFile(f.Path)
				release()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(b, content[f.ID]) {
					errs <- errors.New("fetched file " + f.ID + " differs")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s, _ := l.CacheStats()
	if s.LocalBytes > cfg.Remote.CacheBytes || s.Fetches == 0 || s.FetchFailures != 0 {
		t.Fatalf("stats %+v", s)
	}
	local := localFiles(t, l.Files())
	if len(local)+int(s.EvictedFiles) != len(orig) {
		t.Fatalf("local %d, evicted %d of %d files", len(local), s.EvictedFiles, len(orig))
	}
}

// TestCacheEvictionInterrupted restarts a lake from a state where an
// eviction was journaled but the local copy not yet deleted: the file is
// local, listed once, and evicted again.
func TestCacheEvictionInterrupted(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake/i")
	cfg.CompactAge = 0
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p := part("app", 0)
		p.Hour = hour0.Add(time.Duration(i) * time.Hour)
		writeRows(t, l, p, int64(i)*500, 500)
	}
	syncRemote(t, l)
	orig := l.Files()
	saved, err := os.ReadFile(orig[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	shutdown(t, l)
	cfg.Remote.CacheBytes = orig[2].Bytes
	l = newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two evictions", func() bool { s, _ := l.CacheStats(); return s.Evictions == 2 })
	shutdown(t, l)
	// The crash image: the first evicted file is still on disk.
	if err := os.WriteFile(orig[0].Path, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Remote.CacheBytes = 0
	l = newLake(t, cfg, nil)
	files := l.Files()
	local := localFiles(t, files)
	if len(files) != 3 || len(local) != 2 || !local[orig[0].ID] {
		t.Fatalf("files %d, local %v", len(files), local)
	}
	if got := l.LastOffset("acme", "app", 0); got != 1500 {
		t.Fatalf("LastOffset = %d", got)
	}
	shutdown(t, l)
	cfg.Remote.CacheBytes = orig[2].Bytes
	l = newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	waitFor(t, "evicted again", func() bool { s, _ := l.CacheStats(); return s.Evictions == 1 })
	if local := localFiles(t, l.Files()); len(local) != 1 || !local[orig[2].ID] {
		t.Fatalf("local %v", local)
	}
}

// TestCacheFetchDamagedObject: an evicted file whose object in the bucket
// is damaged (its footer zeroed, its size unchanged) is not brought back:
// Fetch fails, the file stays evicted and nothing is left on disk; once
// the object is sound again the fetch brings the file back.
func TestCacheFetchDamagedObject(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := remoteConfig(t, srv.Store(t), "lake/d")
	cfg.CompactAge = 0
	orig := uploadHours(t, cfg, 2, 500)

	cfg.Remote.CacheBytes = max(orig[0].Bytes, orig[1].Bytes)
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	waitFor(t, "one file evicted", func() bool {
		s, _ := l.CacheStats()
		return s.Evictions == 1
	})
	var gone sink.FileInfo
	for _, f := range l.Files() {
		if f.Evicted {
			gone = f
		}
	}
	rel, err := filepath.Rel(cfg.Dir, gone.Path)
	if err != nil {
		t.Fatal(err)
	}
	key := "lake/d/" + filepath.ToSlash(rel)
	st := srv.Store(t)
	copyPath := filepath.Join(t.TempDir(), "object")
	if err := st.Get(context.Background(), key, copyPath); err != nil {
		t.Fatal(err)
	}
	sound, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(sound)
	footer := int(binary.LittleEndian.Uint32(damaged[len(damaged)-8:]))
	clear(damaged[len(damaged)-8-footer : len(damaged)-8])
	put := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(copyPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(context.Background(), key, copyPath, nil); err != nil {
			t.Fatal(err)
		}
	}
	put(damaged)

	if _, err := l.Fetch(context.Background(), []sink.FileInfo{gone}); err == nil || !strings.Contains(err.Error(), "the bucket's copy is damaged") {
		t.Fatalf("Fetch of a file whose object is damaged: %v", err)
	}
	if s, _ := l.CacheStats(); s.FetchFailures != 1 || s.Fetches != 0 {
		t.Errorf("stats after the failed fetch: %+v", s)
	}
	localFiles(t, l.Files()) // the file is still evicted and not on disk
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(gone.Path), ".*")); len(left) != 0 {
		t.Errorf("the failed fetch left %v", left)
	}

	put(sound)
	release := fetch(t, l, []sink.FileInfo{gone})
	defer release()
	if b, err := os.ReadFile(gone.Path); err != nil || !bytes.Equal(b, sound) {
		t.Errorf("the file fetched once the object is sound differs (%v)", err)
	}
}

package sink_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/objstore/miniotest"
	"github.com/weirlabs/weir/sink"
)

// refSet is a Remote.Referenced: the locations held, and how often it
// was asked about each.
type refSet struct {
	mu    sync.Mutex
	held  map[string]bool
	asked map[string]int
	calls atomic.Int64
}

func newRefSet() *refSet { return &refSet{held: map[string]bool{}, asked: map[string]int{}} }

func (s *refSet) referenced(loc string) bool {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked[loc]++
	return s.held[loc]
}

func (s *refSet) set(loc string, held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[loc] = held
}

func (s *refSet) wasAsked(loc string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[loc] > 0
}

// hasObject reports whether the object of f (its Location) is under
// prefix in the bucket.
func hasObject(t *testing.T, srv *miniotest.Server, prefix string, f sink.FileInfo) bool {
	t.Helper()
	for k := range srv.Keys(t, prefix+"/") {
		if srv.Store(t).URI(k) == f.Location {
			return true
		}
	}
	return false
}

func allCompacted(files []sink.FileInfo) bool {
	for _, f := range files {
		if !f.Compacted {
			return false
		}
	}
	return len(files) > 0
}

// TestRemoteReferencedWaits: the objects of files a compaction replaced
// are not deleted while Remote.Referenced holds them, without the
// uploader spinning; released and woken (WakeRemote), they go, one at
// a time as released. The same holds for garbage found by the listing
// at start.
func TestRemoteReferencedWaits(t *testing.T) {
	srv := miniotest.Start(t)
	refs := newRefSet()
	cfg := remoteConfig(t, srv.Store(t), "r")
	cfg.Remote.Referenced = refs.referenced
	cfg.CompactAge = time.Hour // no compaction until the lake is opened again
	l := newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeRows(t, l, part("app", 0), 0, 100)
	writeRows(t, l, part("app", 0), 100, 100)
	syncRemote(t, l)
	old := l.CommittedFiles()
	if len(old) != 2 {
		t.Fatalf("committed %+v", old)
	}
	for _, f := range old {
		refs.set(f.Location, true)
	}
	shutdown(t, l)
	cfg.CompactAge = 50 * time.Millisecond
	l = newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "the compaction of both files", func() bool {
		if _, err := l.Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
		return allCompacted(l.Files())
	})
	waitFor(t, "the compacted files' uploads and the old objects asked about", func() bool {
		return allCompacted(l.CommittedFiles()) && refs.wasAsked(old[0].Location) && refs.wasAsked(old[1].Location)
	})
	for _, f := range old {
		if !hasObject(t, srv, "r", f) {
			t.Fatalf("object of %s deleted while referenced", f.ID)
		}
	}
	if s, _ := l.RemoteStats(); s.DeletedObjects != 0 {
		t.Fatalf("stats %+v: deleted while referenced", s)
	}
	// Nothing to do but wait: the uploader does not spin.
	n := refs.calls.Load()
	time.Sleep(100 * time.Millisecond)
	if d := refs.calls.Load() - n; d > 4 {
		t.Fatalf("Referenced asked %d times in 100 ms with nothing changed: the uploader spins", d)
	}

	refs.set(old[0].Location, false)
	l.WakeRemote()
	waitFor(t, "the released object deleted", func() bool { return !hasObject(t, srv, "r", old[0]) })
	if !hasObject(t, srv, "r", old[1]) {
		t.Fatalf("object of %s deleted while referenced", old[1].ID)
	}
	refs.set(old[1].Location, false)
	l.WakeRemote()
	syncRemote(t, l)
	if hasObject(t, srv, "r", old[1]) {
		t.Fatalf("object of %s left after its release", old[1].ID)
	}
	checkBucket(t, srv, "r", l, offsetRange(0, 200))

	// Garbage at start: a file of the lake gone from its directory (a
	// crash between the local removal and the remote delete) while a
	// table still lists its object.
	// The compactor runs (CompactAge is short), so the new file is let
	// compact and upload first: otherwise CommittedFiles may still list
	// it after its compaction replaced it locally.
	writeRows(t, l, part("app", 1), 0, 50)
	waitFor(t, "the new file compacted and uploaded", func() bool {
		if _, err := l.Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
		return allCompacted(l.Files()) && allCompacted(l.CommittedFiles())
	})
	syncRemote(t, l)
	shutdown(t, l)
	var gone sink.FileInfo
	for _, f := range l.CommittedFiles() {
		if f.Partition.Part == 1 {
			gone = f
		}
	}
	if err := os.Remove(gone.Path); err != nil {
		t.Fatal(err)
	}
	refs.set(gone.Location, true)
	l = newLake(t, cfg, nil)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { shutdown(t, l) }()
	waitFor(t, "the leftover asked about", func() bool { return refs.wasAsked(gone.Location) })
	if !hasObject(t, srv, "r", gone) {
		t.Fatal("leftover object deleted while referenced")
	}
	refs.set(gone.Location, false)
	l.WakeRemote()
	syncRemote(t, l)
	if hasObject(t, srv, "r", gone) {
		t.Fatal("leftover object not deleted after its release")
	}
}

package iceberg_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	iceio "github.com/apache/iceberg-go/io"

	"github.com/weirlabs/weir/internal/objstore"
	"github.com/weirlabs/weir/internal/objstore/miniotest"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/sink/iceberg"
)

// lakeRef is the reconciler's Lake: the lake open at the moment.
type lakeRef struct{ l atomic.Pointer[sink.Lake] }

func (r *lakeRef) CommittedFiles() []sink.FileInfo { return r.l.Load().CommittedFiles() }

// TestS3NoMissingFiles: with the lake and the warehouse in MinIO, the
// lake deletes no object the table's current snapshot lists. A
// compaction's and a retention's old objects stay in the bucket while
// the table lists them (the lake asked and was told to wait), and go
// once a pass has taken them out of the table; meanwhile a reader that
// plans the table over and over finds every planned object.
func TestS3NoMissingFiles(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	st := srv.Store(t)
	e := newEnv(t)
	io := map[string]string{
		iceio.S3EndpointURL: srv.Endpoint, iceio.S3Region: "us-east-1",
		iceio.S3AccessKeyID: miniotest.User, iceio.S3SecretAccessKey: miniotest.Password,
		iceio.S3ForceVirtualAddressing: "false",
	}
	cfg := iceberg.DefaultConfig()
	cfg.Warehouse, cfg.IO = "s3://"+srv.Bucket+"/lake/_iceberg", io
	lake := &lakeRef{}
	cfg.AfterPass = func() { lake.l.Load().WakeRemote() }
	cat, err := iceberg.OpenCatalog(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := iceberg.New(cfg, lake, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		askedMu gosync.Mutex
		asked   = map[string]bool{} // locations the lake asked about and was told to wait
	)
	// Short pauses after a failed upload: a slow or refused request of
	// a loaded machine is retried within the test's waits.
	e.lakeCfg.Remote = &sink.Remote{Store: st, Prefix: "lake", RetryMin: 10 * time.Millisecond, RetryMax: 250 * time.Millisecond, Referenced: func(loc string) bool {
		ref := r.Referenced(loc)
		if ref {
			askedMu.Lock()
			asked[loc] = true
			askedMu.Unlock()
		}
		return ref
	}}
	wasHeld := func(loc string) bool {
		askedMu.Lock()
		defer askedMu.Unlock()
		return asked[loc]
	}
	exists := func(loc string) bool {
		t.Helper()
		key, ok := strings.CutPrefix(loc, "s3://"+srv.Bucket+"/")
		if !ok {
			t.Fatalf("location %s not in the bucket", loc)
		}
		_, err := st.Head(context.Background(), key)
		if errors.Is(err, objstore.ErrNotFound) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	}

	// A reader planning app's and old's tables over and over: every
	// object the current snapshot lists exists. A missing object counts
	// only if the snapshot was still current after it was found missing.
	ctx, stop := context.WithCancel(context.Background())
	var (
		rounds   atomic.Int64
		readerWG gosync.WaitGroup
		missing  []string
		missMu   gosync.Mutex
	)
	// The reader starts once the first pass has made both tables: before,
	// it would only hammer the bucket for tables that do not exist yet
	// while the lake uploads its first files.
	tablesMade := make(chan struct{})
	readerWG.Go(func() {
		select {
		case <-tablesMade:
		case <-ctx.Done():
			return
		}
		rc, err := iceberg.OpenCatalog(ctx, cfg)
		if err != nil {
			t.Error(err)
			return
		}
		for ctx.Err() == nil {
			for _, stream := range []string{"app", "old"} {
				tbl, err := rc.LoadTable(ctx, iceberg.Ident(tenant, stream))
				if err != nil || tbl.CurrentSnapshot() == nil {
					continue // not created yet, or cancelled
				}
				tasks, err := tbl.Scan().PlanFiles(ctx)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("plan %s: %v", stream, err)
					}
					return
				}
				for _, task := range tasks {
					loc := task.File.FilePath()
					key := strings.TrimPrefix(loc, "s3://"+srv.Bucket+"/")
					if _, err := st.Head(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
						continue
					}
					again, err := rc.LoadTable(ctx, iceberg.Ident(tenant, stream))
					if err == nil && again.CurrentSnapshot().SnapshotID == tbl.CurrentSnapshot().SnapshotID {
						missMu.Lock()
						missing = append(missing, fmt.Sprintf("%s (snapshot %d)", loc, tbl.CurrentSnapshot().SnapshotID))
						missMu.Unlock()
					}
				}
			}
			rounds.Add(1)
		}
	})
	defer func() {
		stop()
		readerWG.Wait()
		if len(missing) > 0 {
			t.Fatalf("the current snapshot listed objects missing from the bucket: %v", missing)
		}
	}()

	// Two files of app and one of old, uploaded, in the tables.
	e.lakeCfg.CompactAge = time.Hour // no compaction in the first lake
	l := e.openLake(t)
	lake.l.Store(l)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	app, old := want{}, want{}
	write(t, l, app, "app", 0, 0, 100, hour0, false)
	write(t, l, app, "app", 0, 100, 100, hour0, false)
	write(t, l, old, "old", 0, 0, 10, hour0, false)
	waitFor(t, func() bool { return len(l.CommittedFiles()) == 3 })
	sync(t, r)
	close(tablesMade)
	check := func(stream string, w want) {
		t.Helper()
		c, err := iceberg.OpenCatalog(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkTableIO(t, io, c, l, stream, w)
	}
	check("app", app)
	check("old", old)
	before := l.CommittedFiles()
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Compaction and retention (by the lake's own timer at start, or
	// called here) in a lake opened again: the compacted files are
	// uploaded, old's file leaves the lake, and the three old objects
	// wait for the tables.
	e.lakeCfg.CompactAge = 50 * time.Millisecond
	l = e.openLake(t)
	lake.l.Store(l)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		if _, err := l.Retain(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, f := range l.CommittedFiles() {
			if f.Partition.Stream == "old" || !f.Compacted {
				return false
			}
		}
		for _, f := range before {
			if !wasHeld(f.Location) {
				return false
			}
		}
		return true
	})
	settled(t, l, e.lakeCfg.CompactAge)
	for _, f := range before {
		if !exists(f.Location) {
			t.Fatalf("%s deleted while the table lists it", f.Location)
		}
	}
	if got := append(tableFiles(t, cat, "app"), tableFiles(t, cat, "old")...); len(got) != 3 || got[0] != before[0].Location || got[1] != before[1].Location || got[2] != before[2].Location {
		t.Fatalf("tables list %v before the pass, want %v", got, before)
	}
	sync(t, r)
	check("app", app)
	check("old", want{})
	waitFor(t, func() bool {
		return !exists(before[0].Location) && !exists(before[1].Location) && !exists(before[2].Location)
	})
	syncCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.SyncRemote(syncCtx); err != nil {
		t.Fatal(err)
	}
	// The bucket holds exactly the lake's files.
	keys := srv.Keys(t, "lake/tenant=")
	if len(keys) != len(l.CommittedFiles()) {
		t.Fatalf("bucket has %d data objects, lake %d files", len(keys), len(l.CommittedFiles()))
	}
	waitFor(t, func() bool { return rounds.Load() >= 3 })
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/objstore"
	"github.com/weirlabs/weir/internal/objstore/miniotest"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/sink/iceberg"
)

// TestIcebergS3NoMissingFiles serves with the lake in MinIO and Iceberg
// on, while compaction and retention replace and remove files; a reader
// plans the tables over and over and finds every object the current
// snapshot lists in the bucket. In the end the bucket holds exactly the
// objects the tables list: the old ones were deleted.
func TestIcebergS3NoMissingFiles(t *testing.T) {
	srv := miniotest.Start(t)
	st := srv.Store(t)
	s3 := s3Config{Endpoint: srv.Endpoint, Region: "us-east-1", PathStyle: true,
		AccessKeyID: miniotest.User, SecretAccessKey: miniotest.Password}
	s := startServer(t, "", func(c *config) {
		c.Sink.MaxFileAge = 100 * time.Millisecond
		c.Sink.Compaction.Age = 300 * time.Millisecond
		c.Sink.Lake = "s3://" + srv.Bucket + "/weir/lake"
		c.Sink.S3 = s3
		c.Retention.Streams = map[string]period{"old": period(24 * time.Hour)}
		c.Retention.Interval = 200 * time.Millisecond
		c.Iceberg.Enabled = true
	})
	cfg := iceberg.DefaultConfig()
	cfg.Warehouse, cfg.IO = "s3://"+srv.Bucket+"/weir/lake/_iceberg", s3IO(s3)

	ctx, stop := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		rounds  atomic.Int64
		mu      sync.Mutex
		missing []string
		oldSeen atomic.Bool // old's table listed a file at some point
	)
	wg.Go(func() {
		cat, err := iceberg.OpenCatalog(ctx, cfg)
		if err != nil {
			t.Error(err)
			return
		}
		for ctx.Err() == nil {
			for _, stream := range []string{"app", "old"} {
				tbl, err := cat.LoadTable(ctx, iceberg.Ident("default", stream))
				if err != nil || tbl.CurrentSnapshot() == nil {
					continue
				}
				tasks, err := tbl.Scan().PlanFiles(ctx)
				if err != nil {
					continue // cancelled, or metadata replaced meanwhile
				}
				if stream == "old" && len(tasks) > 0 {
					oldSeen.Store(true)
				}
				for _, task := range tasks {
					loc := task.File.FilePath()
					if _, err := st.Head(ctx, strings.TrimPrefix(loc, "s3://"+srv.Bucket+"/")); !errors.Is(err, objstore.ErrNotFound) {
						continue
					}
					// Missing: a fault only if that snapshot is still
					// the current one.
					again, err := cat.LoadTable(ctx, iceberg.Ident("default", stream))
					if err == nil && again.CurrentSnapshot().SnapshotID == tbl.CurrentSnapshot().SnapshotID {
						mu.Lock()
						missing = append(missing, fmt.Sprintf("%s (snapshot %d)", loc, tbl.CurrentSnapshot().SnapshotID))
						mu.Unlock()
					}
				}
			}
			rounds.Add(1)
		}
	})
	stopReader := func() {
		stop()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if m := missing; len(m) > 0 {
			missing = nil // reported once
			t.Fatalf("the current snapshot listed objects missing from the bucket: %v", m)
		}
	}
	defer stopReader()

	ingest, _ := newClients(s.url)
	push := func(stream string, first, n int, at time.Time) {
		t.Helper()
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord("line " + strconv.Itoa(first+i))
			recs[i].TimeUnixNano = uint64(at.UnixNano())
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: stream, Records: recs})); err != nil {
			t.Fatal(err)
		}
	}
	pushed := 0
	for i := range 4 {
		push("app", pushed, 25, time.Now())
		pushed += 25
		waitCount(t, s.url, "SELECT count(*) FROM app", int64(pushed))
		// Records of two days ago: retention removes their files.
		push("old", 10*i, 10, time.Now().Add(-48*time.Hour))
	}
	compareTable(t, cfg, s.url, pushed)
	// Compaction and retention deleted objects, and the tables list
	// exactly the objects in the bucket.
	deadline := time.Now().Add(30 * time.Second)
	for {
		app, _ := plannedFiles(t, cfg, "app")
		old, _ := plannedFiles(t, cfg, "old")
		keys := srv.Keys(t, "weir/lake/tenant=")
		same := len(keys) == len(app)+len(old) && len(old) == 0
		for _, loc := range app {
			_, ok := keys[strings.TrimPrefix(loc, "s3://"+srv.Bucket+"/")]
			same = same && ok
		}
		if same && metricValue(t, s.url, "weir_lake_remote_deletes_total") >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: tables list %d+%d files, the bucket holds %d objects, %v deleted",
				len(app), len(old), len(keys), metricValue(t, s.url, "weir_lake_remote_deletes_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	compareTable(t, cfg, s.url, pushed)
	for rounds.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the reader planned the tables %d times in 30 s", rounds.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopReader()
	t.Logf("reader planned the tables %d times; old's table listed files: %v", rounds.Load(), oldSeen.Load())
}

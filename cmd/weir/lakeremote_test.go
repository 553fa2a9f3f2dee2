package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pq "github.com/parquet-go/parquet-go"

	"github.com/weirlabs/weir/internal/objstore/miniotest"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

func TestLakeConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		lake string
		s3   s3Config
		want string // part of the error; "" for none
	}{
		{"", s3Config{}, ""},
		{"s3://bucket", s3Config{}, ""},
		{"s3://bucket/some/prefix/", s3Config{Endpoint: "http://127.0.0.1:9000", PathStyle: true}, ""},
		{"/var/lake", s3Config{}, "want s3://bucket"},
		{"gs://bucket/x", s3Config{}, "want s3://bucket"},
		{"s3:///x", s3Config{}, "want s3://bucket"},
		{"", s3Config{Region: "eu-west-1"}, "sink.lake is not an s3:// URL"},
		{"s3://b", s3Config{AccessKeyID: "k"}, "set both access_key_id and secret_access_key"},
		{"s3://b", s3Config{Endpoint: "127.0.0.1:9000"}, "want http(s)://host"},
		{"s3://b", s3Config{PartBytes: 1 << 20}, "at least 5 MiB"},
		{"s3://b", s3Config{CacheBytes: 64 << 20}, ""},
		{"s3://b", s3Config{CacheBytes: -1}, "cache_bytes must not be negative"},
	} {
		c := defaultConfig()
		c.Data = t.TempDir()
		c.Sink.Lake, c.Sink.S3 = tc.lake, tc.s3
		err := c.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("lake %q %+v: %v", tc.lake, tc.s3, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("lake %q %+v: error %v, want one saying %q", tc.lake, tc.s3, err, tc.want)
		}
	}
	if b, p, _ := parseLake("s3://bkt/a/b/"); b != "bkt" || p != "a/b" {
		t.Errorf("parseLake: %q %q", b, p)
	}
}

// TestLakeS3EndToEnd serves with sink.lake in a MinIO bucket: a COMMITTED
// push returns only once its records' file is in the bucket (not while
// the server is away, although SQL already shows the records from the
// local copy, and /readyz says why), and the objects hold the records.
func TestLakeS3EndToEnd(t *testing.T) {
	srv := miniotest.Start(t)
	s := startServer(t, "", func(c *config) {
		c.Sink.MaxFileAge = 100 * time.Millisecond
		c.Sink.Lake = "s3://" + srv.Bucket + "/weir/lake"
		c.Sink.S3 = s3Config{Endpoint: srv.Endpoint, Region: "us-east-1", PathStyle: true,
			AccessKeyID: miniotest.User, SecretAccessKey: miniotest.Password}
		c.Ingest.PushTimeout = time.Minute
	})
	ingest, _ := newClients(s.url)
	records := func(from, n int) []*weirv1.LogRecord {
		out := make([]*weirv1.LogRecord, n)
		for i := range out {
			out[i] = textRecord("line " + strconv.Itoa(from+i))
		}
		return out
	}
	ctx := context.Background()
	push(t, ctx, ingest, "app", weirv1.AckLevel_ACK_LEVEL_COMMITTED, records(0, 50)...)
	if keys := srv.Keys(t, "weir/lake/"); len(keys) == 0 {
		t.Fatal("COMMITTED push returned before any object was in the bucket")
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 50)

	// The server goes away: the next COMMITTED push waits, while SQL
	// shows its records from the local copy and /readyz says why.
	srv.Stop()
	done := make(chan error, 1)
	go func() {
		_, err := ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: records(50, 30), AckLevel: weirv1.AckLevel_ACK_LEVEL_COMMITTED}))
		done <- err
	}()
	waitCount(t, s.url, "SELECT count(*) FROM app", 80)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, body := get(t, s.url+"/readyz")
		if strings.Contains(string(body), "uploads to object storage failing") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz does not report the failing uploads: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, _, metrics := get(t, s.url+"/metrics")
	if !strings.Contains(string(metrics), "weir_lake_upload_failing 1") || !strings.Contains(string(metrics), "weir_lake_upload_pending_files 1") {
		t.Errorf("metrics while the bucket is away:\n%s", grepLines(string(metrics), "weir_lake_"))
	}
	select {
	case err := <-done:
		t.Fatalf("COMMITTED push returned while the bucket was away: %v", err)
	default:
	}
	srv.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("COMMITTED push still waiting a minute after the bucket came back")
	}

	// Every record is in the bucket once.
	st := srv.Store(t)
	dir := t.TempDir()
	bodies := make(map[string]int)
	i := 0
	for key := range srv.Keys(t, "weir/lake/") {
		if !strings.HasPrefix(key, "weir/lake/tenant=default/stream=app/date=") || !strings.HasSuffix(key, ".parquet") {
			t.Errorf("object %s is not in the lake layout", key)
			continue
		}
		i++
		path := filepath.Join(dir, strconv.Itoa(i))
		if err := st.Get(ctx, key, path); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		rows, err := pq.Read[struct {
			Body string `parquet:"body"`
		}](f, fi.Size())
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			bodies[r.Body]++
		}
	}
	for n := range 80 {
		if got := bodies["line "+strconv.Itoa(n)]; got != 1 {
			t.Errorf("record %d is %d times in the bucket", n, got)
		}
	}
	if len(bodies) != 80 {
		t.Errorf("%d distinct records in the bucket, want 80", len(bodies))
	}
	if _, _, metrics := get(t, s.url+"/metrics"); !strings.Contains(string(metrics), "weir_lake_upload_failing 0") {
		t.Errorf("metrics after the bucket came back:\n%s", grepLines(string(metrics), "weir_lake_"))
	}
}

// TestLakeS3WrongCredentials: weir starts, ingests and answers queries
// with credentials the bucket refuses, and /readyz says so.
func TestLakeS3WrongCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	s := startServer(t, "", func(c *config) {
		c.Sink.MaxFileAge = 100 * time.Millisecond
		c.Sink.Lake = "s3://" + srv.Bucket
		c.Sink.S3 = s3Config{Endpoint: srv.Endpoint, PathStyle: true, AccessKeyID: miniotest.User, SecretAccessKey: "wrong"}
	})
	ingest, _ := newClients(s.url)
	push(t, context.Background(), ingest, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, textRecord("a"), textRecord("b"))
	waitCount(t, s.url, "SELECT count(*) FROM app", 2)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, body := get(t, s.url+"/readyz")
		if strings.Contains(string(body), "credentials") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz does not report the refused credentials: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if keys := srv.Keys(t, ""); len(keys) != 0 {
		t.Fatalf("objects stored with wrong credentials: %v", keys)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestLakeS3BucketAwayDiskFull: with the bucket away, files wait locally
// and the write-ahead log keeps their records, until the disk (a 24 MiB
// tmpfs) is full and pushes are refused with RESOURCE_EXHAUSTED; queries
// go on. Once the bucket is back the waiting files are uploaded and their
// local copies evicted past a 1 MiB cache, which frees the disk, and
// pushes pass again; after a restart (which brings back the rows of files
// abandoned for lack of space) every acknowledged record is in the
// bucket once. The cache is bounded because uploading alone frees no
// local space: when a file was abandoned while the disk was full, its
// rows hold the log until a restart (docs/durability.md, "A full
// disk"), and with every file kept local nothing else could free space.
func TestLakeS3BucketAwayDiskFull(t *testing.T) {
	data := mountTmpfs(t, "24m")
	srv := miniotest.Start(t)
	mutate := func(c *config) {
		c.Sink.MaxFileAge = 150 * time.Millisecond
		c.Transform.MaxAge = 50 * time.Millisecond
		c.Buffer.WAL.SegmentBytes = 256 << 10
		c.Sink.Lake = "s3://" + srv.Bucket + "/l"
		c.Sink.S3 = s3Config{Endpoint: srv.Endpoint, PathStyle: true, AccessKeyID: miniotest.User, SecretAccessKey: miniotest.Password,
			CacheBytes: 1 << 20}
	}
	s := startServer(t, data, mutate)
	client, _ := newClients(s.url)
	const batch = 50
	acked := map[string]bool{}
	seq := 0
	rng := rand.New(rand.NewPCG(1, 2))
	pad := make([]byte, 100)
	push := func(prefix string) (string, error) {
		seq++
		id := fmt.Sprintf("%s%d", prefix, seq)
		recs := make([]*weirv1.LogRecord, batch)
		for i := range recs {
			for j := range pad {
				pad[j] = byte(rng.Uint32())
			}
			recs[i] = textRecord(id + "-r" + strconv.Itoa(i) + "-" + hex.EncodeToString(pad))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs, AckLevel: weirv1.AckLevel_ACK_LEVEL_DURABLE}))
		if err == nil {
			acked[id] = true
		}
		return id, err
	}
	srv.Stop()
	var firstErr error
	for i := 0; firstErr == nil; i++ {
		if i == 5000 {
			t.Fatal("5000 pushes succeeded on a 24 MiB disk with the bucket away")
		}
		var id string
		if id, firstErr = push("away-"); firstErr != nil {
			var ce *connect.Error
			if !errors.As(firstErr, &ce) || ce.Code() != connect.CodeResourceExhausted || !strings.Contains(ce.Message(), "no space left") {
				t.Fatalf("push %s with the bucket away: %v; want RESOURCE_EXHAUSTED saying the disk is full", id, firstErr)
			}
		}
	}
	t.Logf("disk full after %d acknowledged batches: %v", len(acked), firstErr)
	// Queries go on, and the metrics say why the disk fills.
	mustSQL(t, s.url, "SELECT count(*) FROM app")
	if _, _, metrics := get(t, s.url+"/metrics"); !strings.Contains(metrics, "weir_lake_upload_failing 1") || strings.Contains(metrics, "weir_lake_upload_pending_files 0") {
		t.Errorf("metrics with the bucket away and the disk full:\n%s", grepLines(metrics, "weir_lake_upload"))
	}

	srv.Restart()
	back := time.Now()
	for {
		id, err := push("back-")
		if err == nil {
			break
		}
		if time.Since(back) > 90*time.Second {
			_, _, metrics := get(t, s.url+"/metrics")
			t.Fatalf("push %s still fails 90 s after the bucket came back: %v\n%s\nspace used under the data directory:\n%s",
				id, err, grepLines(metrics, "weir_lake_upload"), spaceUsed(t, data))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("pushes pass again %s after the bucket came back", time.Since(back).Round(time.Millisecond))
	// The waiting files are uploaded, which lets the write-ahead log
	// shrink.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, metrics := get(t, s.url+"/metrics")
		if strings.Contains(metrics, "weir_lake_upload_pending_files 0") && strings.Contains(metrics, "weir_lake_upload_failing 0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("files still waiting a minute after the bucket came back:\n%s", grepLines(metrics, "weir_lake_upload"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Files abandoned while the disk was full come back from the
	// write-ahead log at a restart (docs/durability.md, "A full disk").
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	startServer(t, data, mutate) // stopped at the test's cleanup
	// Every acknowledged batch reaches the bucket, once.
	deadline = time.Now().Add(60 * time.Second)
	for {
		counts := bucketBodies(t, srv, "l/")
		missing, dup := 0, 0
		for id := range acked {
			for i := range batch {
				switch counts[id+"-r"+strconv.Itoa(i)] {
				case 0:
					missing++
				case 1:
				default:
					dup++
				}
			}
		}
		if dup > 0 {
			t.Fatalf("%d records twice in the bucket", dup)
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged records not in the bucket a minute after it came back", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// spaceUsed lists the bytes that the files under dir take up, per
// directory up to three levels down, largest first.
func spaceUsed(t *testing.T, dir string) string {
	t.Helper()
	sizes := map[string]int64{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(path))
		parts := strings.Split(filepath.ToSlash(rel), "/")
		n := fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n = st.Blocks * 512 // allocated, which is what fills the disk
		}
		sizes[strings.Join(parts[:min(len(parts), 3)], "/")] += n
		return nil
	})
	keys := slices.SortedFunc(maps.Keys(sizes), func(a, b string) int { return cmp.Compare(sizes[b], sizes[a]) })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%10d %s\n", sizes[k], k)
	}
	return b.String()
}

// bucketBodies counts the records of the objects under prefix by body,
// cut at the second '-' (the batch id and record number).
func bucketBodies(t *testing.T, srv *miniotest.Server, prefix string) map[string]int {
	t.Helper()
	st := srv.Store(t)
	dir := t.TempDir()
	out := map[string]int{}
	i := 0
	for key := range srv.Keys(t, prefix) {
		i++
		path := filepath.Join(dir, strconv.Itoa(i))
		if err := st.Get(context.Background(), key, path); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		rows, err := pq.Read[struct {
			Body string `parquet:"body"`
		}](f, fi.Size())
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if j := strings.LastIndexByte(r.Body, '-'); j > 0 {
				out[r.Body[:j]]++
			}
		}
	}
	return out
}

package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/parquet/file"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestCompactionEndToEnd runs a server that compacts files a second old:
// while Loghub lines of four services arrive and queries run all the
// time, the published files are replaced by compacted ones, no query
// fails, every record is counted once before and after a restart, and
// the lake ends up in compacted files only.
func TestCompactionEndToEnd(t *testing.T) {
	data := t.TempDir()
	mutate := func(c *config) {
		c.Sink.MaxFileAge = 200 * time.Millisecond
		c.Sink.Compaction.Age = time.Second
		c.Sink.Compaction.SortRows = 1024
	}
	s := startServer(t, data, mutate)
	var lines []string
	for _, name := range []string{"HDFS_2k.log", "OpenSSH_2k.log", "Zookeeper_2k.log", "Spark_2k.log"} {
		f, err := os.Open(filepath.Join(loghubDir, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures []string
	var mu sync.Mutex
	var seen atomic.Bool // a query succeeded: the stream's view exists
	wg.Go(func() {
		for ctx.Err() == nil {
			status, raw, _ := postSQL(t, s.url, "SELECT count(*) AS n, count(DISTINCT _offset) AS d FROM app", "")
			// The view appears with the first records; until then the
			// query fails for a good reason.
			if status == http.StatusOK {
				seen.Store(true)
			} else if seen.Load() {
				mu.Lock()
				failures = append(failures, string(raw))
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	ingest, _ := newClients(s.url)
	services := []string{"hdfs", "sshd", "zookeeper", "spark"}
	const perPush = 400
	pushed := 0
	for round := range 8 {
		recs := make([]*weirv1.LogRecord, perPush)
		for i := range recs {
			n := round*perPush + i
			recs[i] = &weirv1.LogRecord{
				Body:     lines[(n*7919)%len(lines)],
				Resource: []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: services[n%len(services)]}}}},
			}
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
		pushed += perPush
		time.Sleep(250 * time.Millisecond)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", int64(pushed))

	// Wait for every published file to be compacted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		files := lakeFiles(t, data)
		compacted := 0
		for _, p := range files {
			if compactedFile(t, p) {
				compacted++
			}
		}
		if len(files) > 0 && compacted == len(files) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d files compacted after 30 s", compacted, len(files))
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitCount(t, s.url, "SELECT count(DISTINCT _offset) FROM app", int64(pushed))
	cancel()
	wg.Wait()
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d queries failed while files were compacted; first: %s", len(failures), failures[0])
	}
	mu.Unlock()
	waitCount(t, s.url, "SELECT count(*) FROM app", int64(pushed))
	if got := countBy(t, s.url, "SELECT service_name, count(*) FROM app GROUP BY 1"); len(got) != len(services) || got["hdfs"] != int64(pushed/len(services)) {
		t.Errorf("records per service after compaction: %v", got)
	}

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, mutate)
	waitCount(t, s.url, "SELECT count(*) FROM app", int64(pushed))
	waitCount(t, s.url, "SELECT count(DISTINCT _offset) FROM app", int64(pushed))
}

// compactedFile reports whether the Parquet file at path was written by
// compaction.
func compactedFile(t *testing.T, path string) bool {
	t.Helper()
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		return false // replaced and deleted meanwhile
	}
	defer r.Close()
	return r.MetaData().KeyValueMetadata().FindValue("weir.compacted") != nil
}

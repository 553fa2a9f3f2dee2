package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/objstore/miniotest"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// lakeMetric returns the value of an unlabelled weir_lake_ metric.
func lakeMetric(t *testing.T, url, name string) int64 {
	t.Helper()
	_, _, body := get(t, url+"/metrics")
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no metric %s in:\n%s", name, grepLines(body, "weir_lake_"))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return int64(v)
}

// TestLakeS3CacheQueriesFetch serves with the lake in a MinIO bucket and
// a local cache too small for it: files evicted from the cache are read
// back for queries (all of a stream, or only the hours a query's WHERE
// bounds timestamp to), a query needing more than the cache is refused
// with RESOURCE_EXHAUSTED and a way out, and a subscription from the
// earliest record reads every record once.
func TestLakeS3CacheQueriesFetch(t *testing.T) {
	srv := miniotest.Start(t)
	const cache = 250 << 10
	data := t.TempDir()
	mutate := func(c *config) {
		c.Sink.MaxFileAge = 100 * time.Millisecond
		// A file per hour whatever the time of day: the records go back
		// three hours, into yesterday after 01:00 UTC, whose rows would
		// otherwise share a day file.
		c.Sink.DayFilesAfter = 0
		c.Sink.Lake = "s3://" + srv.Bucket + "/weir/lake"
		c.Sink.S3 = s3Config{Endpoint: srv.Endpoint, Region: "us-east-1", PathStyle: true,
			AccessKeyID: miniotest.User, SecretAccessKey: miniotest.Password, CacheBytes: cache}
		c.Ingest.PushTimeout = time.Minute
		c.Consume.PollInterval = 20 * time.Millisecond
	}
	s := startServer(t, data, mutate)
	ingest, q := newClients(s.url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	committed := weirv1.AckLevel_ACK_LEVEL_COMMITTED
	base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	at := func(h, i int) *weirv1.LogRecord {
		return &weirv1.LogRecord{TimeUnixNano: uint64(base.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second).UnixNano())}
	}
	// app: three small files, one an hour; big: three of about 150 KiB
	// (random bodies), of which the cache holds one.
	var appBodies []string
	for h := range 3 {
		recs := make([]*weirv1.LogRecord, 20)
		for i := range recs {
			recs[i] = at(h, i)
			recs[i].Body = fmt.Sprintf("app h%d n%02d", h, i)
			appBodies = append(appBodies, recs[i].Body)
		}
		push(t, ctx, ingest, "app", committed, recs...)
	}
	for h := range 3 {
		recs := make([]*weirv1.LogRecord, 50)
		for i := range recs {
			raw := make([]byte, 3000)
			rand.Read(raw)
			recs[i] = at(h, i)
			recs[i].Body = base64.StdEncoding.EncodeToString(raw)
		}
		push(t, ctx, ingest, "big", committed, recs...)
	}
	// Each upload's cache pass evicts the least recently used files:
	// the app files and the first two big ones.
	deadline := time.Now().Add(30 * time.Second)
	for lakeMetric(t, s.url, "weir_lake_cache_evicted_files") < 5 || lakeMetric(t, s.url, "weir_lake_cache_local_bytes") > cache {
		if time.Now().After(deadline) {
			_, _, body := get(t, s.url+"/metrics")
			t.Fatalf("files not evicted:\n%s", grepLines(body, "weir_lake_cache"))
		}
		time.Sleep(20 * time.Millisecond)
	}

	// One hour of big: only that hour's file is fetched.
	fetches, fetched := lakeMetric(t, s.url, "weir_lake_cache_fetches_total"), lakeMetric(t, s.url, "weir_lake_cache_fetched_bytes_total")
	hour := fmt.Sprintf("SELECT count(*) FROM big WHERE timestamp >= '%s' AND timestamp < '%s'",
		base.Format(time.DateTime), base.Add(time.Hour).Format(time.DateTime))
	waitCount(t, s.url, hour, 50)
	df, db := lakeMetric(t, s.url, "weir_lake_cache_fetches_total")-fetches, lakeMetric(t, s.url, "weir_lake_cache_fetched_bytes_total")-fetched
	t.Logf("one hour of big fetched %d files, %d bytes", df, db)
	if df < 1 || db <= 0 || db > cache/2+cache/4 {
		t.Errorf("one hour of big fetched %d files of %d bytes; want its file alone (about 150 KiB)", df, db)
	}

	// All of app, every row once.
	waitCount(t, s.url, "SELECT count(*) FROM app", 60)
	res := mustSQL(t, s.url, "SELECT string_agg(body, '|' ORDER BY body) AS b FROM app")
	slices.Sort(appBodies)
	if got := fmt.Sprint(res.Rows[0]["b"]); got != strings.Join(appBodies, "|") {
		t.Errorf("app's bodies:\n got %s\nwant %s", got, strings.Join(appBodies, "|"))
	}
	if n := lakeMetric(t, s.url, "weir_lake_cache_fetch_failures_total"); n != 0 {
		t.Errorf("%d fetches failed", n)
	}

	// All of big needs more than the cache holds.
	status, raw, _ := postSQL(t, s.url, "SELECT count(*) FROM big", "")
	if status != http.StatusTooManyRequests || !strings.Contains(string(raw), "narrow its time range") {
		t.Errorf("all of big over HTTP: %d %s, want 429 saying to narrow the time range", status, raw)
	}
	st, err := q.Query(ctx, connect.NewRequest(&weirv1.QueryRequest{Sql: "SELECT count(*) FROM logs"}))
	if err == nil {
		for st.Receive() {
		}
		err = st.Err()
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || !strings.Contains(ce.Message(), "narrow its time range") {
		t.Errorf("all of logs over Connect: %v, want RESOURCE_EXHAUSTED saying to narrow the time range", err)
	}

	// Subscriptions from the earliest record read every record once,
	// those of evicted files too, one fetched file at a time.
	sc := weirv1connect.NewSubscribeServiceClient(newHTTPClient(), s.url)
	for _, tc := range []struct {
		stream string
		n      int
	}{{"app", 60}, {"big", 150}} {
		sub := openSub(t, sc, &weirv1.SubscribeRequest{Stream: tc.stream, MaxBatchRecords: 17})
		recs := sub.atLeast(tc.n)
		checkOrder(t, recs, nil, false)
		seen := map[string]bool{}
		for _, r := range recs {
			k := fmt.Sprint(r.GetPartition(), "/", r.GetOffset())
			if seen[k] {
				t.Errorf("%s: record %s twice", tc.stream, k)
			}
			seen[k] = true
		}
		if len(recs) != tc.n {
			t.Errorf("%s: %d records, want %d", tc.stream, len(recs), tc.n)
		}
		if tc.stream == "app" {
			got := bodies(recs)
			slices.Sort(got)
			if !slices.Equal(got, appBodies) {
				t.Errorf("app's subscription bodies differ: %v", got)
			}
		}
		sub.close()
	}

	// After a restart the engine learns the evicted files from the lake
	// and fetches them again.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, mutate)
	if n := lakeMetric(t, s.url, "weir_lake_cache_evicted_files"); n == 0 {
		t.Fatal("no evicted files after the restart")
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 60)
	// The cache holds one big file: the other hours are fetched.
	for h := range 3 {
		waitCount(t, s.url, fmt.Sprintf("SELECT count(*) FROM big WHERE timestamp >= '%s' AND timestamp < '%s'",
			base.Add(time.Duration(h)*time.Hour).Format(time.DateTime), base.Add(time.Duration(h+1)*time.Hour).Format(time.DateTime)), 50)
	}
	if n := lakeMetric(t, s.url, "weir_lake_cache_fetches_total"); n < 2 {
		t.Errorf("%d fetches after the restart, want at least 2", n)
	}
}

package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	stdio "io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/iceberg-go/catalog"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	_ "github.com/duckdb/duckdb-go/v2" // DuckDB reads the planned files

	"github.com/weirlabs/weir/internal/objstore/miniotest"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/sink/iceberg"
)

// TestIcebergEndToEnd serves with Iceberg on, pushes records in two
// hours through the ingest API and checks that the stream's table,
// planned by iceberg-go and every planned file read by DuckDB's
// read_parquet, holds exactly the rows SQL through weir returns; again
// after more records, and after a restart.
func TestIcebergEndToEnd(t *testing.T) {
	data := t.TempDir()
	mutate := func(c *config) {
		c.Sink.MaxFileAge = 100 * time.Millisecond
		c.Iceberg.Enabled = true
	}
	s := startServer(t, data, mutate)
	ingest, _ := newClients(s.url)
	h0 := time.Now().Add(-30 * time.Hour).UTC().Truncate(time.Hour)
	pushed := 0
	push := func(n int) {
		t.Helper()
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord("line " + strconv.Itoa(pushed+i))
			recs[i].TimeUnixNano = uint64(h0.Add(time.Duration(pushed+i) * time.Minute).UnixNano())
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
		pushed += n
	}

	cfg := iceberg.DefaultConfig()
	cfg.Warehouse = filepath.Join(data, "iceberg")
	compare := func(url string) { t.Helper(); compareTable(t, cfg, url, pushed) }

	push(40)
	push(50) // into the second hour
	compare(s.url)
	push(10)
	compare(s.url)
	if v := metricValue(t, s.url, "weir_iceberg_files_added_total"); v < 2 {
		t.Errorf("weir_iceberg_files_added_total = %v", v)
	}

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, mutate)
	ingest, _ = newClients(s.url)
	compare(s.url)
	push(5)
	compare(s.url)
}

// compareTable waits until the app table of cfg's catalog plans as many
// records as were pushed, then reads every planned file with DuckDB's
// read_parquet (objects in a bucket are fetched through iceberg-go's IO
// first: this DuckDB has no httpfs) and compares the rows with what SQL
// through weir at url returns.
func compareTable(t *testing.T, cfg iceberg.Config, url string, pushed int) {
	t.Helper()
	waitCount(t, url, "SELECT count(*) FROM app", int64(pushed))
	var locs []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rows int64
		locs, rows = plannedFiles(t, cfg, "app")
		if rows == int64(pushed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the table plans %d records after 30 s, want %d", rows, pushed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dir := t.TempDir()
	quoted := make([]string, len(locs))
	for i, loc := range locs {
		p := fetch(t, cfg.IO, loc, dir)
		quoted[i] = "'" + strings.ReplaceAll(p, "'", "''") + "'"
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := "SELECT _partition, _offset, body, epoch_ns(timestamp) FROM read_parquet([" + strings.Join(quoted, ",") + "]) ORDER BY 1, 2"
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var fromTable []string
	for rows.Next() {
		var part, off, ns int64
		var body string
		if err := rows.Scan(&part, &off, &body, &ns); err != nil {
			t.Fatal(err)
		}
		fromTable = append(fromTable, fmt.Sprintf("%d/%d %s %d", part, off, body, ns))
	}
	rows.Close()
	var fromSQL []string
	for _, r := range mustSQL(t, url, "SELECT _partition, _offset, body, epoch_ns(timestamp) AS ns FROM app ORDER BY 1, 2").Rows {
		fromSQL = append(fromSQL, fmt.Sprintf("%v/%v %v %v", r["_partition"], r["_offset"], r["body"], r["ns"]))
	}
	if len(fromTable) != pushed || strings.Join(fromTable, "\n") != strings.Join(fromSQL, "\n") {
		t.Fatalf("the Iceberg table's %d rows differ from SQL's %d (pushed %d):\ntable: %v\nsql:   %v", len(fromTable), len(fromSQL), pushed, fromTable, fromSQL)
	}
}

// plannedFiles plans a scan of a stream's table with iceberg-go and
// returns the files' locations and the records they hold.
func plannedFiles(t *testing.T, cfg iceberg.Config, stream string) ([]string, int64) {
	t.Helper()
	cat, err := iceberg.OpenCatalog(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.LoadTable(context.Background(), iceberg.Ident("default", stream))
	if err != nil {
		return nil, 0 // not created yet
	}
	tasks, err := tbl.Scan().PlanFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var locs []string
	var rows int64
	for _, task := range tasks {
		locs = append(locs, task.File.FilePath())
		rows += task.File.Count()
	}
	return locs, rows
}

// fetch returns a local path of the data file at loc: its path for a
// file:// URI, else a copy in dir read through iceberg-go's IO.
func fetch(t *testing.T, props map[string]string, loc, dir string) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme == "file" {
		return u.Path
	}
	fs, err := iceio.LoadFS(context.Background(), props, loc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open(loc)
	if err != nil {
		t.Fatalf("open %s: %v", loc, err)
	}
	defer f.Close()
	p := filepath.Join(dir, path.Base(u.Path))
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := stdio.Copy(out, f); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIcebergS3EndToEnd: with the lake in a real S3-compatible server
// (MinIO), the table's metadata is in the bucket beside it and its data
// files are the uploaded objects; DuckDB reads every planned object
// with the rows SQL returns.
func TestIcebergS3EndToEnd(t *testing.T) {
	srv := miniotest.Start(t)
	s3 := s3Config{Endpoint: srv.Endpoint, Region: "us-east-1", PathStyle: true,
		AccessKeyID: miniotest.User, SecretAccessKey: miniotest.Password}
	s := startServer(t, "", func(c *config) {
		c.Sink.MaxFileAge = 100 * time.Millisecond
		c.Sink.Lake = "s3://" + srv.Bucket + "/weir/lake"
		c.Sink.S3 = s3
		c.Iceberg.Enabled = true
	})
	ingest, _ := newClients(s.url)
	pushed := 0
	for _, n := range []int{40, 25} {
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord("line " + strconv.Itoa(pushed+i))
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
		pushed += n
	}
	cfg := iceberg.DefaultConfig()
	cfg.Warehouse, cfg.IO = "s3://"+srv.Bucket+"/weir/lake/_iceberg", s3IO(s3)
	compareTable(t, cfg, s.url, pushed)
	locs, _ := plannedFiles(t, cfg, "app")
	for _, loc := range locs {
		if !strings.HasPrefix(loc, "s3://"+srv.Bucket+"/weir/lake/tenant=default/stream=app/") {
			t.Fatalf("data file at %s", loc)
		}
	}
	if keys := srv.Keys(t, "weir/lake/_iceberg/default/app/metadata/"); len(keys) == 0 {
		t.Fatal("no table metadata in the bucket")
	}
}

// TestIcebergReadyDetail: once three passes in a row failed, /readyz
// says so in details.iceberg and stays ready; a successful pass clears
// it.
func TestIcebergReadyDetail(t *testing.T) {
	t.Parallel()
	cat := &downCatalog{}
	cat.down.Store(true)
	r, err := iceberg.New(iceberg.DefaultConfig(), emptyLake{}, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	ready := &readiness{}
	ready.addDetail("iceberg", icebergDetail(r))
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		ready.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body struct {
			Ready   bool              `json:"ready"`
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !body.Ready {
			t.Fatalf("/readyz = %d %s", rec.Code, rec.Body)
		}
		return rec.Code, body.Details["iceberg"]
	}
	for i := range 3 {
		if code, d := get(); code != http.StatusOK || d != "" {
			t.Fatalf("after %d failed passes: %d %q", i, code, d)
		}
		if err := r.Sync(context.Background()); err == nil {
			t.Fatal("a pass with the catalog down succeeded")
		}
	}
	if code, d := get(); code != http.StatusOK || !strings.Contains(d, "3 Iceberg passes in a row failed") || !strings.Contains(d, "catalog unreachable") {
		t.Fatalf("after 3 failed passes: %d %q", code, d)
	}
	cat.down.Store(false)
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, d := get(); d != "" {
		t.Fatalf("after a good pass: %q", d)
	}
}

// downCatalog is a catalog without tables that fails while down.
type downCatalog struct {
	catalog.Catalog
	down atomic.Bool
}

func (c *downCatalog) ListNamespaces(context.Context, table.Identifier) ([]table.Identifier, error) {
	if c.down.Load() {
		return nil, errors.New("catalog unreachable")
	}
	return nil, nil
}

type emptyLake struct{}

func (emptyLake) CommittedFiles() []sink.FileInfo { return nil }

// TestIcebergCatalogDown: with a REST catalog that cannot be reached,
// weir starts and ingests, and /readyz, still ready, says the Iceberg
// passes fail.
func TestIcebergCatalogDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	s := startServer(t, "", func(c *config) {
		c.Sink.MaxFileAge = 100 * time.Millisecond
		c.Iceberg.Enabled, c.Iceberg.Catalog, c.Iceberg.URI, c.Iceberg.Interval = true, "rest", down, 200*time.Millisecond
	})
	ingest, _ := newClients(s.url)
	if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{textRecord("hello")}})); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Ready   bool              `json:"ready"`
			Details map[string]string `json:"details"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if body.Ready && strings.Contains(body.Details["iceberg"], "Iceberg passes in a row failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after 30 s: %+v", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := metricValue(t, s.url, "weir_iceberg_failures_total"); v < 3 {
		t.Errorf("weir_iceberg_failures_total = %v", v)
	}
}

// TestIcebergConfigValidate: iceberg settings are checked at start-up
// when Iceberg is on, and the defaults are valid.
func TestIcebergConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*icebergConfig)
		ok     bool
	}{
		{"defaults", func(*icebergConfig) {}, true},
		{"off ignores the rest", func(c *icebergConfig) { c.Enabled, c.Catalog = false, "glue" }, true},
		{"unknown catalog", func(c *icebergConfig) { c.Catalog = "glue" }, false},
		{"rest without uri", func(c *icebergConfig) { c.Catalog = "rest" }, false},
		{"rest", func(c *icebergConfig) { c.Catalog, c.URI, c.Token = "rest", "https://catalog.example.com", "t" }, true},
		{"rest with credential and token", func(c *icebergConfig) {
			c.Catalog, c.URI, c.Credential, c.Token = "rest", "https://catalog.example.com", "id:secret", "t"
		}, false},
		{"hadoop warehouse in s3", func(c *icebergConfig) { c.Warehouse = "s3://bucket/prefix/_iceberg" }, true},
		{"hadoop warehouse elsewhere", func(c *icebergConfig) { c.Warehouse = "gs://bucket/x" }, false},
		{"zero interval", func(c *icebergConfig) { c.Interval = 0 }, false},
		{"no snapshots kept", func(c *icebergConfig) { c.KeepSnapshots = 0 }, false},
	} {
		c := defaultConfig()
		if tc.name != "off ignores the rest" {
			c.Iceberg.Enabled = true
		}
		tc.mutate(&c.Iceberg)
		if err := c.validate(); (err == nil) != tc.ok {
			t.Errorf("%s: validate = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

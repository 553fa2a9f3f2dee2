package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	_ "github.com/duckdb/duckdb-go/v2" // DuckDB reads the exported files back

	"github.com/weirlabs/weir/internal/objstore/miniotest"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestExportEndToEnd pushes records in three hours and exports two of
// them with weir export in each format: DuckDB reads every export back
// with the records expected, the Parquet files in date=/hour=
// directories; a predicate filters; what is not a predicate, an unknown
// stream and a destination other than a directory or s3:// are refused.
func TestExportEndToEnd(t *testing.T) {
	s := startServer(t, "", func(c *config) { c.Sink.MaxFileAge = 100 * time.Millisecond })
	ingest, _ := newClients(s.url)
	h0 := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Hour)
	// Hour h0: 40 records, every fourth an ERROR; h0+1h: 25; h0+2h: 10
	// (outside the export's range).
	counts := []int{40, 25, 10}
	for h, n := range counts {
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord("hour " + strconv.Itoa(h) + " line " + strconv.Itoa(i))
			recs[i].TimeUnixNano = uint64(h0.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second).UnixNano())
			if i%4 == 0 {
				recs[i].SeverityText = "ERROR"
			}
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 75)

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	readBack := func(q string) map[string]int64 {
		t.Helper()
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		out := map[string]int64{}
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				t.Fatal(err)
			}
			out[k] = n
		}
		return out
	}
	from, to := h0.Format(time.RFC3339), h0.Add(2*time.Hour).Format(time.RFC3339)
	day, hour0, hour1 := h0.Format("2006-01-02"), h0.Format("15"), h0.Add(time.Hour).Format("15")
	key0 := day + "/" + hour0
	key1 := h0.Add(time.Hour).Format("2006-01-02") + "/" + hour1
	export := func(format string, extra ...string) string {
		t.Helper()
		dest := filepath.Join(t.TempDir(), "out")
		args := append([]string{"export", "--server", s.url, "--stream", "app", "--from", from, "--to", to, "--format", format, "--dest", dest}, extra...)
		out, err := runWeir(t, args...)
		if err != nil {
			t.Fatalf("weir %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, "exported") {
			t.Errorf("weir export said %q", out)
		}
		return dest
	}
	perHour := func(reader, dest, ext string) string {
		return "SELECT strftime(\"date\", '%Y-%m-%d') || '/' || lpad(\"hour\"::VARCHAR, 2, '0'), count(*) FROM " + reader + "('" +
			filepath.Join(dest, "*", "*", "*."+ext) + "', hive_partitioning = true, hive_types = {'date': DATE, 'hour': INTEGER}) GROUP BY 1"
	}

	// Parquet, Hive-partitioned, every column of the view but date and
	// hour (which the directories carry).
	dest := export("parquet")
	got := readBack(perHour("read_parquet", dest, "parquet"))
	if len(got) != 2 || got[key0] != 40 || got[key1] != 25 {
		t.Errorf("parquet export per hour: %v, want %s: 40, %s: 25", got, key0, key1)
	}
	if _, err := os.Stat(filepath.Join(dest, "date="+day, "hour="+hour0, "part-0.parquet")); err != nil {
		t.Errorf("parquet file not in the hive layout: %v", err)
	}
	got = readBack("SELECT body, count(*) FROM read_parquet('" + filepath.Join(dest, "**", "*.parquet") + "') WHERE body IN ('hour 0 line 0', 'hour 1 line 24') AND stream = 'app' AND _offset >= 0 AND severity_text IS NOT NULL GROUP BY 1")
	if got["hour 0 line 0"] != 1 || got["hour 1 line 24"] != 1 {
		t.Errorf("parquet export rows: %v", got)
	}

	// CSV and JSON lines, filtered.
	dest = export("csv", "--where", "severity_text = 'ERROR'")
	if got := readBack(perHour("read_csv", dest, "csv")); got[key0] != 10 || got[key1] != 7 {
		t.Errorf("csv export of errors per hour: %v, want 10 and 7", got)
	}
	dest = export("jsonl")
	if got := readBack(perHour("read_json", dest, "jsonl")); got[key0] != 40 || got[key1] != 25 {
		t.Errorf("jsonl export per hour: %v", got)
	}
	if got := readBack("SELECT body, count(*) FROM read_json('" + filepath.Join(dest, "*", "*", "*.jsonl") + "') WHERE body = 'hour 1 line 3' GROUP BY 1"); got["hour 1 line 3"] != 1 {
		t.Errorf("jsonl export rows: %v", got)
	}

	// Refusals.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--where", "true) UNION SELECT * FROM app WHERE (true"}, "predicate"},
		{[]string{"--where", "body IN (SELECT content FROM read_text('/etc/passwd'))"}, "not allowed"},
		{[]string{"--stream", "nope"}, "not_found"},
		{[]string{"--dest", "ftp://host/dir"}, "not supported"},
		{[]string{"--dest", "s3:///no-bucket"}, "want s3://bucket"},
		{[]string{"--format", "xml"}, "unknown --format"},
	} {
		args := []string{"export", "--server", s.url, "--stream", "app", "--from", from, "--to", to, "--dest", filepath.Join(t.TempDir(), "x")}
		args = append(args, c.args...)
		out, err := runWeir(t, args...)
		if err == nil || !strings.Contains(err.Error()+out, c.want) {
			t.Errorf("weir %v: %v %s; want an error saying %q", c.args, err, out, c.want)
		}
	}
}

func TestParseExportTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"now":                  now,
		"-7d":                  now.Add(-7 * 24 * time.Hour),
		"-36h":                 now.Add(-36 * time.Hour),
		"2026-01-02":           time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		"2026-01-02T03":        time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC),
		"2026-01-02T03:04:05Z": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTime("yesterday", now); err == nil {
		t.Error("parseTime accepted yesterday")
	}
}

// TestExportS3 exports into a prefix of a real S3-compatible bucket
// (MinIO): the objects are in the Hive layout, DuckDB reads them back
// (downloaded) with the records expected, and a second export under the
// same prefix is refused rather than overwriting.
func TestExportS3(t *testing.T) {
	srv := miniotest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.Password)
	s := startServer(t, "", func(c *config) { c.Sink.MaxFileAge = 100 * time.Millisecond })
	ingest, _ := newClients(s.url)
	h0 := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Hour)
	for h, n := range []int{30, 12} {
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord("hour " + strconv.Itoa(h) + " line " + strconv.Itoa(i))
			recs[i].TimeUnixNano = uint64(h0.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second).UnixNano())
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 42)

	args := []string{"export", "--server", s.url, "--stream", "app", "--from", h0.Format(time.RFC3339), "--to", h0.Add(2 * time.Hour).Format(time.RFC3339),
		"--dest", "s3://" + srv.Bucket + "/exports/app", "--s3-endpoint", srv.Endpoint, "--s3-region", "us-east-1", "--s3-path-style"}
	out, err := runWeir(t, args...)
	if err != nil {
		t.Fatalf("weir export to S3: %v\n%s", err, out)
	}
	if !strings.Contains(out, "exported 42 records") {
		t.Errorf("weir export said %q", out)
	}
	keys := srv.Keys(t, "exports/app/")
	day := func(h int) string { return h0.Add(time.Duration(h) * time.Hour).Format("2006-01-02") }
	hour := func(h int) string { return h0.Add(time.Duration(h) * time.Hour).Format("15") }
	for h := range 2 {
		k := "exports/app/date=" + day(h) + "/hour=" + hour(h) + "/part-0.parquet"
		if _, ok := keys[k]; !ok {
			t.Fatalf("object %s missing; the bucket has %v", k, keys)
		}
	}
	if len(keys) != 2 {
		t.Fatalf("objects %v, want two", keys)
	}
	// Download the objects as they are and read them with DuckDB.
	local := t.TempDir()
	st := srv.Store(t)
	for k := range keys {
		path := filepath.Join(local, filepath.FromSlash(strings.TrimPrefix(k, "exports/app/")))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := st.Get(context.Background(), k, path); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT \"hour\", count(*), count(DISTINCT body) FROM read_parquet('" + filepath.Join(local, "*", "*", "*.parquet") +
		"', hive_partitioning = true, hive_types = {'date': DATE, 'hour': INTEGER}) GROUP BY 1 ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string][2]int{}
	for rows.Next() {
		var hr, n, distinct int
		if err := rows.Scan(&hr, &n, &distinct); err != nil {
			t.Fatal(err)
		}
		got[fmt.Sprintf("%02d", hr)] = [2]int{n, distinct}
	}
	if got[hour(0)] != [2]int{30, 30} || got[hour(1)] != [2]int{12, 12} {
		t.Errorf("records per hour read back: %v, want %s: 30, %s: 12", got, hour(0), hour(1))
	}

	// The same export again: the objects exist, nothing is overwritten.
	if out, err := runWeir(t, args...); err == nil || !strings.Contains(err.Error()+out, "exists") {
		t.Errorf("a second export under the same prefix: %v %s; want an error saying it exists", err, out)
	}
	if after := srv.Keys(t, "exports/app/"); len(after) != 2 {
		t.Errorf("objects after the refused export: %v", after)
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

func countLines(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var n int64
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// readCSV returns every row of a CSV file, the header first.
func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// csvColumnCounts counts the values of one column of a Loghub structured CSV.
func csvColumnCounts(t *testing.T, path, column string) map[string]int64 {
	t.Helper()
	rows := readCSV(t, path)
	col := -1
	for i, name := range rows[0] {
		if name == column {
			col = i
		}
	}
	if col < 0 {
		t.Fatalf("%s has no column %q", path, column)
	}
	out := map[string]int64{}
	for _, r := range rows[1:] {
		out[r[col]]++
	}
	return out
}

func equalCounts(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s[%q] = %d, want %d", what, k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s[%q] = %d, want none", what, k, g)
		}
	}
}

// TestLoghubEndToEnd is the tour of the README: push the 16 Loghub samples
// with `weir push`, query them while they are only in memory, stop the
// server, find them in Parquet, and query them again after a restart.
func TestLoghubEndToEnd(t *testing.T) {
	s := startServer(t, "", nil)
	files, err := filepath.Glob(filepath.Join(loghubDir, "*_2k.log"))
	if err != nil || len(files) != 16 {
		t.Fatalf("want the 16 Loghub samples in %s, found %d (%v)", loghubDir, len(files), err)
	}
	want := map[string]int64{}
	var total int64
	for _, f := range files {
		stream := strings.ToLower(strings.TrimSuffix(filepath.Base(f), "_2k.log"))
		want[stream] = countLines(t, f)
		total += want[stream]
		out, err := runWeir(t, "push", "--server", s.url, "--stream", stream, "--batch", "500", "--guess-severity", f)
		if err != nil {
			t.Fatalf("push %s: %v: %s", f, err, out)
		}
		if !strings.Contains(out, "pushed ") {
			t.Fatalf("push output: %q", out)
		}
	}
	// Nothing has been published yet (files are published after a
	// minute), so these answers come from the records in memory.
	waitCount(t, s.url, "SELECT count(*) FROM logs", total)
	if n := len(lakeFiles(t, s.data)); n != 0 {
		t.Logf("note: %d Parquet files already published", n)
	}
	equalCounts(t, "count by stream (memory)", countBy(t, s.url, "SELECT stream, count(*) FROM logs GROUP BY 1"), want)

	hdfsLevels := csvColumnCounts(t, filepath.Join(loghubDir, "HDFS_2k.log_structured.csv"), "Level")
	equalCounts(t, "HDFS severity", countBy(t, s.url, "SELECT severity_text, count(*) FROM hdfs GROUP BY 1"), hdfsLevels)
	sevNum := countBy(t, s.url, "SELECT severity_number, count(*) FROM hdfs GROUP BY 1")
	equalCounts(t, "HDFS severity number", sevNum, map[string]int64{"9": hdfsLevels["INFO"], "13": hdfsLevels["WARN"]})

	// Offsets are contiguous per stream partition.
	res := mustSQL(t, s.url, "SELECT count(*) AS n FROM logs GROUP BY stream HAVING max(_offset) - min(_offset) + 1 <> count(*) OR count(DISTINCT _offset) <> count(*)")
	if len(res.Rows) != 0 {
		t.Errorf("streams with non-contiguous offsets: %v", res.Rows)
	}

	// The CLI query prints a table.
	out, err := runWeir(t, "query", "--server", s.url, "SELECT count(*) AS n FROM logs")
	if err != nil || !strings.Contains(out, strconv.FormatInt(total, 10)) {
		t.Errorf("weir query: %v: %q", err, out)
	}

	// Stopping drains everything into Parquet.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	paths := lakeFiles(t, s.data)
	if len(paths) < 16 {
		t.Fatalf("after shutdown: %d Parquet files, want at least one per stream", len(paths))
	}
	for _, p := range paths {
		rel, _ := filepath.Rel(filepath.Join(s.data, "lake"), p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 5 || parts[0] != "tenant=default" || !strings.HasPrefix(parts[1], "stream=") ||
			!strings.HasPrefix(parts[2], "date=") || !strings.HasPrefix(parts[3], "hour=") {
			t.Errorf("file %s is not in the lake layout", rel)
		}
	}
	byStream := readLakeCounts(t, paths)
	equalCounts(t, "rows in Parquet by stream", byStream, want)

	// A restart finds the files and serves the same answers from Parquet.
	s2 := startServer(t, s.data, nil)
	// A second server on the same data directory is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.Data = s.data
	if err := serve(context.Background(), cfg, ln, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second server on the same data dir: %v", err)
	}
	equalCounts(t, "count by stream (Parquet)", countBy(t, s2.url, "SELECT stream, count(*) FROM logs GROUP BY 1"), want)
	equalCounts(t, "HDFS severity (Parquet)", countBy(t, s2.url, "SELECT severity_text, count(*) FROM hdfs GROUP BY 1"), hdfsLevels)

	// New records continue the offsets of the published ones.
	out, err = runWeir(t, "push", "--server", s2.url, "--stream", "hdfs", "--guess-severity", filepath.Join(loghubDir, "HDFS_2k.log"))
	if err != nil {
		t.Fatalf("second push: %v: %s", err, out)
	}
	waitCount(t, s2.url, "SELECT count(*) FROM hdfs", 2*want["hdfs"])
	res = mustSQL(t, s2.url, "SELECT count(*) AS n, count(DISTINCT _offset) AS d, max(_offset) AS m FROM hdfs")
	if n, d, m := res.Rows[0]["n"], res.Rows[0]["d"], res.Rows[0]["m"]; n != d || fmt.Sprint(m) != strconv.FormatInt(2*want["hdfs"]-1, 10) {
		t.Errorf("after restart and push: count %v, distinct offsets %v, max offset %v", n, d, m)
	}
}

// TestVisibleBeforePublish: an acknowledged record becomes visible to
// SQL from memory, before any Parquet file is published. How soon is a
// speed goal, measured by `weir bench` (freshness) and recorded in
// bench/RESULTS.md.
func TestVisibleBeforePublish(t *testing.T) {
	s := startServer(t, "", nil)
	ingest, _ := newClients(s.url)
	if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{
		Stream: "fresh", Records: []*weirv1.LogRecord{textRecord("fresh record")},
	})); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	waitCount(t, s.url, "SELECT count(*) FROM fresh", 1)
	t.Logf("visible %s after the ack", time.Since(acked))
	res := mustSQL(t, s.url, "SELECT body FROM fresh")
	if len(res.Rows) != 1 || res.Rows[0]["body"] != "fresh record" {
		t.Fatalf("visible: %v", res.Rows)
	}
	if n := len(lakeFiles(t, s.data)); n != 0 {
		t.Fatalf("%d Parquet files published; the record should have come from memory", n)
	}
}

// pushErr returns the Connect code of a push of recs to stream.
func pushErr(t *testing.T, url, stream string, recs ...*weirv1.LogRecord) error {
	t.Helper()
	ingest, _ := newClients(url)
	_, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: stream, Records: recs}))
	return err
}

func wantCode(t *testing.T, what string, err error, code connect.Code) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %s", what, code)
		return
	}
	if got := connect.CodeOf(err); got != code {
		t.Errorf("%s: code %s (%v), want %s", what, got, err, code)
	}
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Message() == "" {
		t.Errorf("%s: error without a message", what)
	}
}

// TestPartitionPruning checks that a time-range query with the date
// condition the UI adds reads only the files of the days it covers, as
// EXPLAIN ANALYZE shows, while timestamp conditions alone still get the
// right answer.
func TestPartitionPruning(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, nil)
	day := func(d int) uint64 { return uint64(time.Date(2026, 1, d, 12, 0, 0, 0, time.UTC).UnixNano()) }
	for d := 1; d <= 4; d++ {
		if err := pushErr(t, s.url, "app", &weirv1.LogRecord{Body: fmt.Sprint("day ", d), TimeUnixNano: day(d)}); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 4)
	if err := s.stop(); err != nil { // publishes every file
		t.Fatal(err)
	}
	s = startServer(t, data, nil)
	const where = `timestamp >= '2026-01-02 00:00:00+00' AND timestamp < '2026-01-03 00:00:00+00'`
	for _, c := range []struct {
		cond  string
		files string
	}{
		// As the UI writes it: the range's end is exclusive, but its date
		// is included, so the files of two days are read.
		{where + ` AND date BETWEEN '2026-01-02'::DATE AND '2026-01-03'::DATE`, "Total Files Read: 2"},
		{where + ` AND date = '2026-01-02'::DATE`, "Total Files Read: 1"},
		{where, "Total Files Read: 4"},
	} {
		waitCount(t, s.url, "SELECT count(*) FROM app WHERE "+c.cond, 1)
		res := mustSQL(t, s.url, "EXPLAIN ANALYZE SELECT count(*) FROM app WHERE "+c.cond)
		plan := fmt.Sprint(res.Rows)
		if !strings.Contains(plan, c.files) {
			t.Errorf("%s: the plan does not say %q:\n%s", c.cond, c.files, plan)
		}
	}
}

package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weirlabs/weir/bench"
)

// TestBenchCmdQueries loads a stream with weir bench, then times the
// dashboard queries over it with --duration 0 and checks their answers
// against the stream's contents.
func TestBenchCmdQueries(t *testing.T) {
	s := startServer(t, "", nil)
	out, err := runWeir(t, "bench", "--server", s.url, "--duration", "1s", "--rate", "5000",
		"--concurrency", "2", "--batch", "100", "--stream", "dash", "--queries", "1", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var first struct {
		Load    *bench.Report     `json:"load"`
		Queries bench.QueryReport `json:"queries"`
	}
	if err := json.Unmarshal([]byte(out), &first); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if first.Load == nil {
		t.Fatalf("no load report: %s", out)
	}
	checkReport(t, *first.Load)
	acked := first.Load.Records

	// Once every acknowledged record is visible, the queries alone.
	deadline := time.Now().Add(10 * time.Second)
	for countBy(t, s.url, "SELECT 'all', count(*) FROM dash")["all"] < acked {
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged records not visible after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err = runWeir(t, "bench", "--server", s.url, "--duration", "0", "--stream", "dash", "--queries", "3", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var second struct {
		Load    *bench.Report     `json:"load"`
		Queries bench.QueryReport `json:"queries"`
	}
	if err := json.Unmarshal([]byte(out), &second); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if second.Load != nil {
		t.Errorf("--duration 0 sent load: %+v", second.Load)
	}
	q := second.Queries
	if q.Stream != "dash" || q.StreamRows != acked {
		t.Errorf("stream %q with %d rows; want dash with %d", q.Stream, q.StreamRows, acked)
	}
	services := countBy(t, s.url, "SELECT 'n', count(DISTINCT service_name) FROM dash")["n"]
	traced := countBy(t, s.url, "SELECT 'n', count(*) FROM dash WHERE trace_id IS NOT NULL")["n"]
	if traced == 0 {
		t.Fatal("the synthetic source sent no trace ids")
	}
	want := map[string]func(rows int) bool{
		"severity_histogram": func(n int) bool { return n >= 1 },
		"top_services":       func(n int) bool { return int64(n) == min(services, 10) },
		"top_messages":       func(n int) bool { return n == 10 },
		"trace_lookup":       func(n int) bool { return n >= 1 },
		"search":             func(n int) bool { return n >= 0 && n <= 100 },
	}
	for _, qt := range q.Queries {
		ok, known := want[qt.Name]
		if !known {
			t.Errorf("unexpected query %q", qt.Name)
			continue
		}
		delete(want, qt.Name)
		if !ok(qt.Rows) {
			t.Errorf("%s answered %d rows", qt.Name, qt.Rows)
		}
		if qt.Runs != 3 || qt.P50Ms <= 0 || qt.P50Ms > qt.MaxMs {
			t.Errorf("%s timing %+v", qt.Name, qt)
		}
	}
	for name := range want {
		t.Errorf("query %s missing", name)
	}

	// The table names every query.
	out, err = runWeir(t, "bench", "--server", s.url, "--duration", "0", "--stream", "dash", "--queries", "1")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, qd := range bench.DashboardQueries {
		if !strings.Contains(out, qd.Name) {
			t.Errorf("table lacks %s:\n%s", qd.Name, out)
		}
	}

	for _, args := range [][]string{
		{"--queries", "-1"},
		{"--queries", "1", "--ceiling"},
		{"--queries", "1", "--peer", "http://127.0.0.1:1/insert/jsonline"},
	} {
		out, err := runWeir(t, append([]string{"bench", "--server", s.url}, args...)...)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: err %v, want usage error: %s", args, err, out)
		}
	}
}

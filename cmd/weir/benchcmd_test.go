package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirlabs/weir/bench"
)

// checkReport fails the test unless rep shows acknowledged records,
// ordered latency percentiles and no errors.
func checkReport(t *testing.T, rep bench.Report) {
	t.Helper()
	if rep.Records == 0 || rep.Batches == 0 || rep.RecordsPerSecond <= 0 || rep.BodyBytes == 0 {
		t.Errorf("nothing acknowledged: %+v", rep)
	}
	if l := rep.AckLatency; l.Samples == 0 || l.P50Ms <= 0 || l.P50Ms > l.P99Ms || l.P99Ms > l.P999Ms {
		t.Errorf("ack latency %+v", l)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
}

func TestBenchCmdServer(t *testing.T) {
	s := startServer(t, "", nil)
	out, err := runWeir(t, "bench", "--server", s.url, "--duration", "2s", "--rate", "5000",
		"--concurrency", "2", "--batch", "100", "--stream", "benchtest", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	checkReport(t, rep)
	if f := rep.Freshness; f == nil || f.Seen == 0 || f.P50Ms > f.P99Ms {
		t.Errorf("freshness %+v", f)
	}
	if rep.ServerCPUSeconds == nil || rep.ServerPeakRSSBytes == nil || *rep.ServerPeakRSSBytes <= 0 {
		t.Errorf("server cpu %v, rss %v", rep.ServerCPUSeconds, rep.ServerPeakRSSBytes)
	}
	// Acknowledged records become visible within moments.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := countBy(t, s.url, "SELECT 'all', count(*) FROM benchtest")["all"]
		if n >= rep.Records {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records in the stream, %d acknowledged", n, rep.Records)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBenchCmdArrow sends the load as Arrow IPC batches to a server with
// each protocol and mode: every acknowledged record becomes queryable,
// with the synthetic source's services and trace ids.
func TestBenchCmdArrow(t *testing.T) {
	s := startServer(t, "", nil)
	for _, c := range []struct{ protocol, mode string }{
		{"connect", "stream"}, {"grpc", "stream"}, {"connect", "unary"}, {"grpc-web", "unary"},
	} {
		stream := "arrow_" + strings.ReplaceAll(c.protocol, "-", "_") + "_" + c.mode
		out, err := runWeir(t, "bench", "--server", s.url, "--format", "arrow", "--protocol", c.protocol, "--mode", c.mode,
			"--duration", "1s", "--rate", "5000", "--concurrency", "2", "--batch", "100", "--stream", stream, "--json")
		if err != nil {
			t.Fatalf("%s: %v: %s", stream, err, out)
		}
		var rep bench.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		checkReport(t, rep)
		if rep.Format != "arrow" || rep.Protocol != c.protocol || rep.Mode != c.mode {
			t.Errorf("report of %s: format %q, protocol %q, mode %q", stream, rep.Format, rep.Protocol, rep.Mode)
		}
		waitCount(t, s.url, "SELECT count(*) FROM "+stream, rep.Records)
		res := mustSQL(t, s.url, "SELECT count(DISTINCT service_name) AS services, count(trace_id) AS traced, count(*) FILTER (WHERE severity_number = 9) AS info FROM "+stream)
		if r := res.Rows[0]; r["services"] != json.Number("8") || r["traced"] == json.Number("0") || r["info"] == json.Number("0") {
			t.Errorf("%s: %v, want 7 services and weir-bench's markers, some trace ids, INFO records", stream, r)
		}
	}
}

func TestBenchCmdCeiling(t *testing.T) {
	t.Parallel()
	out, err := runWeir(t, "bench", "--ceiling", "--duration", "500ms", "--concurrency", "2", "--batch", "100", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	checkReport(t, rep)
	if rep.Freshness != nil {
		t.Errorf("ceiling freshness %+v, want unknown", rep.Freshness)
	}
}

func TestBenchCmdUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"bench", "--protocol", "grpc-web", "--mode", "stream"},
		{"bench", "--ack", "never"},
		{"bench", "--ceiling", "--compare"},
		{"bench", "--format", "csv"},
	} {
		if out, err := runWeir(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want usage error: %s", args, err, out)
		}
	}
}

// TestBenchCmdPeer runs `weir bench --peer` against a server and a
// stand-in JSON-lines endpoint that checks every line it gets: both
// reports count what their side received.
func TestBenchCmdPeer(t *testing.T) {
	s := startServer(t, "", nil)
	var lines, bad atomic.Int64
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/insert/jsonline" {
			http.NotFound(w, r) // no query API: the peer's freshness is unknown
			return
		}
		if r.Header.Get("Content-Type") != bench.JSONLineContentType {
			http.Error(w, "wrong content type", http.StatusBadRequest)
			return
		}
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var v map[string]any
			if json.Unmarshal(sc.Bytes(), &v) != nil || v["_msg"] == nil || v["_time"] == nil {
				bad.Add(1)
				continue
			}
			lines.Add(1)
		}
	}))
	defer peer.Close()
	res := runPeerBench(t, s.url, peer.URL+"/insert/jsonline", "1s")
	if res.Peer.Records != lines.Load() || bad.Load() != 0 {
		t.Errorf("peer report %d records; the peer got %d good and %d bad lines", res.Peer.Records, lines.Load(), bad.Load())
	}
	if res.Peer.Freshness != nil || res.Ratio <= 0 {
		t.Errorf("peer freshness %v, ratio %v", res.Peer.Freshness, res.Ratio)
	}
}

// peerRun is the JSON report of `weir bench --peer`.
type peerRun struct {
	Weir, Peer bench.Report
	Ratio      float64
}

// runPeerBench runs `weir bench --peer` with the HDFS sample for
// duration against the server at url and the peer's ingest URL, and
// checks both reports.
func runPeerBench(t *testing.T, url, peerURL, duration string) peerRun {
	t.Helper()
	out, err := runWeir(t, "bench", "--server", url, "--peer", peerURL, "--duration", duration,
		"--concurrency", "2", "--batch", "100", "--source", filepath.Join(loghubDir, "HDFS_2k.log"), "--stream", "hdfs", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var res peerRun
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	checkReport(t, res.Weir)
	checkReport(t, res.Peer)
	return res
}

// TestBenchCmdPeerVictoriaLogs runs `weir bench --peer` against a real
// VictoriaLogs: the peer's report counts what VictoriaLogs stored, and
// both sides' freshness is measured with markers, weir's through SQL and
// the peer's through LogsQL.
func TestBenchCmdPeerVictoriaLogs(t *testing.T) {
	bin := findTool(t, "victoria-logs")
	s := startServer(t, "", nil)
	vl := startVictoriaLogs(t, bin)
	res := runPeerBench(t, s.url, vl+"/insert/jsonline?_stream_fields=service.name", "2s")
	for name, f := range map[string]*bench.Freshness{"weir": res.Weir.Freshness, "peer": res.Peer.Freshness} {
		if f == nil || f.Markers == 0 || f.Seen != f.Markers || f.Lost != 0 {
			t.Errorf("%s freshness %+v, want every marker seen", name, f)
		}
	}
	// What VictoriaLogs stored: every acknowledged record, visible once
	// it has made them searchable.
	waitUntil(t, 30*time.Second, "VictoriaLogs to show the acknowledged records", func() bool {
		n, err := victoriaLogsCount(vl)
		return err == nil && n == res.Peer.Records
	})
}

// startVictoriaLogs runs VictoriaLogs from bin on a loopback port with its
// data in a temporary directory and returns its URL once it is healthy.
func startVictoriaLogs(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	url := "http://" + freeAddr(t)
	cmd := exec.Command(bin, "-storageDataPath", filepath.Join(dir, "data"), "-httpListenAddr", strings.TrimPrefix(url, "http://"))
	startChild(t, "VictoriaLogs", cmd, filepath.Join(dir, "victoria-logs.log"), url+"/health")
	return url
}

// victoriaLogsCount returns how many records VictoriaLogs at url shows.
func victoriaLogsCount(url string) (int64, error) {
	resp, err := http.PostForm(url+"/select/logsql/query", map[string][]string{"query": {"* | stats count() as n"}})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var row struct {
		N string `json:"n"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&row); err != nil {
		return 0, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return strconv.ParseInt(row.N, 10, 64)
}

// TestBenchCmdShipperProtocols loads a server through OTLP/HTTP and its
// JSON-lines endpoint: every acknowledged record is queryable in the
// stream the bench names, with the source's services and severities.
// The OTLP run measures freshness through its markers by default, a
// JSON-lines run only when asked (--freshness sql: weir's /v1/sql at the
// root of the ingest URL's host).
func TestBenchCmdShipperProtocols(t *testing.T) {
	s := startServer(t, "", nil)
	for _, c := range []struct {
		protocol, server, freshness string
		measured                    bool
	}{
		{"otlp", s.url, "", true},
		{"jsonline", s.url + "/insert/jsonline?_stream_fields=service.name", "", false},
		{"jsonline", s.url + "/insert/jsonline?_stream_fields=service.name", "sql", true},
	} {
		stream := "bench_" + c.protocol + c.freshness
		args := []string{"bench", "--server", c.server, "--protocol", c.protocol,
			"--duration", "1s", "--rate", "5000", "--concurrency", "2", "--batch", "100", "--stream", stream, "--json"}
		if c.freshness != "" {
			args = append(args, "--freshness", c.freshness)
		}
		out, err := runWeir(t, args...)
		if err != nil {
			t.Fatalf("%s: %v: %s", c.protocol, err, out)
		}
		var rep bench.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		checkReport(t, rep)
		if rep.Protocol != c.protocol || rep.ServerCPUSeconds == nil {
			t.Errorf("%s report: protocol %q, server cpu %v", c.protocol, rep.Protocol, rep.ServerCPUSeconds)
		}
		switch f := rep.Freshness; {
		case c.measured && (f == nil || f.Seen == 0 || f.Seen != f.Markers):
			t.Errorf("%s --freshness %q: freshness %+v, want every marker seen", c.protocol, c.freshness, f)
		case !c.measured && f != nil:
			t.Errorf("%s --freshness %q: freshness %+v, want none measured", c.protocol, c.freshness, f)
		}
		waitCount(t, s.url, "SELECT count(*) FROM "+stream, rep.Records)
		res := mustSQL(t, s.url, "SELECT count(DISTINCT service_name) AS services, count(*) FILTER (WHERE severity_text = 'ERROR') AS errors FROM "+stream)
		if r := res.Rows[0]; r["services"] == json.Number("0") || r["services"] == json.Number("1") || r["errors"] == json.Number("0") {
			t.Errorf("%s: %v, want the source's services and some ERROR records", c.protocol, r)
		}
	}
}

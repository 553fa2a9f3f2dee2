package main

import (
	"encoding/json"
	"errors"
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
	} {
		if out, err := runWeir(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want usage error: %s", args, err, out)
		}
	}
}

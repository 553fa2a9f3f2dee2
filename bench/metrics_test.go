package bench

import (
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	const text = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
process_cpu_seconds_total_other 99
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.23456789e+08
weir_buffer_records{stream="bench"} 7

`
	got, err := parseMetrics(strings.NewReader(text), metricCPU, metricRSS, "weir_buffer_records")
	if err != nil {
		t.Fatal(err)
	}
	if got[metricCPU] != 12.34 || got[metricRSS] != 123456789 {
		t.Errorf("got %v", got)
	}
	if _, ok := got["weir_buffer_records"]; ok {
		t.Errorf("labelled sample parsed: %v", got)
	}
	if len(got) != 2 {
		t.Errorf("got %v, want 2 metrics", got)
	}

	got, err = parseMetrics(strings.NewReader("go_goroutines 3\n"), metricCPU, metricRSS)
	if err != nil || len(got) != 0 {
		t.Errorf("missing metrics: got %v, %v", got, err)
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total abc\n"), metricCPU); err == nil {
		t.Error("bad value: no error")
	}
}

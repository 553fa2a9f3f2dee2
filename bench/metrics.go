package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	metricCPU       = "process_cpu_seconds_total"
	metricRSS       = "process_resident_memory_bytes"
	metricLakeBytes = "weir_lake_bytes"
	metricLakeRows  = "weir_lake_rows"
)

// parseMetrics reads the Prometheus text exposition format and returns the
// values of the wanted metrics that appear without labels. Comments,
// labelled samples and other metrics are skipped; it is just enough for
// the process collector's gauges and counters.
func parseMetrics(r io.Reader, wanted ...string) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name := fields[0]
		for _, w := range wanted {
			if name != w {
				continue
			}
			v, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				return nil, fmt.Errorf("metric %s: %w", name, err)
			}
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// serverSampler polls the server's /metrics for its CPU time and RSS.
type serverSampler struct {
	url string
	hc  *http.Client

	mu       sync.Mutex
	firstCPU float64
	lastCPU  float64
	cpuN     int
	peakRSS  float64
	rssN     int
	lakeB    float64 // published lake at the last sample
	lakeRows float64
}

func (s *serverSampler) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	m, err := parseMetrics(resp.Body, metricCPU, metricRSS, metricLakeBytes, metricLakeRows)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := m[metricCPU]; ok {
		if s.cpuN == 0 {
			s.firstCPU = v
		}
		s.lastCPU = v
		s.cpuN++
	}
	if v, ok := m[metricRSS]; ok {
		s.peakRSS = max(s.peakRSS, v)
		s.rssN++
	}
	if b, ok := m[metricLakeBytes]; ok {
		s.lakeB, s.lakeRows = b, m[metricLakeRows]
	}
}

// diskPerRecord returns the bytes on disk per record of the server's
// published lake at the last sample, nil when unknown or empty.
func (s *serverSampler) diskPerRecord() *float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lakeRows <= 0 {
		return nil
	}
	v := s.lakeB / s.lakeRows
	return &v
}

// run samples every interval until stop is closed, and once more then.
func (s *serverSampler) run(ctx context.Context, interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.sample(ctx)
		case <-stop:
			s.sample(ctx)
			return
		}
	}
}

// result returns the CPU seconds used between the first and last sample
// and the peak RSS, each nil when it could not be measured.
func (s *serverSampler) result() (cpu, rss *float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpuN >= 2 {
		v := s.lastCPU - s.firstCPU
		cpu = &v
	}
	if s.rssN > 0 {
		v := s.peakRSS
		rss = &v
	}
	return cpu, rss
}

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

const (
	// markerInterval is how often a marker record is sent.
	markerInterval = 200 * time.Millisecond
	// probeInterval is the pause between two polls for one marker.
	probeInterval = 20 * time.Millisecond
	// markerTimeout is how long a marker may take to become visible
	// before it counts as not seen.
	markerTimeout = 10 * time.Second
	// probers is the number of markers polled for at once.
	probers = 2
)

// errNoSQL means the server has no /v1/sql endpoint (such as Discard).
var errNoSQL = errors.New("server has no /v1/sql endpoint")

// marker is an acknowledged marker record to look for.
type marker struct {
	body  string
	acked time.Time
}

// prober polls /v1/sql for acknowledged markers and records how long after
// their ack they became visible.
type prober struct {
	url    string
	stream string
	hc     *http.Client
	in     chan marker

	mu          sync.Mutex
	fresh       samples
	acked       int
	dropped     int
	lost        int
	probeErrors int
	noSQL       bool
}

func newProber(server, stream string, hc *http.Client) *prober {
	return &prober{url: server + "/v1/sql", stream: stream, hc: hc, in: make(chan marker, 64)}
}

// offer hands over an acknowledged marker without blocking; when the
// probers are behind, the marker is dropped and counted.
func (p *prober) offer(m marker) {
	p.mu.Lock()
	p.acked++
	p.mu.Unlock()
	select {
	case p.in <- m:
	default:
		p.mu.Lock()
		p.dropped++
		p.mu.Unlock()
	}
}

// run polls for markers until p.in is closed and drained, or ctx ends.
func (p *prober) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range probers {
		wg.Go(func() {
			for m := range p.in {
				p.probe(ctx, m)
			}
		})
	}
	wg.Wait()
}

// probe polls for one marker. Freshness is measured to the start of the
// first poll that sees it, so the poll's own query time is left out; the
// resolution is probeInterval plus the previous poll's duration.
func (p *prober) probe(ctx context.Context, m marker) {
	p.mu.Lock()
	skip := p.noSQL
	p.mu.Unlock()
	if skip {
		return
	}
	deadline := m.acked.Add(markerTimeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		start := time.Now()
		n, err := p.count(ctx, m.body)
		p.mu.Lock()
		switch {
		case errors.Is(err, errNoSQL):
			p.noSQL = true
			p.mu.Unlock()
			return
		case err != nil:
			p.probeErrors++
		case n > 0:
			p.fresh.add(max(start.Sub(m.acked), 0))
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		select {
		case <-time.After(probeInterval):
		case <-ctx.Done():
		}
	}
	p.mu.Lock()
	p.lost++
	p.mu.Unlock()
}

func (p *prober) count(ctx context.Context, body string) (int64, error) {
	// A marker the stream's processors cannot parse is a dead letter;
	// it is just as visible there.
	sql := fmt.Sprintf("SELECT count(*) AS n FROM logs WHERE stream IN ('%s', '_dead_letter') AND body = '%s'", p.stream, body)
	reqBody, _ := json.Marshal(map[string]string{"sql": sql})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(reqBody))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return 0, errNoSQL
	}
	var res struct {
		Rows  []struct{ N int64 } `json:"rows"`
		Error string              `json:"error"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return 0, fmt.Errorf("sql answer %q: %w", raw, err)
	}
	if resp.StatusCode != http.StatusOK || res.Error != "" || len(res.Rows) != 1 {
		return 0, fmt.Errorf("sql: status %d: %s", resp.StatusCode, raw)
	}
	return res.Rows[0].N, nil
}

// Freshness is the time from a marker's ack until SQL sees it.
type Freshness struct {
	// Markers is the number of acknowledged markers; Seen of them became
	// visible within 10 s, Lost did not, Dropped were not polled for
	// because the probers were behind.
	Markers int     `json:"markers"`
	Seen    int     `json:"seen"`
	Lost    int     `json:"lost"`
	Dropped int     `json:"dropped"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	// ProbeErrors counts failed polls (retried).
	ProbeErrors int `json:"probe_errors"`
}

// result returns the freshness figures, or nil when they could not be
// measured (no SQL endpoint, or no marker acknowledged).
func (p *prober) result() *Freshness {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noSQL || p.acked == 0 {
		return nil
	}
	l := summarise(p.fresh.d, p.fresh.seen)
	return &Freshness{
		Markers: p.acked, Seen: p.fresh.seen, Lost: p.lost, Dropped: p.dropped,
		P50Ms: l.P50Ms, P99Ms: l.P99Ms, ProbeErrors: p.probeErrors,
	}
}

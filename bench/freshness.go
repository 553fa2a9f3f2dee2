package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// markerInterval is how often a marker record is sent.
	markerInterval = 200 * time.Millisecond
	// probeInterval is the pause between two polls.
	probeInterval = 100 * time.Millisecond
	// markerTimeout is how long a marker may take to become visible
	// before it counts as not seen.
	markerTimeout = 10 * time.Second
	// maxOutstanding bounds the markers polled for at once; more are
	// dropped (counted) until the server catches up.
	maxOutstanding = 2 * int(markerTimeout/markerInterval)
)

// errNoSQL means the server has no /v1/sql endpoint (such as Discard).
var errNoSQL = errors.New("server has no /v1/sql endpoint")

// marker is an acknowledged marker record to look for.
type marker struct {
	body  string
	ts    time.Time // its timestamp, set by the client
	acked time.Time
}

// prober polls /v1/sql for acknowledged markers and records how long after
// their ack they became visible.
//
// One poll asks for every outstanding marker at once, and only for
// records with a marker's timestamp (set by the client, so clocks need
// not agree): DuckDB skips the other partitions and row groups by their
// statistics and reads bodies only where a timestamp matches, so the
// poll's load on the server stays small and flat as data grows.
type prober struct {
	sql    sqlClient
	stream string
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
	return &prober{sql: sqlClient{url: server + "/v1/sql", hc: hc}, stream: stream, in: make(chan marker, maxOutstanding)}
}

// offer hands over an acknowledged marker without blocking; when the
// prober is behind, the marker is dropped and counted.
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

// run polls for markers until p.in is closed and every marker is seen or
// timed out, or ctx ends. Freshness is measured to the start of the first
// poll that sees a marker, so the poll's own query time is left out; the
// resolution is probeInterval plus the previous poll's duration.
func (p *prober) run(ctx context.Context) {
	var (
		pending []marker
		open    = true
	)
	for ctx.Err() == nil && (open || len(pending) > 0) {
		// Take what has arrived; wait for one marker when idle.
		if len(pending) == 0 && open {
			select {
			case m, ok := <-p.in:
				if !ok {
					open = false
					continue
				}
				pending = append(pending, m)
			case <-ctx.Done():
				return
			}
		}
	drain:
		for open && len(pending) < maxOutstanding {
			select {
			case m, ok := <-p.in:
				if !ok {
					open = false
					break drain
				}
				pending = append(pending, m)
			default:
				break drain
			}
		}
		start := time.Now()
		seen, err := p.poll(ctx, pending)
		p.mu.Lock()
		switch {
		case errors.Is(err, errNoSQL):
			p.noSQL = true
			p.mu.Unlock()
			return
		case err != nil:
			p.probeErrors++
		}
		kept := pending[:0]
		for _, m := range pending {
			switch {
			case seen[m.body]:
				p.fresh.add(max(start.Sub(m.acked), 0))
			case start.Sub(m.acked) > markerTimeout:
				p.lost++
			default:
				kept = append(kept, m)
			}
		}
		pending = kept
		p.mu.Unlock()
		if len(pending) > 0 {
			sleep(ctx, probeInterval)
		}
	}
}

// poll returns which of the markers the server's SQL sees.
func (p *prober) poll(ctx context.Context, ms []marker) (map[string]bool, error) {
	lo, hi := ms[0].ts, ms[0].ts
	var stamps, bodies strings.Builder
	for i, m := range ms {
		lo, hi = minTime(lo, m.ts), maxTime(hi, m.ts)
		if i > 0 {
			stamps.WriteString(", ")
			bodies.WriteString(", ")
		}
		stamps.WriteString(tsLiteral(m.ts))
		bodies.WriteString(quoteSQL(m.body))
	}
	// A marker the stream's processors cannot parse is a dead letter;
	// it is just as visible there.
	sql := fmt.Sprintf(`SELECT DISTINCT body FROM logs WHERE stream IN (%s, '_dead_letter') AND "date" BETWEEN DATE '%s' AND DATE '%s' AND "timestamp" IN (%s) AND body IN (%s)`,
		quoteSQL(p.stream), lo.UTC().Format(time.DateOnly), hi.UTC().Format(time.DateOnly), stamps.String(), bodies.String())
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rows []struct{ Body string }
	if err := p.sql.query(ctx, sql, &rows); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(rows))
	for _, r := range rows {
		seen[r.Body] = true
	}
	return seen, nil
}

// Freshness is the time from a marker's ack until SQL sees it.
type Freshness struct {
	// Markers is the number of acknowledged markers; Seen of them became
	// visible within 10 s, Lost did not, Dropped were not polled for
	// because too many were outstanding.
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

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// tsLiteral is t, in UTC, as a DuckDB TIMESTAMPTZ literal truncated to
// the microsecond, as DuckDB reads the lake's nanosecond timestamps.
func tsLiteral(t time.Time) string {
	return "TIMESTAMPTZ '" + t.UTC().Format("2006-01-02 15:04:05.000000") + "+00'"
}

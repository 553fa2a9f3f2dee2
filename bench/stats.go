package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// maxSamples bounds the latency samples one collector keeps; beyond it,
// samples are kept by reservoir sampling, which leaves percentiles unbiased.
const maxSamples = 1 << 18

// samples collects durations. It is not safe for concurrent use.
type samples struct {
	d    []time.Duration
	seen int
	rng  *rand.Rand
}

func (s *samples) add(d time.Duration) {
	s.seen++
	if len(s.d) < maxSamples {
		s.d = append(s.d, d)
		return
	}
	if s.rng == nil {
		s.rng = rand.New(rand.NewPCG(uint64(s.seen), 7))
	}
	if i := s.rng.IntN(s.seen); i < maxSamples {
		s.d[i] = d
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 if it is empty: the smallest value that at least p % of the
// values are less than or equal to.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9)) // tolerate rounding in p/100*n
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Latency summarises a set of durations, in milliseconds.
type Latency struct {
	// Samples is the number of measurements.
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	P999Ms  float64 `json:"p999_ms"`
	MaxMs   float64 `json:"max_ms"`
}

func summarise(d []time.Duration, seen int) Latency {
	d = slices.Clone(d)
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	return Latency{
		Samples: seen,
		P50Ms:   ms(percentile(d, 50)),
		P99Ms:   ms(percentile(d, 99)),
		P999Ms:  ms(percentile(d, 99.9)),
		MaxMs:   ms(percentile(d, 100)),
	}
}

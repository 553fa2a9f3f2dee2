package bench

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	seq := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i + 1)
		}
		return d
	}
	f := func(sorted []time.Duration, p float64, want time.Duration) {
		t.Helper()
		if got := percentile(sorted, p); got != want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(sorted), p, got, want)
		}
	}
	f(nil, 50, 0)
	f(seq(1), 50, 1)
	f(seq(1), 99.9, 1)
	f(seq(2), 50, 1)
	f(seq(2), 51, 2)
	f(seq(10), 50, 5)
	f(seq(10), 99, 10)
	f(seq(100), 50, 50)
	f(seq(100), 99, 99)
	f(seq(100), 99.9, 100)
	f(seq(1000), 99.9, 999)
	f(seq(1000), 100, 1000)
	f(seq(1000), 0, 1)
}

func TestSummarise(t *testing.T) {
	t.Parallel()
	d := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	l := summarise(d, len(d))
	want := Latency{Samples: 5, P50Ms: 3, P99Ms: 5, P999Ms: 5, MaxMs: 5}
	if l != want {
		t.Errorf("summarise = %+v, want %+v", l, want)
	}
	if d[0] != 5*time.Millisecond {
		t.Error("summarise sorted its input")
	}
}

func TestSamplesReservoir(t *testing.T) {
	t.Parallel()
	var s samples
	for i := range 2 * maxSamples {
		s.add(time.Duration(i))
	}
	if s.seen != 2*maxSamples || len(s.d) != maxSamples {
		t.Fatalf("seen %d, kept %d", s.seen, len(s.d))
	}
	// About half the kept samples should come from the second half.
	late := 0
	for _, d := range s.d {
		if d >= maxSamples {
			late++
		}
	}
	if late < maxSamples*4/10 || late > maxSamples*6/10 {
		t.Errorf("%d of %d kept samples from the second half", late, maxSamples)
	}
}

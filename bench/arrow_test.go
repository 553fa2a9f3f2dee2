package bench

import "testing"

// BenchmarkArrowEncoder measures the client's cost of a batch as an Arrow
// IPC stream: 1,000 Loghub records a batch, as `weir bench --format
// arrow` sends them.
func BenchmarkArrowEncoder(b *testing.B) {
	recs, err := loadSource("../testdata/loghub/*.log")
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	e := newArrowEncoder()
	defer e.release()
	for i := 0; b.Loop(); i++ {
		lo := (i * batch) % (len(recs) - batch)
		if _, err := e.encode(recs[lo : lo+batch]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
}

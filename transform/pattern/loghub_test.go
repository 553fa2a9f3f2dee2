package pattern_test

import (
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/weirlabs/weir/transform/pattern"
)

// loghubDir holds the Loghub 2k samples with their ground truth.
const loghubDir = "../../testdata/loghub"

// minLoghubAccuracy is the average grouping accuracy TestLoghubAccuracy
// requires. Drain averages 0.865 on these samples in the Loghub benchmark.
const minLoghubAccuracy = 0.90

var loghubSystems = []string{
	"Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux",
	"Mac", "OpenSSH", "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper",
}

// loghubConfigs holds per-source settings, as a user would set them for
// each log source (the Drain benchmark likewise tunes each dataset). A
// system not listed uses the defaults. Only Content is ever input.
var loghubConfigs = map[string]pattern.Config{
	// Transfer sizes are logged as "N bytes" or "N bytes (M KB)", and
	// short lifetimes as "<1 sec": variables that change the token count.
	"Proxifier": {Masks: []string{`bytes( \([\d.]+ [KMGT]?B\))?`, `<\d+ sec`}},
	// Short messages with a user name in them ("Invalid user admin from
	// <*>"): match more loosely, and key the tree on one more word so that
	// events that differ early stay apart.
	"OpenSSH": {Depth: 5, Similarity: 0.7},
}

// loghubSample is one system's messages and true event ids, in file order.
type loghubSample struct {
	content []string
	event   []string
}

func loadLoghub(tb testing.TB, system string) loghubSample {
	tb.Helper()
	path := filepath.Join(loghubDir, system+"_2k.log_structured.csv")
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		tb.Fatalf("%s: read header: %v", path, err)
	}
	contentCol, eventCol := -1, -1
	for i, h := range header {
		switch h {
		case "Content":
			contentCol = i
		case "EventId":
			eventCol = i
		}
	}
	if contentCol < 0 || eventCol < 0 {
		tb.Fatalf("%s: no Content or EventId column in %q", path, header)
	}
	var s loghubSample
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		s.content = append(s.content, rec[contentCol])
		s.event = append(s.event, rec[eventCol])
	}
	if len(s.content) == 0 {
		tb.Fatalf("%s: no rows", path)
	}
	return s
}

// groupingAccuracy is Loghub's grouping accuracy: the fraction of lines
// whose predicted group holds exactly the lines of their true group.
func groupingAccuracy(pred []uint64, truth []string) float64 {
	predLines := make(map[uint64][]int)
	for i, p := range pred {
		predLines[p] = append(predLines[p], i)
	}
	truthSize := make(map[string]int)
	for _, e := range truth {
		truthSize[e]++
	}
	correct := 0
	for _, lines := range predLines {
		e := truth[lines[0]]
		same := truthSize[e] == len(lines)
		for _, l := range lines[1:] {
			same = same && truth[l] == e
		}
		if same {
			correct += len(lines)
		}
	}
	return float64(correct) / float64(len(truth))
}

// mineLoghub returns the cluster id Match gives each line of s.
func mineLoghub(tb testing.TB, cfg pattern.Config, s loghubSample) []uint64 {
	tb.Helper()
	m, err := pattern.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	pred := make([]uint64, len(s.content))
	for i, msg := range s.content {
		pred[i], _ = m.Match(msg)
	}
	return pred
}

// TestLoghubAccuracy feeds each system's messages in file order through
// a fresh Miner, takes the id Match returns for a line as its group, and
// requires the average grouping accuracy to reach minLoghubAccuracy. The
// defaults column, for information, uses DefaultConfig for every system.
func TestLoghubAccuracy(t *testing.T) {
	sum, sumDefault := 0.0, 0.0
	t.Logf("%-12s %8s %8s", "system", "accuracy", "defaults")
	for _, system := range loghubSystems {
		s := loadLoghub(t, system)
		acc := groupingAccuracy(mineLoghub(t, loghubConfigs[system], s), s.event)
		accDefault := groupingAccuracy(mineLoghub(t, pattern.Config{}, s), s.event)
		sum += acc
		sumDefault += accDefault
		t.Logf("%-12s %8.3f %8.3f", system, acc, accDefault)
	}
	n := float64(len(loghubSystems))
	t.Logf("%-12s %8.3f %8.3f", "average", sum/n, sumDefault/n)
	if avg := sum / n; avg < minLoghubAccuracy {
		t.Errorf("average grouping accuracy %.3f, want at least %.2f", avg, minLoghubAccuracy)
	}
}

func TestGroupingAccuracy(t *testing.T) {
	f := func(pred []uint64, truth string, want float64) {
		t.Helper()
		tr := make([]string, len(truth))
		for i := range truth {
			tr[i] = truth[i : i+1]
		}
		if got := groupingAccuracy(pred, tr); got != want {
			t.Errorf("groupingAccuracy(%v, %q) = %v, want %v", pred, truth, got, want)
		}
	}
	f([]uint64{1, 1, 2}, "aab", 1)
	f([]uint64{1, 1, 1}, "aab", 0)
	f([]uint64{1, 2, 3}, "aab", 1.0/3)
	f([]uint64{1, 1, 2, 2}, "aabc", 0.5)
}

// BenchmarkMatchLoghub matches every Content line of the 16 samples, each
// system with a fresh Miner and its loghubConfigs entry, as one op.
func BenchmarkMatchLoghub(b *testing.B) {
	type source struct {
		cfg  pattern.Config
		msgs []string
	}
	var sources []source
	lines, bytes := 0, 0
	for _, system := range loghubSystems {
		s := loadLoghub(b, system)
		sources = append(sources, source{loghubConfigs[system], s.content})
		lines += len(s.content)
		for _, c := range s.content {
			bytes += len(c)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(bytes))
	for b.Loop() {
		for _, src := range sources {
			m, err := pattern.New(src.cfg)
			if err != nil {
				b.Fatal(err)
			}
			for _, msg := range src.msgs {
				m.Match(msg)
			}
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkMatchLoghubParallel matches the samples' lines from all
// goroutines at once, one shared Miner per system, to measure the cost of
// the Miner's lock under contention; one op is one line.
func BenchmarkMatchLoghubParallel(b *testing.B) {
	type line struct {
		m   *pattern.Miner
		msg string
	}
	var lines []line
	for _, system := range loghubSystems {
		s := loadLoghub(b, system)
		m, err := pattern.New(loghubConfigs[system])
		if err != nil {
			b.Fatal(err)
		}
		for _, msg := range s.content {
			lines = append(lines, line{m, msg})
		}
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l := lines[next.Add(1)%uint64(len(lines))]
			l.m.Match(l.msg)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

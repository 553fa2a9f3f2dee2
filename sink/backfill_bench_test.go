package sink_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// BenchmarkBackfill writes a backfill shaped like Loghub's HPC sample: 2,000
// rows in no time order, one Write each, spread over about 1,200 hours of
// 545 dates long past, then Shutdown (publishes every file). With hour
// files each hour is a file; with day files (the default) each date is.
// staged-ms is the time until the Observer was shown every row (when a
// query could see them), the rest is publishing.
//
//	go test -run '^$' -bench BenchmarkBackfill -benchtime 5x -count 3 ./sink/
func BenchmarkBackfill(b *testing.B) {
	const rows = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2005, 1, 1, 0, 0, 0, 0, time.UTC)
	var hours []time.Time
	for range 1200 {
		hours = append(hours, start.Add(time.Duration(rng.IntN(545))*24*time.Hour+time.Duration(rng.IntN(24))*time.Hour))
	}
	recs := make([]arrow.RecordBatch, rows)
	parts := make([]sink.Partition, rows)
	for i := range recs {
		h := hours[i%len(hours)]
		recs[i] = SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 1, BatchRows: 1, FirstOffset: int64(i), Start: h.Add(time.Minute)})[0]
		parts[i] = sink.Partition{Tenant: "acme", Stream: "hpc", Hour: h}
	}
	defer ReleaseAll(recs)
	for _, mode := range []struct {
		name string
		days time.Duration
	}{{"hour-files", 0}, {"day-files", sink.DefaultConfig().DayFilesAfter}} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			files := 0
			var staged time.Duration
			for b.Loop() {
				obs := &stagedCounter{done: make(chan struct{}), want: rows}
				t0 := time.Now()
				cfg := sink.DefaultConfig()
				cfg.Dir = b.TempDir()
				cfg.DayFilesAfter = mode.days
				cfg.CompactAge = 0
				l, err := sink.New(cfg, obs, slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				for i, r := range recs {
					if err := l.Write(context.Background(), parts[i], r); err != nil {
						b.Fatal(err)
					}
				}
				<-obs.done
				staged += time.Since(t0)
				if err := l.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
				files = len(l.Files())
			}
			b.ReportMetric(float64(files), "files")
			b.ReportMetric(float64(staged.Milliseconds())/float64(b.N), "staged-ms")
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/rows*1e6, "µs/row")
		})
	}
}

// stagedCounter closes done once want rows were staged.
type stagedCounter struct {
	mu   sync.Mutex
	rows int64
	want int64
	done chan struct{}
}

func (c *stagedCounter) Staged(f sink.FileInfo, seg sink.Segment) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows += seg.Rows
	if c.rows == c.want {
		close(c.done)
	}
	return nil
}
func (c *stagedCounter) Published(sink.FileInfo) error           { return nil }
func (c *stagedCounter) Replaced(sink.FileInfo, []sink.FileInfo) {}
func (c *stagedCounter) Abandoned(sink.FileInfo)                 {}
func (c *stagedCounter) Removed([]sink.FileInfo)                 {}

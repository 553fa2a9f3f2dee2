package sink_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// BenchmarkCompaction compacts eight published files of 32 Ki rows each
// (the 16 Loghub systems interleaved row by row, as a busy stream of
// several services writes them) into one, with the default sort window
// and zstd level: decoding, sorting and encoding. Each op writes the
// files again first, outside the timer.
//
//	go test -run '^$' -bench BenchmarkCompaction -benchtime 5x -count 5 ./sink/
func BenchmarkCompaction(b *testing.B) {
	const files, fileRows = 8, 32 << 10
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: files * fileRows, BatchRows: fileRows, Start: hour0, Systems: LoadLoghubSystems(b)})
	defer ReleaseAll(recs)
	cfg := sink.DefaultConfig()
	cfg.DayFilesAfter = 0
	cfg.MaxFileAge = time.Hour
	cfg.CompactAge = time.Minute
	p := part("bench", 0)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cfg.Dir = filepath.Join(b.TempDir(), "lake")
		l, err := sink.New(cfg, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if err := l.Write(context.Background(), p, r); err != nil {
				b.Fatal(err)
			}
			if err := l.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		n, err := l.CompactAt(context.Background(), time.Now().Add(time.Hour))
		if err != nil || n != files {
			b.Fatalf("CompactAt = %d, %v; want %d files replaced", n, err, files)
		}
		b.StopTimer()
		if err := l.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(files*fileRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkCompactionStats reads the compaction backlog of a lake with
// 256 due files of one partition, as each scrape of /metrics does.
//
//	go test -run '^$' -bench BenchmarkCompactionStats -count 5 ./sink/
func BenchmarkCompactionStats(b *testing.B) {
	const files = 256
	cfg := sink.DefaultConfig()
	cfg.Dir = filepath.Join(b.TempDir(), "lake")
	cfg.DayFilesAfter = 0
	cfg.MaxFileAge = time.Hour
	cfg.CompactAge = time.Minute
	l, err := sink.New(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Shutdown(context.Background())
	p := part("bench", 0)
	for i := range files {
		recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 16, BatchRows: 16, FirstOffset: int64(i) * 16, Start: hour0})
		err := l.Write(context.Background(), p, recs[0])
		ReleaseAll(recs)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	later := time.Now().Add(time.Hour) // every file is due
	if st := l.CompactionStatsAt(later); st.DueFiles != files {
		b.Fatalf("%d files due, want %d", st.DueFiles, files)
	}
	for b.Loop() {
		l.CompactionStatsAt(later)
	}
}

package sink_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// BenchmarkLakeWrite measures the Lake end to end on disk: benchRows rows
// in 8192-row batches, spread over 1 or 2 partitions written in parallel,
// then Flush (footer, fsync, rename, directory fsync). Default config.
//
//	go test -run '^$' -bench BenchmarkLakeWrite -benchtime 3x -count 3 ./sink/
func BenchmarkLakeWrite(b *testing.B) {
	bodies := LoadLoghub(b)
	for _, bc := range []struct {
		parts int
		pool  bool
	}{{1, false}, {1, true}, {2, false}, {2, true}} {
		parts := bc.parts
		name := fmt.Sprintf("partitions=%d/encoders=inline", parts)
		if bc.pool {
			name = fmt.Sprintf("partitions=%d/encoders=%d", parts, runtime.GOMAXPROCS(0))
		}
		b.Run(name, func(b *testing.B) {
			per := benchRows / parts
			inputs := make([][]arrow.RecordBatch, parts)
			var size int64
			for p := range parts {
				recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: per, BatchRows: benchBatchRows, Part: int32(p), Bodies: bodies})
				defer ReleaseAll(recs)
				inputs[p] = recs
				for _, r := range recs {
					for _, c := range r.Columns() {
						size += int64(arrowSize(c.Data()))
					}
				}
			}
			var fileBytes int64
			b.ReportAllocs()
			b.SetBytes(size)
			for b.Loop() {
				cfg := sink.DefaultConfig()
				cfg.Dir = b.TempDir()
				l, err := sink.New(cfg, nil, slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				if bc.pool {
					if err := l.Start(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				var wg sync.WaitGroup
				for p := range parts {
					wg.Go(func() {
						for _, r := range inputs[p] {
							if err := l.Write(context.Background(), part("app", int32(p)), r); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				if err := l.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
				fileBytes = 0
				for _, f := range l.Files() {
					fileBytes += f.Bytes
				}
			}
			b.ReportMetric(float64(parts*per)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(fileBytes)/float64(parts*per), "B/row")
		})
	}
}

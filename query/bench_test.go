package query

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform"
)

// captureWriter keeps the batches a Batcher writes.
type captureWriter struct{ recs []arrow.RecordBatch }

func (c *captureWriter) Write(_ context.Context, _ sink.Partition, rec arrow.RecordBatch) error {
	rec.Retain()
	c.recs = append(c.recs, rec)
	return nil
}

// benchBatch builds one Arrow batch of n log-like rows with the real
// transform stage.
func benchBatch(b *testing.B, n int) arrow.RecordBatch {
	b.Helper()
	cfg := transform.DefaultConfig()
	cfg.MaxRows = n
	w := &captureWriter{}
	bt, err := transform.NewBatcher(cfg, record.DefaultTenant, "bench", 0, w, memory.DefaultAllocator, nil)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{
			SeverityText: []string{"INFO", "INFO", "WARN", "ERROR"}[i%4],
			Body:         fmt.Sprintf("PacketResponder %d for block blk_%d terminating", i%3, i*7919),
			Attributes:   []record.KV{{Key: "thread", Value: fmt.Sprint(i % 16)}},
			Resource:     []record.KV{{Key: "service.name", Value: "svc"}},
		}
	}
	if err := bt.Consume(context.Background(), record.NewBatch(record.DefaultTenant, "bench", recs)); err != nil {
		b.Fatal(err)
	}
	if len(w.recs) != 1 {
		b.Fatalf("%d batches", len(w.recs))
	}
	return w.recs[0]
}

// BenchmarkStaged measures making staged rows queryable: writing an Arrow
// batch as a staging segment and updating the views. Every ingested record
// takes this path.
func BenchmarkStaged(b *testing.B) {
	const n = 64 << 10 // transform's default MaxRows
	rec := benchBatch(b, n)
	defer rec.Release()
	cfg := DefaultConfig()
	cfg.DataDir = b.TempDir()
	e, err := Open(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	f := sink.FileInfo{ID: "bench", Partition: sink.Partition{Tenant: record.DefaultTenant, Stream: "bench", Hour: time.Now().UTC().Truncate(time.Hour)}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.Staged(f, rec); err != nil {
			b.Fatal(err)
		}
		if err := e.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
}

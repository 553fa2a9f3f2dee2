package arrowbatch

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

type discardWriter struct{}

func (discardWriter) Write(context.Context, sink.Partition, ...arrow.RecordBatch) error { return nil }

// BenchmarkBatcher measures normalising records and building them into
// Arrow batches: the batching half of the transform stage, without the sink.
func BenchmarkBatcher(b *testing.B) {
	const per = 1000
	services := []string{"api", "db", "web", "auth", "cache", "queue", "search"}
	levels := []string{"INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR"}
	recs := make([]record.Record, per)
	for i := range recs {
		recs[i] = record.Record{
			SeverityText: levels[i%len(levels)],
			Body:         fmt.Sprintf("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder %d for block blk_%d terminating", i%3, i*7919),
			Attributes:   []record.KV{{Key: "thread", Value: fmt.Sprint(i % 16)}},
			Resource:     []record.KV{{Key: "service.name", Value: services[i%len(services)]}},
		}
		if i%10 == 0 {
			recs[i].TraceID = [16]byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
		}
	}
	size := record.NewBatch("default", "bench", recs).Bytes
	cfg := DefaultConfig()
	bt, err := NewBatcher(cfg, "default", "bench", 0, discardWriter{}, memory.NewGoAllocator(), nil)
	if err != nil {
		b.Fatal(err)
	}
	work := make([]record.Record, per)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(work, recs)
		batch := &record.Batch{Tenant: "default", Stream: "bench", Records: work, Bytes: size, Offset: int64(i * per)}
		if err := bt.Consume(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := bt.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
}

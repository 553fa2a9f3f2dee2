package query

import (
	"context"
	"fmt"
	"testing"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// TestCodecsQueryable: DuckDB reads files written with each codec a hot
// file may use (sink.Config.Codec), staged and published.
func TestCodecsQueryable(t *testing.T) {
	for _, codec := range []sink.Codec{sink.CodecLZ4, sink.CodecSnappy, sink.CodecNone} {
		t.Run(string(codec), func(t *testing.T) {
			dir := t.TempDir()
			e := openEngine(t, dir)
			lake := openLake(t, e, dir, func(c *sink.Config) { c.Codec = codec })
			bt, err := arrowbatch.NewBatcher(arrowbatch.DefaultConfig(), record.DefaultTenant, "app", 0, lake, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			recs := make([]record.Record, 500)
			for j := range recs {
				recs[j] = record.Record{Body: fmt.Sprintf("line %d", j), SeverityText: "WARN"}
			}
			if err := bt.Consume(context.Background(), record.NewBatch(record.DefaultTenant, "app", recs)); err != nil {
				t.Fatal(err)
			}
			if err := bt.Close(context.Background()); err != nil { // staged
				t.Fatal(err)
			}
			if err := e.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := queryInts(t, e, "SELECT count(*), count(DISTINCT body) FROM app WHERE severity_text = 'WARN'"); got[0] != 500 || got[1] != 500 {
				t.Fatalf("staged: count, distinct bodies = %v", got)
			}
			if err := lake.Shutdown(context.Background()); err != nil { // published
				t.Fatal(err)
			}
			if err := e.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := queryInts(t, e, "SELECT count(*), count(DISTINCT body) FROM app"); got[0] != 500 || got[1] != 500 {
				t.Fatalf("published: count, distinct bodies = %v", got)
			}
		})
	}
}

package query

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// captureWriter keeps the batches a Batcher writes.
type captureWriter struct{ recs []arrow.RecordBatch }

func (c *captureWriter) Write(_ context.Context, _ sink.Partition, recs ...arrow.RecordBatch) error {
	for _, r := range recs {
		r.Retain()
		c.recs = append(c.recs, r)
	}
	return nil
}

// benchBatch builds one Arrow batch of n log-like rows with the real
// transform stage.
func benchBatch(b *testing.B, n int) arrow.RecordBatch {
	b.Helper()
	cfg := arrowbatch.DefaultConfig()
	cfg.MaxRows = n
	w := &captureWriter{}
	bt, err := arrowbatch.NewBatcher(cfg, record.DefaultTenant, "bench", 0, w, memory.DefaultAllocator, nil)
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

// stagingLake returns an engine and a lake that stages into it and never
// publishes by age, both closed at the end of the benchmark.
func stagingLake(b *testing.B) (*Engine, *sink.Lake) {
	b.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = b.TempDir()
	e, err := Open(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Shutdown(context.Background()) })
	scfg := sink.DefaultConfig()
	scfg.Dir = filepath.Join(cfg.DataDir, "lake")
	scfg.MaxFileAge = time.Hour
	scfg.TargetFileBytes = 1 << 40
	l, err := sink.New(scfg, e, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Shutdown(context.Background()) })
	return e, l
}

// BenchmarkStaged measures making rows queryable before their file is
// published: the lake encodes an Arrow batch as a segment (its only
// encoding), the engine links it and updates the views. Every ingested
// record takes this path.
func BenchmarkStaged(b *testing.B) {
	const n = 64 << 10 // transform's default MaxRows
	rec := benchBatch(b, n)
	defer rec.Release()
	e, l := stagingLake(b)
	p := sink.Partition{Tenant: record.DefaultTenant, Stream: "bench", Hour: time.Now().UTC().Truncate(time.Hour)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Write(context.Background(), p, rec); err != nil {
			b.Fatal(err)
		}
		if err := e.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
}

// stagedRows returns an engine whose stream "bench" holds batches staged
// batches of per log-like rows, queryable, none published.
func stagedRows(b *testing.B, per, batches int) *Engine {
	b.Helper()
	rec := benchBatch(b, per)
	defer rec.Release()
	e, l := stagingLake(b)
	p := sink.Partition{Tenant: record.DefaultTenant, Stream: "bench", Hour: time.Now().UTC().Truncate(time.Hour)}
	for range batches {
		if err := l.Write(context.Background(), p, rec); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	return e
}

// discardWriter drops result rows, counting them.
type discardWriter struct{ rows int }

func (w *discardWriter) Begin([]Column) error     { return nil }
func (w *discardWriter) Row([]driver.Value) error { w.rows++; return nil }
func (w *discardWriter) End(bool) error           { return nil }

// BenchmarkQueryHot measures dashboard-style queries over records that are
// still staged (not yet in a published file): 1 M rows in 16 staged
// batches of 64 Ki rows, as the transform stage hands them over.
func BenchmarkQueryHot(b *testing.B) {
	e := stagedRows(b, 64<<10, 16)
	for _, q := range []struct{ name, sql string }{
		{"count_by_severity_per_minute", `SELECT time_bucket(INTERVAL 1 minute, timestamp) AS t, severity_text, count(*) FROM logs GROUP BY ALL`},
		{"top_services", `SELECT service_name, count(*) AS n FROM logs GROUP BY 1 ORDER BY n DESC LIMIT 10`},
		{"top_messages", `SELECT body, count(*) AS n FROM logs WHERE severity_number >= 13 GROUP BY 1 ORDER BY n DESC LIMIT 10`},
		{"like_search", `SELECT count(*) FROM logs WHERE body LIKE '%blk_7919%'`},
		{"newest_page", `SELECT * FROM logs ORDER BY timestamp DESC, _offset DESC LIMIT 100`},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				var w discardWriter
				if _, err := e.Run(context.Background(), q.sql, Options{}, &w); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
		})
	}
}

// BenchmarkViewChange measures one view change in a tenant with many
// small files, as in a backfill spread over years: 16 streams with 64
// one-row files each (hours apart), then, per iteration, one more row in
// one stream, in a new hour, staged and made visible (Sync).
func BenchmarkViewChange(b *testing.B) {
	const streams, hours = 16, 64
	e, l := stagingLake(b)
	for s := range streams {
		stageRecords(b, l, fmt.Sprintf("s%02d", s), hours, hours)
	}
	if err := e.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	rec := benchBatch(b, 1)
	defer rec.Release()
	start := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := sink.Partition{Tenant: record.DefaultTenant, Stream: "s00", Hour: start.Add(time.Duration(i) * time.Hour)}
		if err := l.Write(context.Background(), p, rec); err != nil {
			b.Fatal(err)
		}
		if err := e.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// rowsOnly hides a writer's columnar side, so Run gives it rows.
type rowsOnly struct{ ResultWriter }

// BenchmarkParquetAnswer measures a Parquet answer of 256 Ki staged
// log rows (every column, attributes and resource maps included) as
// DuckDB writes it (duckdb) against weir building it from rows (rows).
func BenchmarkParquetAnswer(b *testing.B) {
	const per, batches = 64 << 10, 4
	e := stagedRows(b, per, batches)
	for _, c := range []struct {
		name string
		w    func(io.Writer) ResultWriter
	}{
		{"duckdb", func(w io.Writer) ResultWriter { return NewWriter(FormatParquet, w) }},
		{"rows", func(w io.Writer) ResultWriter { return rowsOnly{NewWriter(FormatParquet, w)} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var out countingWriter
			for b.Loop() {
				st, err := e.Run(context.Background(), "SELECT * FROM bench", Options{MaxRows: per * batches}, c.w(&out))
				if err != nil || st.Rows != per*batches {
					b.Fatalf("%+v, %v", st, err)
				}
			}
			b.ReportMetric(float64(b.N*per*batches)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(out.n)/float64(b.N*per*batches), "B/row")
		})
	}
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

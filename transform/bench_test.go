package transform

import (
	"slices"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

// BenchmarkProcess measures the ingest-side pipeline per record on the
// HDFS sample in batches of 1,000: validation only (no processors), the
// shipped example's processors without and with the pattern step, and
// the same with a regular expression instead of dissect.
func BenchmarkProcess(b *testing.B) {
	lines, _ := readLoghub(b, "HDFS")
	example := loadExample(b, "HDFS")["hdfs"].Processors
	withoutPattern := example[:len(example)-1]
	regex := Processor{Parse: &ParseStep{Format: "regex",
		Pattern: `^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]+): \s*(?P<message>.*?)\s*$`}}
	for _, bc := range []struct {
		name  string
		chain []Processor
	}{
		{"none", nil},
		{"dissect+timestamp+severity", withoutPattern},
		{"dissect+timestamp+severity+pattern", example},
		{"regex+timestamp+severity+pattern", append([]Processor{regex}, example[1:]...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rules := Rules{}
			if bc.chain != nil {
				rules["hdfs"] = Chain{Processors: bc.chain}
			}
			p, err := NewPipeline(PipelineConfig{Rules: rules, Limits: record.Limits{MaxFuture: time.Hour}})
			if err != nil {
				b.Fatal(err)
			}
			const per = 1000
			recs := make([]record.Record, per)
			var bytes int64
			for i := range recs {
				recs[i].Body = lines[i%len(lines)]
				bytes += int64(len(recs[i].Body))
			}
			b.ReportAllocs()
			b.SetBytes(bytes)
			var out []*record.Batch
			for b.Loop() {
				batch := record.NewBatch(record.DefaultTenant, "hdfs", slices.Clone(recs))
				out, err = p.Process(out[:0], batch)
				if err != nil || len(out) != 1 || out[0].Stream != "hdfs" {
					b.Fatalf("%v %d", err, len(out))
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

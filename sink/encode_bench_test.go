package sink_test

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	pq "github.com/parquet-go/parquet-go"
	pqzstd "github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/weirlabs/weir/sink"
)

// The encoding benchmarks write the same synthetic log rows (see
// SynthBatches; bodies are the Loghub samples in testdata/loghub) with the two Parquet libraries in the module:
//
//   - pqarrow: arrow-go's Arrow-to-Parquet writer, straight from the
//     record batches, with the properties the Lake uses.
//   - parquet-go: GenericWriter[logRow] on a struct mirroring the schema,
//     including the cost of copying each batch out of Arrow into structs,
//     which is what the pipeline would have to pay.
//
// Each op encodes benchRows rows into a byte counter (no disk). Reported:
// rows/s, B/row of the finished file, allocs; SetBytes is the Arrow buffer
// size of the input, so MB/s is Arrow bytes consumed per second.
//
//	go test -run '^$' -bench BenchmarkEncode -benchtime 3x -count 3 ./sink/

const (
	benchRows      = 1 << 20
	benchBatchRows = 8192
)

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func benchInput(b *testing.B) ([]arrow.RecordBatch, int64) {
	b.Helper()
	bodies := LoadLoghub(b)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: benchRows, BatchRows: benchBatchRows, Bodies: bodies})
	var size int64
	for _, r := range recs {
		for _, c := range r.Columns() {
			size += int64(arrowSize(c.Data()))
		}
	}
	return recs, size
}

func arrowSize(d arrow.ArrayData) int {
	n := 0
	for _, buf := range d.Buffers() {
		if buf != nil {
			n += buf.Len()
		}
	}
	for _, c := range d.Children() {
		n += arrowSize(c)
	}
	return n
}

func reportEncode(b *testing.B, fileBytes int64) {
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(fileBytes)/float64(benchRows), "B/row")
}

func BenchmarkEncode(b *testing.B) {
	recs, size := benchInput(b)
	defer ReleaseAll(recs)

	// The naive configuration: dictionary on every column.
	b.Run("lib=pqarrow-dictall/zstd=1/rg=128K", func(b *testing.B) {
		props := parquet.NewWriterProperties(
			parquet.WithCompression(compress.Codecs.Zstd),
			parquet.WithCompressionLevel(1),
			parquet.WithDictionaryDefault(true),
			parquet.WithStats(true),
			parquet.WithMaxRowGroupLength(128<<10),
		)
		benchPqarrow(b, recs, size, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	})
	// What the Lake writes (encode.go): delta for int64, plain for
	// high-cardinality strings, dictionary for the rest.
	for _, c := range []struct {
		level int
		rg    int64
	}{{1, 128 << 10}, {3, 128 << 10}, {6, 128 << 10}, {1, 256 << 10}, {1, 1 << 20}} {
		b.Run(fmt.Sprintf("lib=pqarrow/zstd=%d/rg=%dK", c.level, c.rg>>10), func(b *testing.B) {
			cfg := sink.DefaultConfig()
			cfg.ZstdLevel, cfg.RowGroupRows = c.level, c.rg
			props, aprops, err := sink.WriterProps(cfg, recs[0])
			if err != nil {
				b.Fatal(err)
			}
			benchPqarrow(b, recs, size, props, aprops)
		})
	}
	// The codecs a hot file may use (Config.Codec); compaction rewrites
	// every file at zstd anyway.
	for _, codec := range []sink.Codec{sink.CodecLZ4, sink.CodecSnappy, sink.CodecNone} {
		b.Run(fmt.Sprintf("lib=pqarrow/codec=%s/rg=128K", codec), func(b *testing.B) {
			cfg := sink.DefaultConfig()
			cfg.Codec = codec
			props, aprops, err := sink.WriterProps(cfg, recs[0])
			if err != nil {
				b.Fatal(err)
			}
			benchPqarrow(b, recs, size, props, aprops)
		})
	}
	for _, lv := range []struct {
		name  string
		level pqzstd.Level
	}{{"1", pqzstd.SpeedFastest}, {"3", pqzstd.SpeedDefault}, {"6", pqzstd.SpeedBetterCompression}} {
		b.Run("lib=parquet-go/zstd="+lv.name+"/rg=128K", func(b *testing.B) {
			benchParquetGo(b, recs, size, lv.level, 128<<10)
		})
	}
	b.Run("lib=parquet-go/convert-only", func(b *testing.B) {
		var rows []logRow
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			for _, r := range recs {
				rows = arrowToRows(rows, r)
			}
		}
		b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

func benchPqarrow(b *testing.B, recs []arrow.RecordBatch, size int64, props *parquet.WriterProperties, aprops pqarrow.ArrowWriterProperties) {
	var fileBytes int64
	b.ReportAllocs()
	b.SetBytes(size)
	cpu0 := processCPU(b)
	for b.Loop() {
		w := &countWriter{}
		fw, err := pqarrow.NewFileWriter(recs[0].Schema(), w, props, aprops)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if err := fw.WriteBuffered(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := fw.Close(); err != nil {
			b.Fatal(err)
		}
		fileBytes = w.n
	}
	reportEncode(b, fileBytes)
	// CPU time is steadier than rows/s on a machine others share.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(benchRows)/float64(b.N), "cpu-ns/row")
}

// logRow mirrors transform.Schema for parquet-go, with the encodings the
// Lake picks for pqarrow: delta for the int64 columns, dictionary for the
// low-cardinality ones, plain for body and the ids (parquet-go has no
// dictionary size limit by default, so a dictionary of distinct bodies
// would grow without bound).
type logRow struct {
	Timestamp         int64             `parquet:"timestamp,timestamp(nanosecond:utc),delta"`
	ObservedTimestamp int64             `parquet:"observed_timestamp,timestamp(nanosecond:utc),delta"`
	SeverityNumber    int32             `parquet:"severity_number,dict"`
	SeverityText      string            `parquet:"severity_text,dict"`
	Body              string            `parquet:"body"`
	Attributes        map[string]string `parquet:"attributes" parquet-key:",dict" parquet-value:",dict"`
	Resource          map[string]string `parquet:"resource" parquet-key:",dict" parquet-value:",dict"`
	ServiceName       string            `parquet:"service_name,dict"`
	TraceID           *string           `parquet:"trace_id,optional"`
	SpanID            *string           `parquet:"span_id,optional"`
	Flags             uint32            `parquet:"flags,dict"`
	Partition         int32             `parquet:"_partition,dict"`
	Offset            int64             `parquet:"_offset,delta"`
}

// arrowToRows copies rec into rows (reused: maps are cleared, not
// reallocated), the way a parquet-go based sink would have to. Strings are
// not copied: arrow-go's String.Value aliases the Arrow buffer, which is
// fine as long as rec outlives the write.
func arrowToRows(rows []logRow, rec arrow.RecordBatch) []logRow {
	n := int(rec.NumRows())
	if cap(rows) < n {
		rows = append(rows[:cap(rows)], make([]logRow, n-cap(rows))...)
	}
	rows = rows[:n]
	ts := rec.Column(0).(*array.Timestamp).Values()
	obs := rec.Column(1).(*array.Timestamp).Values()
	sevNum := rec.Column(2).(*array.Int32).Int32Values()
	sevText := rec.Column(3).(*array.String)
	body := rec.Column(4).(*array.String)
	attrs := rec.Column(5).(*array.Map)
	res := rec.Column(6).(*array.Map)
	svc := rec.Column(7).(*array.String)
	trace := rec.Column(8).(*array.String)
	span := rec.Column(9).(*array.String)
	flags := rec.Column(10).(*array.Uint32).Uint32Values()
	part := rec.Column(11).(*array.Int32).Int32Values()
	off := rec.Column(12).(*array.Int64).Int64Values()
	for i := range rows {
		r := &rows[i]
		r.Timestamp = int64(ts[i])
		r.ObservedTimestamp = int64(obs[i])
		r.SeverityNumber = sevNum[i]
		r.SeverityText = sevText.Value(i)
		r.Body = body.Value(i)
		r.Attributes = fillMap(r.Attributes, attrs, i)
		r.Resource = fillMap(r.Resource, res, i)
		r.ServiceName = svc.Value(i)
		r.TraceID = optString(r.TraceID, trace, i)
		r.SpanID = optString(r.SpanID, span, i)
		r.Flags = flags[i]
		r.Partition = part[i]
		r.Offset = off[i]
	}
	return rows
}

func fillMap(m map[string]string, a *array.Map, i int) map[string]string {
	if m == nil {
		m = make(map[string]string, 4)
	} else {
		clear(m)
	}
	keys := a.Keys().(*array.String)
	items := a.Items().(*array.String)
	start, end := a.ValueOffsets(i)
	for j := start; j < end; j++ {
		m[keys.Value(int(j))] = items.Value(int(j))
	}
	return m
}

func optString(p *string, a *array.String, i int) *string {
	if a.IsNull(i) {
		return nil
	}
	if p == nil {
		p = new(string)
	}
	*p = a.Value(i)
	return p
}

func benchParquetGo(b *testing.B, recs []arrow.RecordBatch, size int64, level pqzstd.Level, rowGroupRows int64) {
	codec := &pqzstd.Codec{Level: level}
	var rows []logRow
	var fileBytes int64
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		w := &countWriter{}
		pw := pq.NewGenericWriter[logRow](w,
			pq.Compression(codec),
			pq.MaxRowsPerRowGroup(rowGroupRows),
		)
		for _, r := range recs {
			rows = arrowToRows(rows, r)
			if _, err := pw.Write(rows); err != nil {
				b.Fatal(err)
			}
		}
		if err := pw.Close(); err != nil {
			b.Fatal(err)
		}
		fileBytes = w.n
	}
	reportEncode(b, fileBytes)
}

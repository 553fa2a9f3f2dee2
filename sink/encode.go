package sink

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/weirlabs/weir/internal/logschema"
)

// Encoding choices. The lake is schema-agnostic, so encodings follow from
// the Parquet physical type and from the first rows of each file (the
// batches it is written from, up to cardinalityProbe values a column):
//
//   - INT64 leaves (timestamps, offsets): DELTA_BINARY_PACKED, no
//     dictionary. Log timestamps and offsets rise almost monotonically, so
//     deltas are tiny; a dictionary of unique values would only be built
//     to be thrown away.
//   - BYTE_ARRAY leaves: dictionary, unless at least cardinalitySample
//     of those non-null values are more than half distinct (bodies,
//     trace ids): then PLAIN. They are read across batches, because a
//     segment written from an Arrow request's parts may hold many small
//     ones, each with too few trace ids to judge by. Dictionary-encoding
//     such a column costs a hash probe per value for nothing. A column
//     that turns out high-cardinality later still falls back to PLAIN
//     when its dictionary passes the 1 MiB dictionary page limit.
//   - everything else: dictionary.
//
// All columns: Config.Codec (zstd at Config.ZstdLevel by default), the
// Arrow schema stored in the footer (ARROW:schema) so types such as the
// timestamp's time zone round-trip, and min/max statistics except where
// no reader can use them: the leaves of map columns (DuckDB pushes no
// filter into a MAP) and the body (free text, whose minimum and maximum
// span every row group), which would cost a comparison or two per value.
const (
	cardinalitySample = 256  // fewest non-null values to judge a column by
	cardinalityProbe  = 4096 // most values looked at per column
)

// writerProps returns the writer properties for a file of schema sc whose
// first rows are those of sample, in order.
func writerProps(cfg Config, mem memory.Allocator, sc *arrow.Schema, sample []arrow.RecordBatch, extra ...parquet.WriterProperty) (*parquet.WriterProperties, error) {
	opts := []parquet.WriterProperty{
		parquet.WithAllocator(mem),
		parquet.WithDictionaryDefault(true),
		parquet.WithStats(true),
		parquet.WithMaxRowGroupLength(cfg.RowGroupRows),
		parquet.WithDataPageSize(cfg.dataPageBytes()),
	}
	switch cfg.Codec {
	case CodecZstd, "":
		opts = append(opts, parquet.WithCompression(compress.Codecs.Zstd), parquet.WithCompressionLevel(cfg.ZstdLevel))
	case CodecLZ4:
		opts = append(opts, parquet.WithCompression(compress.Codecs.Lz4Raw))
	case CodecSnappy:
		opts = append(opts, parquet.WithCompression(compress.Codecs.Snappy))
	case CodecNone:
		opts = append(opts, parquet.WithCompression(compress.Codecs.Uncompressed))
	default:
		return nil, fmt.Errorf("unknown codec %q", cfg.Codec)
	}
	pqs, err := pqarrow.ToParquet(sc, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		return nil, fmt.Errorf("map Arrow schema to Parquet: %w", err)
	}
	// leaves[i] are the arrays of leaf column i in each batch of sample,
	// or nil for a type this walk does not know: judged by type only.
	var leaves [][]arrow.Array
	for _, rec := range sample {
		var l []arrow.Array
		for _, c := range rec.Columns() {
			l = leafArrays(c, l)
		}
		if len(l) != pqs.NumColumns() {
			leaves = nil
			break
		}
		if leaves == nil {
			leaves = make([][]arrow.Array, len(l))
		}
		for i, a := range l {
			leaves[i] = append(leaves[i], a)
		}
	}
	for i := range pqs.NumColumns() {
		col := pqs.Column(i)
		path := col.Path()
		if top := col.ColumnPath()[0]; top == logschema.Body || isMap(sc, top) {
			opts = append(opts, parquet.WithStatsFor(path, false))
		}
		switch col.PhysicalType() {
		case parquet.Types.Int64:
			opts = append(opts,
				parquet.WithDictionaryFor(path, false),
				parquet.WithEncodingFor(path, parquet.Encodings.DeltaBinaryPacked))
		case parquet.Types.ByteArray:
			if leaves != nil && highCardinality(leaves[i]) {
				opts = append(opts, parquet.WithDictionaryFor(path, false))
			}
		}
	}
	return parquet.NewWriterProperties(append(opts, extra...)...), nil
}

// isMap reports whether the top-level field name of sc is a map.
func isMap(sc *arrow.Schema, name string) bool {
	idx := sc.FieldIndices(name)
	return len(idx) == 1 && sc.Field(idx[0]).Type.ID() == arrow.MAP
}

// arrowWriterProps stores the Arrow schema in the footer.
func arrowWriterProps(mem memory.Allocator) pqarrow.ArrowWriterProperties {
	return pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem))
}

// leafArrays appends the leaf arrays of arr in the order pqarrow maps them
// to Parquet leaf columns (depth first).
func leafArrays(arr arrow.Array, out []arrow.Array) []arrow.Array {
	switch a := arr.(type) {
	case *array.Map:
		return leafArrays(a.Items(), leafArrays(a.Keys(), out))
	case array.ListLike:
		return leafArrays(a.ListValues(), out)
	case *array.Struct:
		for i := range a.NumField() {
			out = leafArrays(a.Field(i), out)
		}
		return out
	default:
		return append(out, arr)
	}
}

// highCardinality reports whether more than half of the first non-null
// values of arrs, string or binary arrays of one type read in order, are
// distinct, judged on at least cardinalitySample of them. It looks at up
// to cardinalityProbe values in all.
func highCardinality(arrs []arrow.Array) bool {
	seen := make(map[string]struct{})
	nonNull, looked := 0, 0
	for _, arr := range arrs {
		var value func(int) string
		switch a := arr.(type) {
		case *array.String:
			value = a.Value
		case *array.LargeString:
			value = a.Value
		case *array.Binary:
			value = a.ValueString
		case *array.LargeBinary:
			value = a.ValueString
		default:
			return false
		}
		n := min(arr.Len(), cardinalityProbe-looked)
		looked += n
		for i := range n {
			if arr.IsNull(i) {
				continue
			}
			nonNull++
			seen[value(i)] = struct{}{}
		}
		if looked == cardinalityProbe {
			break
		}
	}
	return nonNull >= cardinalitySample && 2*len(seen) > nonNull
}

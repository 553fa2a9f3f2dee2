package iceberg

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	iceberg "github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/sink"
)

// dayField is the name of the partition field, day(timestamp).
const dayField = "timestamp_day"

// FormatVersion is the Iceberg format version of the tables weir
// creates: 3, whose timestamptz_ns type is what weir's files store.
const FormatVersion = 3

// icebergSchema converts the Arrow schema of weir's files to an Iceberg
// schema, for a table of format version, with fresh field IDs (from 1,
// in column order). The timestamp columns (Arrow timestamp[ns, UTC],
// Parquet TIMESTAMP(NANOS, adjusted to UTC)) become timestamptz_ns in a
// version 3 table, the files' own type; in a version 2 table (created
// by weir before version 3), which has no nanosecond type, timestamptz
// (microseconds). Unsigned 32-bit columns (flags) become long, as Iceberg has no
// unsigned types and long holds every uint32; everything else maps as
// iceberg-go maps it (utf8 → string, map<utf8,utf8> → map<string,
// string>, int32 → int, int64 → long, float64 → double, bool →
// boolean). Non-nullable columns are required.
func icebergSchema(sc *arrow.Schema, version int) (*iceberg.Schema, error) {
	fields := make([]arrow.Field, sc.NumFields())
	for i, f := range sc.Fields() {
		switch t := f.Type.(type) {
		case *arrow.TimestampType:
			unit := arrow.Nanosecond
			if version < 3 {
				unit = arrow.Microsecond
			}
			f.Type = &arrow.TimestampType{Unit: unit, TimeZone: t.TimeZone}
		case *arrow.Uint32Type:
			f.Type = arrow.PrimitiveTypes.Int64
		}
		f.Metadata = arrow.Metadata{}
		fields[i] = f
	}
	out, err := table.ArrowSchemaToIcebergWithFreshIDs(arrow.NewSchema(fields, nil), false)
	if err != nil {
		return nil, fmt.Errorf("iceberg: convert schema %s: %w", sc, err)
	}
	return out, nil
}

// daySpec is the partition spec day(timestamp) over sc.
func daySpec(sc *iceberg.Schema) (iceberg.PartitionSpec, error) {
	f, ok := sc.FindFieldByName(logschema.Timestamp)
	if !ok {
		return iceberg.PartitionSpec{}, fmt.Errorf("iceberg: schema has no %q column to partition by", logschema.Timestamp)
	}
	return iceberg.NewPartitionSpec(iceberg.PartitionField{
		SourceIDs: []int{f.ID}, FieldID: 1000, Name: dayField, Transform: iceberg.DayTransform{},
	}), nil
}

// fileSchema returns the Arrow schema of a lake file: the log schema
// when the file has exactly its columns (every file without promoted
// attribute columns), else the schema in the file's footer, read where
// the file is (its Location) with the IO properties props.
func fileSchema(ctx context.Context, props map[string]string, f sink.FileInfo) (*arrow.Schema, error) {
	base := logschema.Arrow()
	if f.Columns == base.NumFields() {
		return base, nil
	}
	fs, err := iceio.LoadFS(ctx, props, f.Location)
	if err != nil {
		return nil, fmt.Errorf("iceberg: io for %s: %w", f.Location, err)
	}
	r, err := fs.Open(f.Location)
	if err != nil {
		return nil, fmt.Errorf("iceberg: open %s: %w", f.Location, err)
	}
	defer r.Close()
	pf, err := file.NewParquetReader(r)
	if err != nil {
		return nil, fmt.Errorf("iceberg: read footer of %s: %w", f.Location, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("iceberg: read footer of %s: %w", f.Location, err)
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, fmt.Errorf("iceberg: read schema of %s: %w", f.Location, err)
	}
	return sc, nil
}

// dataFile describes a lake file to Iceberg without reading it: its
// location, rows, size, the day partition of its hour, and bounds the
// lake guarantees: every row's timestamp lies in the file's hour (its
// date for a day file, sink.Partition.Day),
// _partition is the file's stream partition, _offset spans MinOffset to
// MaxOffset. Readers use them to skip files. In a version 3 table the
// file's rows get row IDs from firstRowID on (row lineage), which
// iceberg-go requires of files it did not write; pass -1 for a version
// 2 table.
func dataFile(sc *iceberg.Schema, spec iceberg.PartitionSpec, f sink.FileInfo, firstRowID int64) (iceberg.DataFile, error) {
	hour, end := f.Partition.Hour.UTC(), f.Partition.End().UTC()
	day := int32(hour.Truncate(24*time.Hour).Unix() / 86400) // days since 1970-01-01, also before it
	lower := map[int][]byte{}
	upper := map[int][]byte{}
	if c, ok := sc.FindFieldByName(logschema.Timestamp); ok {
		switch c.Type.(type) {
		case iceberg.TimestampTzNsType, iceberg.TimestampNsType:
			lower[c.ID] = le64(hour.UnixNano())
			upper[c.ID] = le64(end.UnixNano() - 1)
		default:
			lower[c.ID] = le64(hour.UnixMicro())
			upper[c.ID] = le64(end.UnixMicro() - 1)
		}
	}
	if c, ok := sc.FindFieldByName(logschema.Partition); ok {
		lower[c.ID] = le32(f.Partition.Part)
		upper[c.ID] = le32(f.Partition.Part)
	}
	if c, ok := sc.FindFieldByName(logschema.Offset); ok && f.MinOffset >= 0 {
		lower[c.ID] = le64(f.MinOffset)
		upper[c.ID] = le64(f.MaxOffset)
	}
	b, err := iceberg.NewDataFileBuilder(spec, iceberg.EntryContentData, f.Location, iceberg.ParquetFile,
		map[int]any{spec.Field(0).FieldID: day}, nil, nil, f.Rows, f.Bytes)
	if err != nil {
		return nil, fmt.Errorf("iceberg: describe %s: %w", f.Location, err)
	}
	if firstRowID >= 0 {
		b = b.FirstRowID(firstRowID)
	}
	return b.LowerBoundValues(lower).UpperBoundValues(upper).Build(), nil
}

func le64(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
func le32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

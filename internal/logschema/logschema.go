// Package logschema owns weir's log schema: the columns of every Arrow
// batch the write path builds, of every Parquet file in the lake and of
// every query view, with their Arrow and DuckDB types, and the names of
// the streams weir writes itself. Other packages name columns through
// it rather than restating them; docs/format.md documents the schema.
//
// The column names follow the OpenTelemetry log data model in snake
// case. The stream, tenant, date and hour are not columns of the files:
// they are the hive directories of the lake, which the query views add
// back (ViewColumns).
package logschema

import (
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// Column names, in schema order.
const (
	Timestamp         = "timestamp"
	ObservedTimestamp = "observed_timestamp"
	SeverityNumber    = "severity_number"
	SeverityText      = "severity_text"
	Body              = "body"
	Attributes        = "attributes"
	Resource          = "resource"
	ServiceName       = "service_name"
	TraceID           = "trace_id"
	SpanID            = "span_id"
	Flags             = "flags"
	// Partition and Offset place a record in its stream: the buffer
	// partition it went through and its offset there, which increase in
	// arrival order within a partition.
	Partition = "_partition"
	Offset    = "_offset"
)

// Columns the query views add to those of the files.
const (
	Stream = "stream" // the stream, from the lake's stream= directory
	Date   = "date"   // from date=
	Hour   = "hour"   // from hour=
)

// AttributePrefix starts the names of attribute columns promoted from the
// attributes map (after Offset in a file, when a stream has them).
const AttributePrefix = "attr_"

// DeadLetterStream is the stream that records failing validation or a
// processor go to, and those salvaged from a damaged write-ahead log.
// Its records are the originals as they arrived, with the AttrDead*
// attributes saying where they came from and why they failed. Clients
// cannot push to it: stream names they choose start with a letter.
const DeadLetterStream = "_dead_letter"

// Attributes of dead-letter records.
const (
	AttrDeadStream = "weir.dead_letter.stream" // stream the record was sent to
	AttrDeadStage  = "weir.dead_letter.stage"  // "validate", "processors[i].<kind>" or "wal"
	AttrDeadError  = "weir.dead_letter.error"  // what went wrong
	AttrDeadTime   = "weir.dead_letter.time"   // when, RFC 3339 with nanoseconds
	// AttrDeadPrefix starts every dead-letter attribute; replay removes
	// them.
	AttrDeadPrefix = "weir.dead_letter."
)

// Column is one column of the schema.
type Column struct {
	Name  string
	Arrow arrow.DataType
	// Nullable columns may hold NULL in files (trace and span ids of
	// records without them).
	Nullable bool
	// SQL is the column's DuckDB type in the query views.
	SQL string
}

// TimestampType is the Arrow type of the timestamp columns.
var TimestampType = &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}

var (
	strMap = arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)

	columns = []Column{
		{Name: Timestamp, Arrow: TimestampType, SQL: "TIMESTAMPTZ"},
		{Name: ObservedTimestamp, Arrow: TimestampType, SQL: "TIMESTAMPTZ"},
		{Name: SeverityNumber, Arrow: arrow.PrimitiveTypes.Int32, SQL: "INTEGER"},
		{Name: SeverityText, Arrow: arrow.BinaryTypes.String, SQL: "VARCHAR"},
		{Name: Body, Arrow: arrow.BinaryTypes.String, SQL: "VARCHAR"},
		{Name: Attributes, Arrow: strMap, SQL: "MAP(VARCHAR, VARCHAR)"},
		{Name: Resource, Arrow: strMap, SQL: "MAP(VARCHAR, VARCHAR)"},
		{Name: ServiceName, Arrow: arrow.BinaryTypes.String, SQL: "VARCHAR"},
		{Name: TraceID, Arrow: arrow.BinaryTypes.String, Nullable: true, SQL: "VARCHAR"},
		{Name: SpanID, Arrow: arrow.BinaryTypes.String, Nullable: true, SQL: "VARCHAR"},
		{Name: Flags, Arrow: arrow.PrimitiveTypes.Uint32, SQL: "UINTEGER"},
		{Name: Partition, Arrow: arrow.PrimitiveTypes.Int32, SQL: "INTEGER"},
		{Name: Offset, Arrow: arrow.PrimitiveTypes.Int64, SQL: "BIGINT"},
	}

	schema = func() *arrow.Schema {
		fields := make([]arrow.Field, len(columns))
		for i, c := range columns {
			fields[i] = arrow.Field{Name: c.Name, Type: c.Arrow, Nullable: c.Nullable}
		}
		return arrow.NewSchema(fields, nil)
	}()

	viewColumns = func() []Column {
		out := []Column{{Name: Stream, SQL: "VARCHAR"}}
		out = append(out, columns...)
		return append(out, Column{Name: Date, SQL: "DATE"}, Column{Name: Hour, SQL: "INTEGER"})
	}()
)

// batchSchema is the schema of columnar batches (see Batch).
var batchSchema = func() *arrow.Schema {
	fields := make([]arrow.Field, 0, len(columns)-2)
	for _, c := range columns {
		switch c.Name {
		case Partition, Offset:
			continue
		case TraceID:
			c.Arrow = &arrow.FixedSizeBinaryType{ByteWidth: 16}
		case SpanID:
			c.Arrow = &arrow.FixedSizeBinaryType{ByteWidth: 8}
		}
		fields = append(fields, arrow.Field{Name: c.Name, Type: c.Arrow, Nullable: c.Nullable})
	}
	return arrow.NewSchema(fields, nil)
}()

// Batch returns the Arrow schema of the columnar batches that cross the
// buffer (internal/record.Batch.Cols): the columns of the files without
// Partition and Offset, which the buffer assigns, and with the trace and
// span ids as fixed_size_binary of 16 and 8 bytes (null when absent)
// rather than the files' hex text.
func Batch() *arrow.Schema { return batchSchema }

// Columns returns the columns of the files, in order. The slice is the
// caller's.
func Columns() []Column { return append([]Column(nil), columns...) }

// Arrow returns the Arrow schema of the batches and files: Columns, in
// order, without promoted attribute columns.
func Arrow() *arrow.Schema { return schema }

// ViewColumns returns the columns of a query view over a stream, in
// order: Stream, the file columns, Date and Hour. Views add promoted
// attribute columns after Offset. The slice is the caller's.
func ViewColumns() []Column { return append([]Column(nil), viewColumns...) }

// EmptyView returns a DuckDB SELECT with the columns of ViewColumns and
// no rows: the view of a stream with no files yet.
func EmptyView() string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range viewColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("NULL::")
		b.WriteString(c.SQL)
		b.WriteString(` AS "`)
		b.WriteString(c.Name)
		b.WriteString(`"`)
	}
	b.WriteString(" WHERE false")
	return b.String()
}

package query

import (
	"database/sql/driver"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/weirlabs/weir/internal/jsonstr"
)

// Format is a result encoding.
type Format int

// Result encodings.
const (
	// FormatJSON writes one JSON object per row, newline-delimited.
	FormatJSON Format = iota
	// FormatCSV writes CSV with a header line.
	FormatCSV
	// FormatArrow writes an Arrow IPC stream.
	FormatArrow
	// FormatParquet writes a Parquet file (zstd), row group by row group.
	FormatParquet
)

// NewWriter returns a ResultWriter that encodes a result in f to w.
//
// A Parquet answer to a SELECT is written by DuckDB, with its own types:
// nested values (lists, maps, structs) stay nested, DECIMAL stays
// decimal, UUID keeps its logical type; HUGEINT, UHUGEINT, INTERVAL, TIME
// WITH TIME ZONE, UNION, BIT and BIGNUM (and values nesting them) are
// DuckDB's text for them, and duplicate column names get DuckDB's
// suffixes (a, a_1). Arrow answers, and EXPLAIN's rows in Parquet, carry
// nested and other values without a faithful Arrow scalar as text (JSON
// text for nested values), as CSV does. Nested values made only of
// strings, booleans and integers are the JSON DuckDB writes for them
// (keys in the value's order); others are encoded by weir (keys sorted).
func NewWriter(f Format, w io.Writer) ResultWriter {
	switch f {
	case FormatCSV:
		return &csvWriter{w: csv.NewWriter(w)}
	case FormatArrow:
		return &arrowWriter{w: w, mem: memory.DefaultAllocator}
	case FormatParquet:
		return &arrowWriter{w: w, mem: memory.DefaultAllocator, parquet: true}
	default:
		return &ndjsonWriter{w: w}
	}
}

// ndjsonWriter writes rows as JSON objects, one per line.
type ndjsonWriter struct {
	w    io.Writer
	cols []Column
	keys [][]byte
	buf  []byte
}

func (j *ndjsonWriter) Begin(cols []Column) error {
	j.cols = cols
	j.keys = make([][]byte, len(cols))
	for i, c := range cols {
		k, _ := json.Marshal(c.Name)
		j.keys[i] = append(k, ':')
	}
	return nil
}

func (j *ndjsonWriter) Row(vals []driver.Value) error {
	b, err := j.appendRow(j.buf[:0], vals)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	j.buf = b
	_, err = j.w.Write(b)
	return err
}

func (j *ndjsonWriter) appendRow(b []byte, vals []driver.Value) ([]byte, error) {
	b = append(b, '{')
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, j.keys[i]...)
		if s, ok := v.(string); ok && j.cols[i].jsonText {
			b = append(b, s...)
			continue
		}
		var err error
		if b, err = appendJSON(b, v, j.cols[i].Type); err != nil {
			return nil, fmt.Errorf("encode column %q: %w", j.cols[i].Name, err)
		}
	}
	return append(b, '}'), nil
}

// appendJSON appends v as JSON to b: the bytes json.Marshal gives for
// jsonValue(v, typ), written directly for the scalars results are
// mostly made of (a sixth of the time, and no allocation, against
// encoding/json: BenchmarkJSONRows) and through encoding/json for the
// rest.
func appendJSON(b []byte, v any, typ string) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return jsonstr.AppendHTML(b, x), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float32:
		return appendJSONFloat(b, float64(x)), nil
	case float64:
		return appendJSONFloat(b, x), nil
	case time.Time:
		return jsonstr.AppendHTML(b, formatTime(x, typ)), nil
	}
	enc, err := json.Marshal(jsonValue(v, typ))
	return append(b, enc...), err
}

// appendJSONFloat appends f as encoding/json writes a float64, or as a
// string when it is not finite (see jsonFloat).
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return jsonstr.AppendHTML(b, strconv.FormatFloat(f, 'g', -1, 64))
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 becomes e-9, as encoding/json writes it
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func (j *ndjsonWriter) End(bool) error { return nil }

// nestedAsJSON implements jsonTextWriter.
func (j *ndjsonWriter) nestedAsJSON() bool { return true }

// nestedAsJSON implements jsonTextWriter: nested values are JSON text in
// CSV.
func (c *csvWriter) nestedAsJSON() bool { return true }

// nestedAsJSON implements jsonTextWriter: nested values are JSON text in
// a result that comes row by row.
func (a *arrowWriter) nestedAsJSON() bool { return true }

// flushRow implements rowFlusher: Row writes each row whole.
func (j *ndjsonWriter) flushRow() error { return nil }

// jsonValue converts a DuckDB driver value to one encoding/json renders
// faithfully: timestamps in RFC 3339, dates as YYYY-MM-DD, big numbers as
// JSON numbers, non-finite floats as strings, UUIDs in their text form.
func jsonValue(v any, typ string) any {
	switch x := v.(type) {
	case nil, bool, string, int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		return x
	case float32:
		return jsonFloat(float64(x))
	case float64:
		return jsonFloat(x)
	case time.Time:
		return formatTime(x, typ)
	case []byte:
		if typ == "UUID" && len(x) == 16 {
			return formatUUID(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case *big.Int:
		return json.Number(x.String())
	case duckdb.Decimal:
		return json.Number(x.String())
	case duckdb.Interval:
		return map[string]any{"months": x.Months, "days": x.Days, "micros": x.Micros}
	case duckdb.OrderedMap:
		keys, vals := x.Keys(), x.Values()
		m := make(map[string]any, len(keys))
		for i, k := range keys {
			m[fmt.Sprint(k)] = jsonValue(vals[i], "")
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e, "")
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonValue(e, "")
		}
		return out
	}
	return fmt.Sprint(v)
}

func jsonFloat(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return f
}

func formatTime(t time.Time, typ string) string {
	switch {
	case typ == "DATE":
		return t.Format(time.DateOnly)
	case strings.HasPrefix(typ, "TIME") && !strings.HasPrefix(typ, "TIMESTAMP"):
		return t.Format("15:04:05.999999")
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func formatUUID(b []byte) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexdigits[c>>4], hexdigits[c&15])
	}
	return string(out)
}

// textValue renders a value for CSV: scalars in their plain text form,
// nested values as JSON, NULL as the empty string.
func textValue(v any, typ string) string {
	switch x := jsonValue(v, typ).(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

type csvWriter struct {
	w    *csv.Writer
	cols []Column
	rec  []string
}

func (c *csvWriter) Begin(cols []Column) error {
	c.cols = cols
	c.rec = make([]string, len(cols))
	for i, col := range cols {
		c.rec[i] = col.Name
	}
	return c.w.Write(c.rec)
}

func (c *csvWriter) Row(vals []driver.Value) error {
	for i, v := range vals {
		c.rec[i] = textValue(v, c.cols[i].Type)
	}
	return c.w.Write(c.rec)
}

func (c *csvWriter) End(bool) error {
	return c.flushRow()
}

// flushRow implements rowFlusher.
func (c *csvWriter) flushRow() error {
	c.w.Flush()
	return c.w.Error()
}

// arrowBatchRows is the row count of each Arrow record batch written.
const arrowBatchRows = 8192

// arrowWriter writes an Arrow IPC stream or, with parquet set, a Parquet
// file (zstd). In Parquet it takes the file DuckDB wrote (writeParquet)
// where it can. A result that comes row by row is built into batches of
// arrowBatchRows rows, written as they fill: in Parquet one row group
// each, with the footer at the end, so it streams to w like the IPC
// stream does.
type arrowWriter struct {
	w       io.Writer
	mem     memory.Allocator
	parquet bool
	cols    []Column
	ipc     *ipc.Writer
	pq      *pqarrow.FileWriter
	// done is set once the whole answer is written (a file sent as is).
	done bool
	// rb and rows build batches from rows.
	rb   *array.RecordBuilder
	rows int
}

// parquetOptions implements columnarWriter: DuckDB writes Parquet
// answers, in zstd, with row groups of 32 Ki rows, which keep its writer
// (and the rereading of a cut answer) within the query memory limit at
// 128 MiB on wide rows. Arrow answers come row by row: DuckDB's Arrow
// interface is not built in (it needs a build tag), and a detour through
// a Parquet file costs more than it saves (bench/RESULTS.md).
func (a *arrowWriter) parquetOptions() string {
	if a.parquet {
		return "COMPRESSION zstd, ROW_GROUP_SIZE 32768"
	}
	return ""
}

func (a *arrowWriter) Begin(cols []Column) error {
	a.cols = cols
	return nil
}

// open starts the encoding of batches of schema.
func (a *arrowWriter) open(schema *arrow.Schema) error {
	if a.parquet {
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd), parquet.WithAllocator(a.mem))
		pw, err := pqarrow.NewFileWriter(schema, a.w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(a.mem)))
		if err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
		a.pq = pw
		return nil
	}
	a.ipc = ipc.NewWriter(a.w, ipc.WithSchema(schema), ipc.WithAllocator(a.mem))
	return nil
}

func (a *arrowWriter) write(rec arrow.RecordBatch) error {
	if a.pq != nil {
		return a.pq.Write(rec)
	}
	return a.ipc.Write(rec)
}

// rowSchema is the schema of a result that comes row by row.
func (a *arrowWriter) rowSchema() *arrow.Schema {
	fields := make([]arrow.Field, len(a.cols))
	for i, c := range a.cols {
		fields[i] = arrow.Field{Name: c.Name, Type: arrowType(c.Type), Nullable: true}
	}
	return arrow.NewSchema(fields, nil)
}

// arrowType maps a DuckDB type name to the Arrow type weir writes it as
// when the result comes row by row. Types without a faithful scalar
// mapping become strings.
func arrowType(t string) arrow.DataType {
	switch t {
	case "BOOLEAN":
		return arrow.FixedWidthTypes.Boolean
	case "TINYINT":
		return arrow.PrimitiveTypes.Int8
	case "SMALLINT":
		return arrow.PrimitiveTypes.Int16
	case "INTEGER":
		return arrow.PrimitiveTypes.Int32
	case "BIGINT":
		return arrow.PrimitiveTypes.Int64
	case "UTINYINT":
		return arrow.PrimitiveTypes.Uint8
	case "USMALLINT":
		return arrow.PrimitiveTypes.Uint16
	case "UINTEGER":
		return arrow.PrimitiveTypes.Uint32
	case "UBIGINT":
		return arrow.PrimitiveTypes.Uint64
	case "FLOAT":
		return arrow.PrimitiveTypes.Float32
	case "DOUBLE":
		return arrow.PrimitiveTypes.Float64
	case "BLOB":
		return arrow.BinaryTypes.Binary
	case "DATE":
		return arrow.FixedWidthTypes.Date32
	case "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE":
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS":
		return &arrow.TimestampType{Unit: arrow.Microsecond}
	case "TIMESTAMP_NS":
		return &arrow.TimestampType{Unit: arrow.Nanosecond}
	}
	return arrow.BinaryTypes.String
}

func (a *arrowWriter) Row(vals []driver.Value) error {
	if a.rb == nil {
		schema := a.rowSchema()
		if err := a.open(schema); err != nil {
			return err
		}
		a.rb = array.NewRecordBuilder(a.mem, schema)
	}
	for i, v := range vals {
		b := a.rb.Field(i)
		if v == nil {
			b.AppendNull()
			continue
		}
		if err := appendArrow(b, v, a.cols[i].Type); err != nil {
			return fmt.Errorf("column %q: %w", a.cols[i].Name, err)
		}
	}
	a.rows++
	if a.rows == arrowBatchRows {
		return a.flush()
	}
	return nil
}

func appendArrow(b array.Builder, v any, typ string) error {
	switch bb := b.(type) {
	case *array.BooleanBuilder:
		bb.Append(v.(bool))
	case *array.Int8Builder:
		bb.Append(v.(int8))
	case *array.Int16Builder:
		bb.Append(v.(int16))
	case *array.Int32Builder:
		bb.Append(v.(int32))
	case *array.Int64Builder:
		bb.Append(v.(int64))
	case *array.Uint8Builder:
		bb.Append(v.(uint8))
	case *array.Uint16Builder:
		bb.Append(v.(uint16))
	case *array.Uint32Builder:
		bb.Append(v.(uint32))
	case *array.Uint64Builder:
		bb.Append(v.(uint64))
	case *array.Float32Builder:
		bb.Append(v.(float32))
	case *array.Float64Builder:
		bb.Append(v.(float64))
	case *array.BinaryBuilder:
		bb.Append(v.([]byte))
	case *array.Date32Builder:
		bb.Append(arrow.Date32FromTime(v.(time.Time)))
	case *array.TimestampBuilder:
		t := v.(time.Time)
		if bb.Type().(*arrow.TimestampType).Unit == arrow.Nanosecond {
			bb.Append(arrow.Timestamp(t.UnixNano()))
		} else {
			bb.Append(arrow.Timestamp(t.UnixMicro()))
		}
	case *array.StringBuilder:
		bb.Append(textValue(v, typ))
	default:
		return fmt.Errorf("no Arrow builder for %T", b)
	}
	return nil
}

func (a *arrowWriter) flush() error {
	rec := a.rb.NewRecordBatch()
	defer rec.Release()
	a.rows = 0
	return a.write(rec)
}

// writeParquet implements columnarWriter: a Parquet answer is the file
// DuckDB wrote.
func (a *arrowWriter) writeParquet(r *parquetResult) error {
	a.done = true
	_, err := io.Copy(a.w, io.NewSectionReader(r.f, 0, r.size))
	return err
}

func (a *arrowWriter) End(bool) error {
	if a.done {
		return nil
	}
	if a.rb != nil {
		defer a.rb.Release()
		if a.rows > 0 {
			if err := a.flush(); err != nil {
				return err
			}
		}
	}
	if a.pq == nil && a.ipc == nil {
		// No rows: an empty stream or file of the columns.
		if err := a.open(a.rowSchema()); err != nil {
			return err
		}
	}
	if a.pq != nil {
		return a.pq.Close()
	}
	return a.ipc.Close()
}

// rowFlusher is implemented by the ResultWriters of the row formats (CSV
// and JSON lines): after flushRow, everything written so far, which ends
// on a row boundary, has reached the io.Writer.
type rowFlusher interface {
	flushRow() error
}

// chunkWriter collects encoded bytes and hands them on in chunks of about
// size bytes; it backs the streaming Connect responses. With rows set,
// Write only collects, and EndRow, called between rows, hands the chunk
// on once it has size bytes: each chunk then holds whole rows (a row
// larger than size makes a chunk of its own). Without rows, Write cuts
// at size bytes wherever that falls, which suits a byte stream such as
// Arrow IPC.
type chunkWriter struct {
	buf  []byte
	size int
	rows bool
	emit func([]byte) error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	if !c.rows && len(c.buf) >= c.size {
		if err := c.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// EndRow marks a row boundary: the chunk is handed on if it is full.
func (c *chunkWriter) EndRow() error {
	if len(c.buf) >= c.size {
		return c.Flush()
	}
	return nil
}

// Flush hands on what is buffered, if anything.
func (c *chunkWriter) Flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.emit(c.buf)
	c.buf = c.buf[:0]
	return err
}

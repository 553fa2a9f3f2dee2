package bench

import (
	"bytes"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"

	"github.com/weirlabs/weir/internal/logschema"
)

// arrowSchema is the schema of the batches sent with FormatArrow: every
// column of the lake that a client sets (docs/ingest-arrow.md). Zero
// timestamps and absent ids are nulls.
var arrowSchema = arrow.NewSchema([]arrow.Field{
	{Name: logschema.Timestamp, Type: arrow.FixedWidthTypes.Timestamp_ns, Nullable: true},
	{Name: logschema.ObservedTimestamp, Type: arrow.FixedWidthTypes.Timestamp_ns, Nullable: true},
	{Name: logschema.SeverityNumber, Type: arrow.PrimitiveTypes.Int32},
	{Name: logschema.SeverityText, Type: arrow.BinaryTypes.String},
	{Name: logschema.Body, Type: arrow.BinaryTypes.String},
	{Name: logschema.Attributes, Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
	{Name: logschema.Resource, Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
	{Name: logschema.TraceID, Type: &arrow.FixedSizeBinaryType{ByteWidth: 16}, Nullable: true},
	{Name: logschema.SpanID, Type: &arrow.FixedSizeBinaryType{ByteWidth: 8}, Nullable: true},
	{Name: logschema.Flags, Type: arrow.PrimitiveTypes.Uint32},
}, nil)

// arrowEncoder writes batches as Arrow IPC streams, as a columnar client
// prepares them: it appends the records to column builders and writes a
// stream of the schema and one record batch. It is owned by one worker;
// the builders are reused from batch to batch.
type arrowEncoder struct {
	rb      *array.RecordBuilder
	ts, obs *array.TimestampBuilder
	sevNum  *array.Int32Builder
	sevText *array.StringBuilder
	body    *array.StringBuilder
	attrs   *array.MapBuilder
	res     *array.MapBuilder
	trace   *array.FixedSizeBinaryBuilder
	span    *array.FixedSizeBinaryBuilder
	flags   *array.Uint32Builder
	out     bytes.Buffer
}

func newArrowEncoder() *arrowEncoder {
	rb := array.NewRecordBuilder(memory.DefaultAllocator, arrowSchema)
	return &arrowEncoder{
		rb:      rb,
		ts:      rb.Field(0).(*array.TimestampBuilder),
		obs:     rb.Field(1).(*array.TimestampBuilder),
		sevNum:  rb.Field(2).(*array.Int32Builder),
		sevText: rb.Field(3).(*array.StringBuilder),
		body:    rb.Field(4).(*array.StringBuilder),
		attrs:   rb.Field(5).(*array.MapBuilder),
		res:     rb.Field(6).(*array.MapBuilder),
		trace:   rb.Field(7).(*array.FixedSizeBinaryBuilder),
		span:    rb.Field(8).(*array.FixedSizeBinaryBuilder),
		flags:   rb.Field(9).(*array.Uint32Builder),
	}
}

// encode returns recs as an Arrow IPC stream, valid until the next call.
func (e *arrowEncoder) encode(recs []*weirv1.LogRecord) ([]byte, error) {
	e.rb.Reserve(len(recs))
	var body, sev int
	for _, r := range recs {
		body += len(r.GetBody())
		sev += len(r.GetSeverityText())
	}
	e.body.ReserveData(body)
	e.sevText.ReserveData(sev)
	for _, r := range recs {
		appendTime(e.ts, r.GetTimeUnixNano())
		appendTime(e.obs, r.GetObservedTimeUnixNano())
		e.sevNum.Append(int32(r.GetSeverityNumber()))
		e.sevText.Append(r.GetSeverityText())
		e.body.Append(r.GetBody())
		appendKVs(e.attrs, r.GetAttributes())
		appendKVs(e.res, r.GetResource())
		appendID(e.trace, r.GetTraceId())
		appendID(e.span, r.GetSpanId())
		e.flags.Append(r.GetFlags())
	}
	rec := e.rb.NewRecordBatch()
	defer rec.Release()
	e.out.Reset()
	w := ipc.NewWriter(&e.out, ipc.WithSchema(arrowSchema))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("arrow: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("arrow: %w", err)
	}
	return e.out.Bytes(), nil
}

// release frees the builders.
func (e *arrowEncoder) release() { e.rb.Release() }

func appendTime(b *array.TimestampBuilder, ns uint64) {
	if ns == 0 {
		b.AppendNull()
		return
	}
	b.Append(arrow.Timestamp(ns))
}

func appendKVs(b *array.MapBuilder, kvs []*weirv1.KeyValue) {
	b.Append(true)
	keys, items := b.KeyBuilder().(*array.StringBuilder), b.ItemBuilder().(*array.StringBuilder)
	for _, kv := range kvs {
		keys.Append(kv.GetKey())
		items.Append(anyText(kv.GetValue()))
	}
}

func appendID(b *array.FixedSizeBinaryBuilder, id []byte) {
	if len(id) == 0 {
		b.AppendNull()
		return
	}
	b.Append(id)
}

// arrowRows counts the rows of an Arrow IPC stream.
func arrowRows(data []byte) (int, error) {
	rd, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	defer rd.Release()
	n := 0
	for rd.Next() {
		n += int(rd.RecordBatch().NumRows())
	}
	return n, rd.Err()
}

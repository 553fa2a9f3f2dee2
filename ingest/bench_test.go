package ingest

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/proto"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"

	"github.com/weirlabs/weir/internal/logschema"
)

// BenchmarkDecode measures request decoding at the edge: protobuf
// unmarshalling of a PushRequest of 1,000 Loghub lines (each with a
// service.name resource attribute and two attributes, as shippers send
// them) and its conversion to a record.Batch. SetBytes is the wire size.
// The arrow case sends the same records as one Arrow IPC record batch in
// arrow_ipc (timestamp, severity_number, severity_text, body, attributes
// and resource columns), decoded by the generated code, then the IPC.
func BenchmarkDecode(b *testing.B) {
	f, err := os.Open(filepath.Join("..", "testdata", "loghub", "HDFS_2k.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	const per = 1000
	req := &weirv1.PushRequest{Stream: "hdfs"}
	now := uint64(time.Now().UnixNano())
	for i := range per {
		req.Records = append(req.Records, &weirv1.LogRecord{
			TimeUnixNano: now, SeverityNumber: 9, SeverityText: "INFO", Body: lines[i%len(lines)],
			Attributes: []*weirv1.KeyValue{
				{Key: "thread.id", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_IntValue{IntValue: int64(i % 64)}}},
				{Key: "code.function", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "PacketResponder.run"}}},
			},
			Resource: []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "datanode"}}}},
		})
	}
	wire, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	arrowWire, err := proto.Marshal(&weirv1.PushRequest{Stream: "hdfs", ArrowIpc: arrowOf(b, req.Records)})
	if err != nil {
		b.Fatal(err)
	}
	s := &Service{cfg: DefaultConfig(), mem: memory.DefaultAllocator, now: time.Now}
	for _, c := range []struct {
		name  string
		codec connect.Codec
		wire  []byte
	}{{"proto", protoCodec{}, wire}, {"vtproto", Codec(), wire}, {"arrow", Codec(), arrowWire}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.wire)))
			for b.Loop() {
				var msg weirv1.PushRequest
				if err := c.codec.Unmarshal(c.wire, &msg); err != nil {
					b.Fatal(err)
				}
				bt, err := s.batchOf("default", msg.GetStream(), payload{msg.GetRecords(), msg.GetArrowIpc()}, "", 0)
				if err != nil {
					b.Fatal(err)
				}
				if len(bt.Records) != per {
					b.Fatalf("%d records", len(bt.Records))
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// arrowOf writes records as one Arrow IPC record batch, as a columnar
// client would send them.
func arrowOf(b *testing.B, recs []*weirv1.LogRecord) []byte {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: logschema.Timestamp, Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
		{Name: logschema.SeverityNumber, Type: arrow.PrimitiveTypes.Int32},
		{Name: logschema.SeverityText, Type: arrow.BinaryTypes.String},
		{Name: logschema.Body, Type: arrow.BinaryTypes.String},
		{Name: logschema.Attributes, Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
		{Name: logschema.Resource, Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
	}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	kvs := func(mb *array.MapBuilder, kvs []*weirv1.KeyValue) {
		mb.Append(true)
		for _, kv := range kvs {
			mb.KeyBuilder().(*array.StringBuilder).Append(kv.GetKey())
			mb.ItemBuilder().(*array.StringBuilder).Append(valueText(kv.GetValue()))
		}
	}
	for _, r := range recs {
		rb.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.GetTimeUnixNano()))
		rb.Field(1).(*array.Int32Builder).Append(int32(r.GetSeverityNumber()))
		rb.Field(2).(*array.StringBuilder).Append(r.GetSeverityText())
		rb.Field(3).(*array.StringBuilder).Append(r.GetBody())
		kvs(rb.Field(4).(*array.MapBuilder), r.GetAttributes())
		kvs(rb.Field(5).(*array.MapBuilder), r.GetResource())
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	var out bytes.Buffer
	w := ipc.NewWriter(&out, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return out.Bytes()
}

// protoCodec is the standard library's decoding, for comparison.
type protoCodec struct{}

func (protoCodec) Name() string                  { return "proto" }
func (protoCodec) Marshal(m any) ([]byte, error) { return proto.Marshal(m.(proto.Message)) }
func (protoCodec) Unmarshal(data []byte, m any) error {
	return proto.Unmarshal(data, m.(proto.Message))
}

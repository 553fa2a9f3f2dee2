package ingest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/proto"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform"
	"github.com/weirlabs/weir/transform/arrowbatch"
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
				bt, err := s.batchOf(context.Background(), "default", msg.GetStream(), payload{msg.GetRecords(), msg.GetArrowIpc()}, "", 0)
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

// rowsOnly hides a Processor's RuleChecker, so that every Arrow batch
// takes the row path: the path of every Arrow batch before columnar
// batches, for comparison.
type rowsOnly struct{ p Processor }

func (r rowsOnly) Process(dst []*record.Batch, b *record.Batch) ([]*record.Batch, error) {
	return r.p.Process(dst, b)
}

func (r rowsOnly) DeadLetter(rec *record.Record, stream, stage, errText string) record.Record {
	return r.p.DeadLetter(rec, stream, stage, errText)
}

// discardWriter is a sink that drops what it is given.
type discardWriter struct{}

func (discardWriter) Write(context.Context, sink.Partition, ...arrow.RecordBatch) error { return nil }

// BenchmarkArrowPath measures the write path of an Arrow IPC push up to
// the sink: the request's decoding, validation, the buffer with its
// write-ahead log (appended to, ACCEPTED: the fsyncs' latency would hide
// the CPU cost), and the Arrow batcher, whose finished batches a
// discarding sink drops; the buffer's backpressure makes the loop run at
// the pace of the slower of ingest and the batcher. Each push is
// 1,000 Loghub lines (as BenchmarkDecode's) on one stream of one
// service; "columnar" keeps the batch in columns end to end, "rows" turns
// it into records at ingest and back into Arrow in the batcher, as every
// Arrow batch did before.
func BenchmarkArrowPath(b *testing.B) {
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
	now := uint64(time.Now().UnixNano())
	var recs []*weirv1.LogRecord
	for i := range per {
		recs = append(recs, &weirv1.LogRecord{
			TimeUnixNano: now + uint64(i), SeverityNumber: 9, SeverityText: "INFO", Body: lines[i%len(lines)],
			Attributes: []*weirv1.KeyValue{
				{Key: "thread.id", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_IntValue{IntValue: int64(i % 64)}}},
				{Key: "code.function", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "PacketResponder.run"}}},
			},
			Resource: []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "datanode"}}}},
		})
	}
	data := arrowOf(b, recs)
	for _, columnar := range []bool{true, false} {
		name := "rows"
		if columnar {
			name = "columnar"
		}
		b.Run(name, func(b *testing.B) {
			bc := buffer.DefaultConfig()
			bc.WALDir = b.TempDir()
			buf, err := buffer.New(bc, buffer.Deps{NewConsumer: func(k buffer.Key) buffer.Consumer {
				bt, err := arrowbatch.NewBatcher(arrowbatch.DefaultConfig(), k.Tenant, k.Stream, k.Partition, discardWriter{}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				return bt
			}})
			if err != nil {
				b.Fatal(err)
			}
			if err := buf.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			pipe, err := transform.NewPipeline(transform.PipelineConfig{Limits: record.Limits{MaxFuture: 24 * time.Hour}})
			if err != nil {
				b.Fatal(err)
			}
			var proc Processor = pipe
			if !columnar {
				proc = rowsOnly{pipe}
			}
			svc, err := NewService(DefaultConfig(), proc, buf, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			cpu0 := processCPU(b)
			for b.Loop() {
				res, err := svc.push(context.Background(), "default", "hdfs", payload{arrow: data}, buffer.Accepted, "", 0, true)
				if err != nil || res.n != per {
					b.Fatalf("push: %d records, %v", res.n, err)
				}
			}
			if err := buf.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
			// CPU per record counts every goroutine (the batcher's too)
			// and is little affected by others sharing the machine.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N*per), "cpu-ns/record")
		})
	}
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

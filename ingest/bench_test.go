package ingest

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// BenchmarkDecode measures request decoding at the edge: protobuf
// unmarshalling of a PushRequest of 1,000 Loghub lines (each with a
// service.name resource attribute and two attributes, as shippers send
// them) and its conversion to a record.Batch. SetBytes is the wire size.
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
		req.Records = append(req.Records, &weirv1.Record{
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
	s := &Service{cfg: DefaultConfig(), now: time.Now}
	for _, c := range []struct {
		name  string
		codec connect.Codec
	}{{"proto", protoCodec{}}, {"vtproto", Codec()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				var msg weirv1.PushRequest
				if err := c.codec.Unmarshal(wire, &msg); err != nil {
					b.Fatal(err)
				}
				if _, err := s.batchOf("default", msg.GetStream(), msg.GetRecords(), "", 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// protoCodec is the standard library's decoding, for comparison.
type protoCodec struct{}

func (protoCodec) Name() string                  { return "proto" }
func (protoCodec) Marshal(m any) ([]byte, error) { return proto.Marshal(m.(proto.Message)) }
func (protoCodec) Unmarshal(data []byte, m any) error {
	return proto.Unmarshal(data, m.(proto.Message))
}

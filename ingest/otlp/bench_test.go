package otlp

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// BenchmarkDecode measures an OTLP request at the edge: the bounds
// check, decoding and conversion to records, for the same 1,000 Loghub
// lines as ingest's BenchmarkDecode (a service.name resource attribute,
// thread.id and code.function attributes, severity, time), sent as
// OTLP/gRPC or OTLP/HTTP protobuf ("proto") and OTLP/JSON ("json"). It
// reports ns/record, to compare with ingest's BenchmarkDecode/vtproto,
// the Connect path. SetBytes is the wire size.
func BenchmarkDecode(b *testing.B) {
	f, err := os.Open(filepath.Join("..", "..", "testdata", "loghub", "HDFS_2k.log"))
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
	sl := &logspb.ScopeLogs{}
	for i := range per {
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
			TimeUnixNano: now, SeverityNumber: 9, SeverityText: "INFO",
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: lines[i%len(lines)]}},
			Attributes: []*commonpb.KeyValue{
				{Key: "thread.id", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(i % 64)}}},
				{Key: "code.function", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "PacketResponder.run"}}},
			},
		})
	}
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "datanode"}}}}},
		ScopeLogs: []*logspb.ScopeLogs{sl},
	}}}
	wire, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	js, err := protojson.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	dec, err := newDecoder(cfg.MaxMessageBytes)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		wire []byte
		json bool
	}{{"proto", wire, false}, {"json", js, true}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.wire)))
			for b.Loop() {
				var msg collogspb.ExportLogsServiceRequest
				var err error
				if c.json {
					err = dec.decodeJSON(c.wire, &msg)
				} else {
					err = dec.decodeProto(c.wire, &msg)
				}
				if err != nil {
					b.Fatal(err)
				}
				conv := converter{cfg: &cfg, hexIDs: c.json}
				conv.convert(&msg)
				if len(conv.groups) != 1 || len(conv.groups[0].recs) != per {
					b.Fatalf("%d groups", len(conv.groups))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/record")
		})
	}
}

package otlp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weirlabs/weir/internal/protolimit"
)

// seedRequest holds every kind of value and field the converter reads.
func seedRequest() *collogspb.ExportLogsServiceRequest {
	s := func(v string) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}
	}
	kvlist := &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
		{Key: "a", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -3}}},
		{Key: "b", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
			s("q\"uote\n"), {Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}}, {Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1, 2}}}, {},
		}}}}},
	}}}}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: s("Fuzz-Svc")}}},
		ScopeLogs: []*logspb.ScopeLogs{{
			Scope: &commonpb.InstrumentationScope{Name: "lib", Version: "1", Attributes: []*commonpb.KeyValue{{Key: "s", Value: s("x")}}},
			LogRecords: []*logspb.LogRecord{
				{TimeUnixNano: 1, ObservedTimeUnixNano: 2, SeverityNumber: 9, SeverityText: "INFO", Body: kvlist,
					Attributes: []*commonpb.KeyValue{{Key: "m", Value: kvlist}, {Key: "m.a", Value: s("dup")}, {Key: "e", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{}}}}},
					TraceId:    make([]byte, 16), SpanId: make([]byte, 8), Flags: 1, EventName: "ev"},
				{Body: s("short ids"), TraceId: []byte{1}, SpanId: []byte{2, 3}, TimeUnixNano: 1 << 63},
			},
		}},
	}}}
}

// checkConverted checks what a converter made of req: every record is
// in one group, rejects line up with records, and every structured
// value became valid JSON.
func checkConverted(t *testing.T, c *converter, req *collogspb.ExportLogsServiceRequest) {
	want := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			want += len(sl.GetLogRecords())
		}
	}
	got, rejected := 0, 0
	for _, g := range c.groups {
		got += len(g.recs)
		if g.rejects != nil && len(g.rejects) != len(g.recs) {
			t.Fatalf("group %s: %d rejects for %d records", g.stream, len(g.rejects), len(g.recs))
		}
		for i, r := range g.recs {
			if g.rejects != nil && g.rejects[i] != nil {
				rejected++
			}
			seen := map[string]bool{}
			for _, kv := range r.Attributes {
				if seen[kv.Key] {
					t.Fatalf("duplicate attribute %q", kv.Key)
				}
				seen[kv.Key] = true
				if strings.HasPrefix(kv.Value, "[") && !json.Valid([]byte(kv.Value)) {
					t.Fatalf("attribute %q: invalid JSON %q", kv.Key, kv.Value)
				}
			}
			if (strings.HasPrefix(r.Body, "[") || strings.HasPrefix(r.Body, "{")) && !json.Valid([]byte(r.Body)) {
				// Only a structured body can start so and be invalid;
				// a string body is kept as sent.
				var isString bool
				for _, rl := range req.GetResourceLogs() {
					for _, sl := range rl.GetScopeLogs() {
						for _, lr := range sl.GetLogRecords() {
							if lr.GetBody().GetStringValue() == r.Body {
								isString = true
							}
						}
					}
				}
				if !isString {
					t.Fatalf("body: invalid JSON %q", r.Body)
				}
			}
		}
	}
	if got != want || got != c.n || rejected != c.rejected {
		t.Fatalf("converted %d of %d records (counted %d), %d rejected (counted %d)", got, want, c.n, rejected, c.rejected)
	}
}

// FuzzDecode runs arbitrary bytes through both decoders and the
// converter: nothing panics, overflows the stack or loses a record.
func FuzzDecode(f *testing.F) {
	seed := seedRequest()
	wire, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	js, err := protojson.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wire)
	f.Add(js)
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"zz","body":{"arrayValue":{"values":[{"stringValue":"x"}]}}}]}]}]}`))
	f.Add([]byte{0x0a, 0x80, 0x80, 0x80, 0x80, 0x10})
	f.Add([]byte(strings.Repeat("[", 300)))
	cfg := DefaultConfig()
	cfg.MaxMessageBytes = 1 << 20
	dec, err := newDecoder(cfg.MaxMessageBytes)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, asJSON := range []bool{false, true} {
			req := &collogspb.ExportLogsServiceRequest{}
			var err error
			if asJSON {
				err = dec.decodeJSON(data, req)
			} else {
				err = dec.decodeProto(data, req)
			}
			if err != nil {
				continue
			}
			c := converter{cfg: &cfg, hexIDs: asJSON}
			c.convert(req)
			checkConverted(t, &c, req)
		}
	})
}

// TestJSONRecordsCountedFirst: a JSON request of more records than a
// request may hold is refused before protojson builds them.
func TestJSONRecordsCountedFirst(t *testing.T) {
	d, err := newDecoder(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	flood := []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + strings.Repeat(`{},`, 1_000_000) + `{}]}]}]}`)
	var derr error
	allocs := testing.AllocsPerRun(1, func() {
		derr = d.decodeJSON(flood, &collogspb.ExportLogsServiceRequest{})
	})
	if !errors.Is(derr, protolimit.ErrTooManyRecords) {
		t.Fatalf("flood: %v", derr)
	}
	if allocs > 100 {
		t.Errorf("refusing the flood took %.0f allocations", allocs)
	}
}

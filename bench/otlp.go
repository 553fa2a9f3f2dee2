package bench

import (
	"context"
	"strings"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// ProtocolOTLP sends each batch to a weir server as an OTLP/HTTP export
// request (protobuf) at <server>/v1/logs, into Config.Stream and at
// Config.AckLevel (weir's Weir-Stream and Weir-Ack-Level headers), as an
// OpenTelemetry Collector would.
const ProtocolOTLP = "otlp"

// otlpLogsPath is where weir (and any OTLP/HTTP receiver) takes logs.
const otlpLogsPath = "/v1/logs"

// otlpRequest converts recs into one export request, one ResourceLogs
// per distinct resource in order of first appearance, as an SDK batches
// the records of each resource.
func otlpRequest(recs []*weirv1.LogRecord) *collogspb.ExportLogsServiceRequest {
	req := &collogspb.ExportLogsServiceRequest{}
	byResource := map[string]*logspb.ScopeLogs{}
	for _, r := range recs {
		key := resourceKey(r.GetResource())
		sl := byResource[key]
		if sl == nil {
			sl = &logspb.ScopeLogs{}
			byResource[key] = sl
			req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{
				Resource:  &resourcepb.Resource{Attributes: otlpKVs(r.GetResource())},
				ScopeLogs: []*logspb.ScopeLogs{sl},
			})
		}
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
			TimeUnixNano:         r.GetTimeUnixNano(),
			ObservedTimeUnixNano: r.GetObservedTimeUnixNano(),
			SeverityNumber:       logspb.SeverityNumber(r.GetSeverityNumber()),
			SeverityText:         r.GetSeverityText(),
			Body:                 &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: r.GetBody()}},
			Attributes:           otlpKVs(r.GetAttributes()),
			TraceId:              r.GetTraceId(),
			SpanId:               r.GetSpanId(),
			Flags:                r.GetFlags(),
		})
	}
	return req
}

// resourceKey identifies a resource by its attributes.
func resourceKey(kvs []*weirv1.KeyValue) string {
	var b strings.Builder
	for _, kv := range kvs {
		b.WriteString(kv.GetKey())
		b.WriteByte(0)
		b.WriteString(anyText(kv.GetValue()))
		b.WriteByte(0)
	}
	return b.String()
}

func otlpKVs(kvs []*weirv1.KeyValue) []*commonpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, len(kvs))
	for i, kv := range kvs {
		v := &commonpb.AnyValue{}
		switch x := kv.GetValue().GetValue().(type) {
		case *weirv1.AnyValue_IntValue:
			v.Value = &commonpb.AnyValue_IntValue{IntValue: x.IntValue}
		case *weirv1.AnyValue_DoubleValue:
			v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: x.DoubleValue}
		case *weirv1.AnyValue_BoolValue:
			v.Value = &commonpb.AnyValue_BoolValue{BoolValue: x.BoolValue}
		default:
			v.Value = &commonpb.AnyValue_StringValue{StringValue: anyText(kv.GetValue())}
		}
		out[i] = &commonpb.KeyValue{Key: kv.GetKey(), Value: v}
	}
	return out
}

// runOTLP posts one batch at a time as an OTLP/HTTP protobuf export
// request to <server>/v1/logs (see postBatches); weir answers once the
// records reached the ack level.
func (w *worker) runOTLP(sendCtx, hardCtx context.Context) {
	url := strings.TrimRight(w.r.cfg.Server, "/") + otlpLogsPath
	w.postBatches(sendCtx, hardCtx, url, "application/x-protobuf", func(dst []byte, b batch) ([]byte, error) {
		return proto.MarshalOptions{}.MarshalAppend(dst, otlpRequest(b.recs))
	})
}

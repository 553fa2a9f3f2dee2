package otlp_test

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/weirlabs/weir/internal/record"
)

// TestExporters sends typed attributes, structured and text bodies,
// severities, an event name and trace context with OpenTelemetry's own
// Go exporters, over gRPC and HTTP, compressed or not, and checks each
// record as weir stores it.
func TestExporters(t *testing.T) {
	t.Parallel()
	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ts := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

	for _, c := range []struct {
		name string
		exp  func(ctx context.Context, addr string) (sdklog.Exporter, error)
	}{
		{"grpc", func(ctx context.Context, addr string) (sdklog.Exporter, error) {
			return otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(addr), otlploggrpc.WithInsecure(),
				otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		}},
		{"grpc-gzip", func(ctx context.Context, addr string) (sdklog.Exporter, error) {
			return otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(addr), otlploggrpc.WithInsecure(),
				otlploggrpc.WithCompressor("gzip"), otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		}},
		{"http", func(ctx context.Context, addr string) (sdklog.Exporter, error) {
			return otlploghttp.New(ctx, otlploghttp.WithEndpoint(addr), otlploghttp.WithInsecure(),
				otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
		}},
		{"http-gzip", func(ctx context.Context, addr string) (sdklog.Exporter, error) {
			return otlploghttp.New(ctx, otlploghttp.WithEndpoint(addr), otlploghttp.WithInsecure(),
				otlploghttp.WithCompression(otlploghttp.GzipCompression), otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			ctx := context.Background()
			exp, err := c.exp(ctx, h.addr)
			if err != nil {
				t.Fatal(err)
			}
			// The simple processor exports each record as it is
			// emitted and returns the exporter's error, so an emitted
			// record was acknowledged.
			var exportErr error
			provider := sdklog.NewLoggerProvider(
				sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", "Checkout-API"), attribute.Int("host.cpus", 2))),
				sdklog.WithProcessor(sdklog.NewSimpleProcessor(errRecorder{exp, &exportErr})),
			)
			logger := provider.Logger("weir.test", otellog.WithInstrumentationVersion("1.2.3"))

			var r otellog.Record
			r.SetTimestamp(ts)
			r.SetSeverity(otellog.SeverityError)
			r.SetSeverityText("ERROR")
			r.SetBody(attribute.StringValue("payment failed"))
			r.SetEventName("payment.failure")
			r.AddAttributes(
				attribute.String("str", "v"),
				attribute.Int("int", 42),
				attribute.Float64("float", 1.5),
				attribute.Bool("bool", true),
				attribute.ByteSlice("bytes", []byte{0, 1, 0xff}),
				attribute.Map("map", attribute.String("inner", "x"), attribute.Map("deeper", attribute.Int("n", 7))),
				attribute.Slice("slice", attribute.IntValue(1), attribute.StringValue("a"), attribute.BoolValue(true)),
			)
			spanCtx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
			}))
			logger.Emit(spanCtx, r)
			if exportErr != nil {
				t.Fatalf("export: %v", exportErr)
			}

			var r2 otellog.Record
			r2.SetSeverity(otellog.SeverityInfo)
			r2.SetBody(attribute.MapValue(attribute.Int("a", 1), attribute.Slice("b", attribute.StringValue("x"), attribute.Float64Value(2.5))))
			logger.Emit(ctx, r2)
			if exportErr != nil {
				t.Fatalf("export: %v", exportErr)
			}
			if err := provider.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}

			got := h.records(t)
			recs := got["checkout_api"]
			if len(got) != 1 || len(recs) != 2 {
				t.Fatalf("streams %v, want 2 records in checkout_api", streamCounts(got))
			}
			first := recs[0]
			if first.Timestamp != ts.UnixNano() || first.SeverityNumber != 17 || first.SeverityText != "ERROR" || first.Body != "payment failed" {
				t.Errorf("record 0: time %d, severity %d %q, body %q", first.Timestamp, first.SeverityNumber, first.SeverityText, first.Body)
			}
			if hex.EncodeToString(first.TraceID[:]) != traceID.String() || hex.EncodeToString(first.SpanID[:]) != spanID.String() || first.Flags != 1 {
				t.Errorf("record 0: trace %x span %x flags %d", first.TraceID, first.SpanID, first.Flags)
			}
			want := map[string]string{
				"str": "v", "int": "42", "float": "1.5", "bool": "true", "bytes": "AAH/",
				"map.inner": "x", "map.deeper.n": "7", "slice": `[1,"a",true]`,
				"event.name": "payment.failure", "otel.scope.name": "weir.test", "otel.scope.version": "1.2.3",
			}
			checkKVs(t, "record 0 attributes", first.Attributes, want)
			checkKVs(t, "record 0 resource", first.Resource, map[string]string{"service.name": "Checkout-API", "host.cpus": "2"})
			if first.ObservedTimestamp == 0 {
				t.Error("record 0 has no observed time")
			}

			second := recs[1]
			if second.Body != `{"a":1,"b":["x",2.5]}` || second.SeverityNumber != 9 {
				t.Errorf("record 1: body %q severity %d", second.Body, second.SeverityNumber)
			}
			if second.TraceID != ([16]byte{}) || second.Timestamp != second.ObservedTimestamp || second.Timestamp == 0 {
				t.Errorf("record 1: trace %x, time %d, observed %d", second.TraceID, second.Timestamp, second.ObservedTimestamp)
			}
		})
	}
}

// errRecorder keeps the last error of an exporter.
type errRecorder struct {
	sdklog.Exporter
	err *error
}

func (e errRecorder) Export(ctx context.Context, recs []sdklog.Record) error {
	err := e.Exporter.Export(ctx, recs)
	*e.err = err
	return err
}

func checkKVs(t *testing.T, what string, kvs []record.KV, want map[string]string) {
	t.Helper()
	got := attrs(kvs)
	if len(kvs) != len(got) {
		t.Errorf("%s: duplicate keys in %v", what, kvs)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %v, want %v", what, got, want)
	}
}

func streamCounts(m map[string][]record.Record) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

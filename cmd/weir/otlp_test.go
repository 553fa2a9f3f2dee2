package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/weirlabs/weir/ingest/otlp"
	"github.com/weirlabs/weir/internal/auth"
)

// findTelemetrygen locates OpenTelemetry's load generator. Without it
// the test skips, except under CI (WEIR_CI=1), where .ci/run installs
// it and a missing program is a failure.
func findTelemetrygen(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("telemetrygen"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		if p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "telemetrygen"); fileExists(p) {
			return p
		}
	}
	if os.Getenv("WEIR_CI") != "" {
		t.Fatal("telemetrygen is not installed; .ci/run installs it")
	}
	t.Skip("telemetrygen is not installed (go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@latest); skipping")
	return ""
}

// TestOTLPTelemetrygen sends logs with OpenTelemetry's telemetrygen over
// OTLP/gRPC (API key as a Bearer token) and OTLP/HTTP (as a Basic
// password) to a server with API keys, and checks through SQL that each
// record arrived once, in the stream of its service, with its severity,
// trace context and attributes.
func TestOTLPTelemetrygen(t *testing.T) {
	tg := findTelemetrygen(t)
	key := newTenantKey(t, "otel-collector", "acme", auth.RoleIngest, auth.RoleQuery)
	s := startServer(t, "", func(c *config) { c.Auth.Keys = []auth.Key{key.key} })
	addr := strings.TrimPrefix(s.url, "http://")
	const (
		workers = 2
		perWork = 300
		traceID = "0af7651916cd43dd8448eb211c80319c"
		spanID  = "b7ad6b7169203331"
	)
	for _, c := range []struct {
		mode string
		args []string
		auth string
	}{
		{"grpc", nil, "Bearer " + key.token},
		{"http", []string{"--otlp-http"}, "Basic " + base64.StdEncoding.EncodeToString([]byte("collector:"+key.token))},
	} {
		t.Run(c.mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			args := append([]string{"logs", "--otlp-insecure", "--otlp-endpoint", addr,
				"--logs", fmt.Sprint(perWork), "--workers", fmt.Sprint(workers), "--rate", "0",
				"--body", "telemetrygen over " + c.mode, "--service", "TG-" + c.mode,
				"--severity-text", "WARN", "--severity-number", "13",
				"--trace-id", traceID, "--span-id", spanID,
				"--telemetry-attributes", fmt.Sprintf("case=%q", c.mode),
				"--otlp-header", fmt.Sprintf("Authorization=%q", c.auth),
			}, c.args...)
			out, err := exec.CommandContext(ctx, tg, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("telemetrygen: %v\n%s", err, out)
			}
			stream := "tg_" + c.mode
			n := int64(workers * perWork)
			countAs(t, s.url, key.token, fmt.Sprintf("SELECT count(*) FROM %s", stream), n)
			countAs(t, s.url, key.token, fmt.Sprintf(`SELECT count(*) FROM %s WHERE body = 'telemetrygen over %s'
				AND severity_number = 13 AND severity_text = 'WARN' AND service_name = 'TG-%s'
				AND trace_id = '%s' AND span_id = '%s' AND attributes['case'] = '%s'`,
				stream, c.mode, c.mode, traceID, spanID, c.mode), n)
		})
	}
	countAs(t, s.url, key.token, "SELECT count(*) FROM logs WHERE stream = '_dead_letter'", 0)
}

func otlpString(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

// TestOTLPPartialSuccessAndLimits posts to a real server: records with
// bad ids are dead-lettered and counted in the partial success while the
// others are stored, over OTLP/HTTP and OTLP/gRPC (API key as ApiKey and
// Splunk schemes); Weir-Stream and Weir-Ack-Level are honoured; a gzip
// bomb is refused with 413 under ingest.max_message_bytes.
func TestOTLPPartialSuccessAndLimits(t *testing.T) {
	key := newTenantKey(t, "sdk", "acme", auth.RoleIngest, auth.RoleQuery)
	s := startServer(t, "", func(c *config) {
		c.Auth.Keys = []auth.Key{key.key}
		c.Ingest.MaxMessageBytes = 256 << 10
	})
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: otlpString("checkout")}}},
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
			{Body: otlpString("kept 1"), SeverityNumber: 17, SeverityText: "ERROR", TraceId: bytes.Repeat([]byte{0xab}, 16),
				Attributes: []*commonpb.KeyValue{{Key: "http", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
					Values: []*commonpb.KeyValue{{Key: "status", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 503}}}}}}}}}},
			{Body: otlpString("bad trace id"), TraceId: []byte{1, 2, 3}},
			{Body: otlpString("kept 2"), SeverityNumber: 9},
		}}},
	}}}
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	post := func(body []byte, hdr map[string]string) (int, []byte) {
		t.Helper()
		r, _ := http.NewRequest(http.MethodPost, s.url+otlp.HTTPPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-protobuf")
		r.Header.Set("Authorization", "ApiKey "+key.token)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, raw
	}

	status, raw := post(wire, map[string]string{"Weir-Ack-Level": "durable"})
	var resp collogspb.ExportLogsServiceResponse
	if status != http.StatusOK || proto.Unmarshal(raw, &resp) != nil {
		t.Fatalf("HTTP: %d %q", status, raw)
	}
	if ps := resp.GetPartialSuccess(); ps.GetRejectedLogRecords() != 1 || !strings.Contains(ps.GetErrorMessage(), "trace_id 010203 has 3 bytes") {
		t.Errorf("HTTP partial success: %v", ps)
	}

	grpc := connect.NewClient[collogspb.ExportLogsServiceRequest, collogspb.ExportLogsServiceResponse](newHTTPClient(), s.url+otlp.ExportProcedure, connect.WithGRPC())
	greq := connect.NewRequest(req)
	greq.Header().Set("Authorization", "Splunk "+key.token)
	greq.Header().Set("Weir-Stream", "payments")
	gresp, err := grpc.CallUnary(context.Background(), greq)
	if err != nil {
		t.Fatal(err)
	}
	if gresp.Msg.GetPartialSuccess().GetRejectedLogRecords() != 1 {
		t.Errorf("gRPC partial success: %v", gresp.Msg.GetPartialSuccess())
	}
	unauth := connect.NewRequest(req)
	if _, err := grpc.CallUnary(context.Background(), unauth); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("gRPC without a key: %v", err)
	}

	for _, stream := range []string{"checkout", "payments"} {
		countAs(t, s.url, key.token, fmt.Sprintf("SELECT count(*) FROM %s", stream), 2)
		countAs(t, s.url, key.token, fmt.Sprintf(`SELECT count(*) FROM %s WHERE body = 'kept 1' AND severity_number = 17
			AND trace_id = '%s' AND attributes['http.status'] = '503'`, stream, strings.Repeat("ab", 16)), 1)
	}
	countAs(t, s.url, key.token, `SELECT count(*) FROM _dead_letter WHERE body = 'bad trace id'
		AND attributes['weir.dead_letter.error'] LIKE '%trace_id 010203 has 3 bytes%'`, 2)

	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 4<<20))
	zw.Close()
	status, raw = post(bomb.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), "once decompressed") {
		t.Errorf("gzip bomb: %d %q", status, raw)
	}
	status, raw = post(wire, map[string]string{"Content-Type": "text/plain"})
	if status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d %q", status, raw)
	}
}

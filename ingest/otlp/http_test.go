package otlp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/otlp"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

func str(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

// request returns an export request of one resource (service.name =
// service) and one scope holding recs.
func request(service string, recs ...*logspb.LogRecord) *collogspb.ExportLogsServiceRequest {
	var res *resourcepb.Resource
	if service != "" {
		res = &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: str(service)}}}
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  res,
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}},
	}}}
}

// deepValue returns a value nesting arrays n deep.
func deepValue(n int) *commonpb.AnyValue {
	v := str("leaf")
	for range n {
		v = &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{v}}}}
	}
	return v
}

// postHTTP posts body to /v1/logs and returns the status, headers and
// answer.
func (h *harness) postHTTP(t *testing.T, contentType, encoding string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+otlp.HTTPPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw
}

// decodeStatus reads a google.rpc.Status answer in the content type the
// server says it used.
func decodeStatus(t *testing.T, hdr http.Header, raw []byte) *statuspb.Status {
	t.Helper()
	st := &statuspb.Status{}
	var err error
	switch ct := hdr.Get("Content-Type"); ct {
	case "application/json":
		err = protojson.Unmarshal(raw, st)
	case "application/x-protobuf":
		err = proto.Unmarshal(raw, st)
	default:
		t.Fatalf("answer of content type %q: %q", ct, raw)
	}
	if err != nil {
		t.Fatalf("decode status %q: %v", raw, err)
	}
	return st
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestHTTPRefusals: each malformed or oversized request fails whole with
// its status and a google.rpc.Status body, and stores nothing.
func TestHTTPRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *otlp.Config) { c.MaxMessageBytes = 64 << 10 })
	good, _ := proto.Marshal(request("api", &logspb.LogRecord{Body: str("ok")}))
	deep, _ := proto.Marshal(request("api", &logspb.LogRecord{Body: deepValue(ingest.MaxValueDepth + 5)}))
	deepJSON := strings.Repeat(`{"arrayValue":{"values":[`, 200) + strings.Repeat(`]}}`, 200)
	deepJSON = `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":` + deepJSON + `}]}]}]}`
	bomb := gzipped(t, make([]byte, 1<<20))
	big := bytes.Repeat([]byte{0}, 65<<10)

	for _, c := range []struct {
		name        string
		contentType string
		encoding    string
		body        []byte
		hdr         map[string]string
		status      int
		code        connect.Code
		inMessage   string
	}{
		{"malformed protobuf", "application/x-protobuf", "", []byte{0x0a, 0xff, 0x01, 0x02}, nil, 400, connect.CodeInvalidArgument, "malformed"},
		{"truncated protobuf", "application/x-protobuf", "", good[:len(good)-2], nil, 400, connect.CodeInvalidArgument, ""},
		{"malformed JSON", "application/json", "", []byte(`{"resourceLogs": [`), nil, 400, connect.CodeInvalidArgument, "JSON"},
		{"deep protobuf", "application/x-protobuf", "", deep, nil, 400, connect.CodeInvalidArgument, "nest"},
		{"deep JSON", "application/json", "", []byte(deepJSON), nil, 400, connect.CodeInvalidArgument, "nest"},
		{"gzip bomb", "application/x-protobuf", "gzip", bomb, nil, 413, connect.CodeResourceExhausted, "decompressed"},
		{"body too large", "application/x-protobuf", "", big, nil, 413, connect.CodeResourceExhausted, "larger than 65536"},
		{"bad gzip", "application/x-protobuf", "gzip", []byte("not gzip"), nil, 400, connect.CodeInvalidArgument, "gzip"},
		{"wrong content type", "text/plain", "", good, nil, 415, connect.CodeInvalidArgument, "Content-Type"},
		{"unknown encoding", "application/x-protobuf", "br", good, nil, 415, connect.CodeInvalidArgument, "Content-Encoding"},
		{"bad ack level", "application/x-protobuf", "", good, map[string]string{"Weir-Ack-Level": "eventually"}, 400, connect.CodeInvalidArgument, "Weir-Ack-Level"},
		{"bad stream header", "application/x-protobuf", "", good, map[string]string{"Weir-Stream": "Bad Name"}, 400, connect.CodeInvalidArgument, "Weir-Stream"},
		{"reserved stream header", "application/json", "", []byte(`{}`), map[string]string{"Weir-Stream": "logs"}, 400, connect.CodeInvalidArgument, "reserved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, hdr, raw := h.postHTTP(t, c.contentType, c.encoding, c.body, c.hdr)
			if status != c.status {
				t.Fatalf("status %d, want %d: %q", status, c.status, raw)
			}
			st := decodeStatus(t, hdr, raw)
			if connect.Code(st.GetCode()) != c.code || !strings.Contains(st.GetMessage(), c.inMessage) {
				t.Errorf("status %v %q, want %v with %q", connect.Code(st.GetCode()), st.GetMessage(), c.code, c.inMessage)
			}
			if hdr.Get("Retry-After") != "" {
				t.Errorf("Retry-After %q on a request that will fail again", hdr.Get("Retry-After"))
			}
		})
	}

	req, _ := http.NewRequest(http.MethodGet, h.url+otlp.HTTPPath, nil)
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if got := h.records(t); len(got) != 0 {
		t.Errorf("refused requests stored %v", streamCounts(got))
	}
}

// TestPartialSuccess: records with ids of the wrong length, in binary
// and JSON requests over HTTP and gRPC, go to the dead-letter stream
// with their reason; the others are stored, and the answer counts the
// rejected ones.
func TestPartialSuccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	recs := []*logspb.LogRecord{
		{Body: str("ok 0"), TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8)},
		{Body: str("bad trace"), TraceId: []byte{1, 2, 3}},
		{Body: str("ok 2")},
		{Body: str("bad span"), SpanId: bytes.Repeat([]byte{2}, 9)},
		{Body: str("bad severity"), SeverityNumber: 99},
	}
	wire, _ := proto.Marshal(request("api", recs...))

	check := func(t *testing.T, resp *collogspb.ExportLogsServiceResponse, want int64, inMessage string) {
		t.Helper()
		ps := resp.GetPartialSuccess()
		if ps.GetRejectedLogRecords() != want || !strings.Contains(ps.GetErrorMessage(), inMessage) || !strings.Contains(ps.GetErrorMessage(), logschema.DeadLetterStream) {
			t.Errorf("partial success %v, want %d rejected and %q", ps, want, inMessage)
		}
	}

	status, hdr, raw := h.postHTTP(t, "application/x-protobuf", "", wire, nil)
	if status != http.StatusOK || hdr.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("protobuf: %d %q: %q", status, hdr.Get("Content-Type"), raw)
	}
	var resp collogspb.ExportLogsServiceResponse
	if err := proto.Unmarshal(raw, &resp); err != nil {
		t.Fatal(err)
	}
	check(t, &resp, 3, "trace_id 010203 has 3 bytes; want 16")

	// OTLP/JSON: hex ids, int64 as strings, enums as numbers.
	jsonBody := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
	"scopeLogs":[{"scope":{"name":"lib","version":"2"},"logRecords":[
	{"timeUnixNano":"1767225600000000000","severityNumber":13,"severityText":"WARN","body":{"stringValue":"json ok"},
	 "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","flags":1,
	 "attributes":[{"key":"n","value":{"intValue":"7"}},{"key":"d","value":{"doubleValue":0.25}}]},
	{"body":{"stringValue":"json bad"},"traceId":"zz8efff798038103d269b633813fc60c"},
	{"body":{"stringValue":"json short"},"spanId":"eee19b7e"}]}]}]}`
	status, hdr, raw = h.postHTTP(t, "application/json", "", []byte(jsonBody), nil)
	if status != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("JSON: %d %q: %q", status, hdr.Get("Content-Type"), raw)
	}
	resp.Reset()
	if err := protojson.Unmarshal(raw, &resp); err != nil {
		t.Fatal(err)
	}
	check(t, &resp, 2, `trace_id "zz8efff798038103d269b633813fc60c" is not 32 hex digits`)

	grpc := connect.NewClient[collogspb.ExportLogsServiceRequest, collogspb.ExportLogsServiceResponse](h.http, h.url+otlp.ExportProcedure, connect.WithGRPC())
	gresp, err := grpc.CallUnary(context.Background(), connect.NewRequest(request("api", recs...)))
	if err != nil {
		t.Fatal(err)
	}
	check(t, gresp.Msg, 3, "trace_id 010203")

	got := h.records(t)
	var bodies []string
	for _, r := range got["api"] {
		bodies = append(bodies, r.Body)
	}
	if fmt.Sprint(bodies) != "[ok 0 ok 2 json ok ok 0 ok 2]" {
		t.Errorf("stored %q", bodies)
	}
	dead := got[logschema.DeadLetterStream]
	if len(dead) != 8 {
		t.Fatalf("%d dead letters, want 8", len(dead))
	}
	reasons := map[string]string{}
	for _, r := range dead {
		reasons[r.Body] = attrs(r.Attributes)[logschema.AttrDeadError]
	}
	for body, want := range map[string]string{
		"bad trace": "trace_id 010203 has 3 bytes", "bad span": "span_id 020202020202020202 has 9 bytes",
		"bad severity": "severity", "json bad": "not 32 hex digits", "json short": `span_id "eee19b7e" is not 16 hex digits`,
	} {
		if !strings.Contains(reasons[body], want) {
			t.Errorf("dead letter %q: reason %q, want %q", body, reasons[body], want)
		}
	}
	for _, r := range got["api"] {
		if r.Body != "json ok" {
			continue
		}
		if fmt.Sprintf("%x/%x", r.TraceID, r.SpanID) != "5b8efff798038103d269b633813fc60c/eee19b7ec3c1b174" || r.Flags != 1 ||
			r.Timestamp != 1767225600000000000 || r.SeverityNumber != 13 || r.SeverityText != "WARN" {
			t.Errorf("JSON record: %+v", r)
		}
		checkKVs(t, "JSON record", r.Attributes, map[string]string{"n": "7", "d": "0.25", "otel.scope.name": "lib", "otel.scope.version": "2"})
	}
}

// TestStreams: records go to the stream their service names (made a
// valid stream name), to the default stream without one, to the
// request's Weir-Stream, or to a fixed stream.
func TestStreams(t *testing.T) {
	t.Parallel()
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: str("Payments.API-v2")}}},
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{Body: str("p1")}, {Body: str("p2")}}}}},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: str("9lives")}}},
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{Body: str("digit")}}}}},
		{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
			{Body: str("none")},
			{Body: str("own"), Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: str("worker")}}},
		}}}},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: str("duckdb_settings")}}},
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{Body: str("reserved")}}}}},
	}}
	wire, _ := proto.Marshal(req)
	for _, c := range []struct {
		name   string
		mutate func(*otlp.Config)
		hdr    map[string]string
		want   string
	}{
		{"service name", nil, nil, "map[otel:[digit none reserved] payments_api_v2:[p1 p2] worker:[own]]"},
		{"header", nil, map[string]string{"Weir-Stream": "edge"}, "map[edge:[p1 p2 digit none own reserved]]"},
		{"fixed", func(c *otlp.Config) { c.Stream = "all" }, map[string]string{"Weir-Stream": "edge"}, "map[all:[p1 p2 digit none own reserved]]"},
		{"attribute", func(c *otlp.Config) { c.StreamAttribute = "team"; c.DefaultStream = "misc" }, nil, "map[misc:[p1 p2 digit none own reserved]]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, c.mutate)
			if status, _, raw := h.postHTTP(t, "application/x-protobuf", "", wire, c.hdr); status != http.StatusOK {
				t.Fatalf("%d: %q", status, raw)
			}
			got := map[string][]string{}
			for s, recs := range h.records(t) {
				for _, r := range recs {
					got[s] = append(got[s], r.Body)
				}
			}
			if fmt.Sprint(got) != c.want {
				t.Errorf("got %v, want %s", got, c.want)
			}
		})
	}
}

// stubSubmitter fails every Submit with err.
type stubSubmitter struct{ err error }

func (s stubSubmitter) Submit(context.Context, string, []record.Record, []error, buffer.Level) (ingest.Result, error) {
	return ingest.Result{}, s.err
}
func (stubSubmitter) ParseLevel(string) (buffer.Level, error) { return buffer.Durable, nil }

// TestRetryableErrors: backpressure and an unavailable buffer become
// 429 and 503 with Retry-After over HTTP, and RESOURCE_EXHAUSTED and
// UNAVAILABLE with RetryInfo over gRPC, which OpenTelemetry's exporters
// retry.
func TestRetryableErrors(t *testing.T) {
	t.Parallel()
	full := connect.NewError(connect.CodeResourceExhausted, errors.New("buffer full"))
	full.Meta().Set("Retry-After", "3")
	for _, c := range []struct {
		err    error
		status int
		code   connect.Code
		retry  string
	}{
		{full, http.StatusTooManyRequests, connect.CodeResourceExhausted, "3"},
		{connect.NewError(connect.CodeUnavailable, errors.New("shutting down")), http.StatusServiceUnavailable, connect.CodeUnavailable, "1"},
	} {
		t.Run(c.code.String(), func(t *testing.T) {
			t.Parallel()
			svc, err := otlp.NewService(otlp.DefaultConfig(), stubSubmitter{c.err})
			if err != nil {
				t.Fatal(err)
			}
			h := &harness{}
			h.serve(t, svc)
			wire, _ := proto.Marshal(request("api", &logspb.LogRecord{Body: str("x")}))
			for _, ct := range []string{"application/x-protobuf", "application/json"} {
				body := wire
				if ct == "application/json" {
					body = []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}`)
				}
				status, hdr, raw := h.postHTTP(t, ct, "", body, nil)
				st := decodeStatus(t, hdr, raw)
				if status != c.status || hdr.Get("Retry-After") != c.retry || connect.Code(st.GetCode()) != c.code {
					t.Errorf("%s: %d, Retry-After %q, status %v", ct, status, hdr.Get("Retry-After"), st)
				}
				if d := retryDelay(t, st); d != c.retry {
					t.Errorf("%s: RetryInfo delay %q, want %q s", ct, d, c.retry)
				}
			}
			grpc := connect.NewClient[collogspb.ExportLogsServiceRequest, collogspb.ExportLogsServiceResponse](h.http, h.url+otlp.ExportProcedure, connect.WithGRPC())
			_, err = grpc.CallUnary(context.Background(), connect.NewRequest(request("api", &logspb.LogRecord{Body: str("x")})))
			var cerr *connect.Error
			if !errors.As(err, &cerr) || cerr.Code() != c.code {
				t.Fatalf("gRPC: %v", err)
			}
			found := false
			for _, d := range cerr.Details() {
				if v, err := d.Value(); err == nil {
					if ri, ok := v.(*errdetails.RetryInfo); ok && fmt.Sprint(ri.GetRetryDelay().GetSeconds()) == c.retry {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("gRPC error without RetryInfo of %s s: %v", c.retry, cerr.Details())
			}
		})
	}
}

func retryDelay(t *testing.T, st *statuspb.Status) string {
	t.Helper()
	for _, d := range st.GetDetails() {
		ri := &errdetails.RetryInfo{}
		if d.UnmarshalTo(ri) == nil {
			return fmt.Sprint(ri.GetRetryDelay().GetSeconds())
		}
	}
	return ""
}

// grpcFrame posts one raw gRPC message and returns the grpc-status and
// grpc-message the server answers with.
func (h *harness) grpcFrame(t *testing.T, msg []byte) (string, string) {
	t.Helper()
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	frame = append(frame, msg...)
	req, _ := http.NewRequest(http.MethodPost, h.url+otlp.ExportProcedure, bytes.NewReader(frame))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	status, message := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if status == "" {
		status, message = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	return status, message
}

// TestGRPCRefusals: malformed, deep and oversized gRPC requests fail
// with INVALID_ARGUMENT and RESOURCE_EXHAUSTED, and store nothing.
func TestGRPCRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *otlp.Config) { c.MaxMessageBytes = 64 << 10 })
	deep, _ := proto.Marshal(request("api", &logspb.LogRecord{Attributes: []*commonpb.KeyValue{{Key: "k", Value: deepValue(ingest.MaxValueDepth + 1)}}}))
	big, _ := proto.Marshal(request("api", &logspb.LogRecord{Body: str(strings.Repeat("x", 70<<10))}))
	for _, c := range []struct {
		name string
		msg  []byte
		code connect.Code
	}{
		{"malformed", []byte{0x0a, 0x05, 0x01}, connect.CodeInvalidArgument},
		{"deep", deep, connect.CodeInvalidArgument},
		{"too large", big, connect.CodeResourceExhausted},
	} {
		status, message := h.grpcFrame(t, c.msg)
		if status != fmt.Sprint(int(c.code)) {
			t.Errorf("%s: grpc-status %s %q, want %d", c.name, status, message, c.code)
		}
	}
	if got := h.records(t); len(got) != 0 {
		t.Errorf("refused requests stored %v", streamCounts(got))
	}
}

// TestTooManyRecords: a request of more records than a request may hold
// is refused as too large, over HTTP in either encoding and over gRPC,
// and nothing of it is stored; a binary one before it is decoded.
func TestTooManyRecords(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	recs := make([]*logspb.LogRecord, 100_001)
	for i := range recs {
		recs[i] = &logspb.LogRecord{}
	}
	bin, err := proto.Marshal(request("api", recs...))
	if err != nil {
		t.Fatal(err)
	}
	json := `{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + strings.Repeat(`{},`, 100_000) + `{}]}]}]}`
	for ct, body := range map[string][]byte{"application/x-protobuf": bin, "application/json": []byte(json)} {
		status, hdr, raw := h.postHTTP(t, ct, "", body, nil)
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d, want 413: %.200q", ct, status, raw)
		}
		if st := decodeStatus(t, hdr, raw); connect.Code(st.GetCode()) != connect.CodeResourceExhausted || !strings.Contains(st.GetMessage(), "more than 100000 records") {
			t.Errorf("%s: status %v %q", ct, connect.Code(st.GetCode()), st.GetMessage())
		}
	}
	if status, message := h.grpcFrame(t, bin); status == "0" || !strings.Contains(message, "more than 100000 records") {
		t.Errorf("gRPC: grpc-status %s %q, want a refusal", status, message)
	}
	if got := h.records(t); len(got) != 0 {
		t.Errorf("refused requests stored %v", streamCounts(got))
	}
}

// TestXGzip: x-gzip is gzip, as the other protocols take it.
func TestXGzip(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	wire, _ := proto.Marshal(request("api", &logspb.LogRecord{Body: str("zipped")}))
	if status, _, raw := h.postHTTP(t, "application/x-protobuf", "x-gzip", gzipped(t, wire), nil); status != http.StatusOK {
		t.Fatalf("status %d: %q", status, raw)
	}
	if got := h.records(t); len(got) != 1 {
		t.Errorf("stored %v", streamCounts(got))
	}
}

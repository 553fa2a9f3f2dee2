package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirlabs/weir/internal/protolimit"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// wireLayer is one length-prefixed message field around the next layer:
// prefix, then the field's tag and length, then the inner message.
type wireLayer struct {
	prefix []byte
	field  protowire.Number
}

// nestWire encodes n layers, layerAt(0) outermost, around inner, front
// to back in one buffer (the lengths are computed first, innermost
// first): a million levels take linear time and no recursion.
func nestWire(n int, layerAt func(int) wireLayer, inner []byte) []byte {
	sizes := make([]int, n+1)
	sizes[n] = len(inner)
	for i := n - 1; i >= 0; i-- {
		l := layerAt(i)
		sizes[i] = len(l.prefix) + protowire.SizeTag(l.field) + protowire.SizeBytes(sizes[i+1])
	}
	out := make([]byte, 0, sizes[0])
	for i := range n {
		l := layerAt(i)
		out = append(out, l.prefix...)
		out = protowire.AppendTag(out, l.field, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(sizes[i+1]))
	}
	return append(out, inner...)
}

// deepPush encodes a PushRequest to stream "app" of one record whose
// attribute "a" holds a value nested levels deep in arrays (1 = a
// scalar).
func deepPush(levels int) []byte {
	str := func(field protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, field, protowire.BytesType), s)
	}
	head := []wireLayer{
		{str(1, "app"), 2},  // PushRequest.stream, .records
		{str(5, "deep"), 6}, // Record.body, .attributes
		{str(1, "a"), 2},    // KeyValue.key, .value
	}
	cycle := []wireLayer{{nil, 6}, {nil, 1}} // AnyValue.array_value, ArrayValue.values
	return nestWire(len(head)+2*(levels-1), func(i int) wireLayer {
		if i < len(head) {
			return head[i]
		}
		return cycle[(i-len(head))%2]
	}, str(1, "x"))
}

// nestedValue returns a value nested levels deep in arrays, built
// without recursion.
func nestedValue(levels int) *weirv1.AnyValue {
	v := &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "x"}}
	for range levels - 1 {
		v = &weirv1.AnyValue{Value: &weirv1.AnyValue_ArrayValue{ArrayValue: &weirv1.ArrayValue{Values: []*weirv1.AnyValue{v}}}}
	}
	return v
}

func pushOfValue(v *weirv1.AnyValue) *weirv1.PushRequest {
	return &weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{{Body: "nested", Attributes: []*weirv1.KeyValue{{Key: "a", Value: v}}}}}
}

// rawPost sends body to the Push endpoint with contentType and returns
// the response, its body read.
func (h *harness) rawPost(t *testing.T, path, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if strings.HasPrefix(contentType, "application/grpc") {
		req.Header.Set("TE", "trailers")
	}
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

// checkAlive pushes one normal record, which must be accepted.
func (h *harness) checkAlive(t *testing.T, after string) {
	t.Helper()
	resp, err := h.client.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{{Body: "after " + after}}}))
	if err != nil || resp.Msg.GetAccepted() != 1 {
		t.Fatalf("a normal push after %s: %v, %v", after, resp, err)
	}
}

const deepMessage = "attribute nesting deeper than 32 levels"

// TestDeepNesting sends the attack, a push whose attribute value nests a
// million levels deep (about 9.5 MB, under the size limit), by hand over
// the Connect and gRPC protocols, and values just past the bound through
// generated clients in binary and JSON: each is refused with
// INVALID_ARGUMENT, the server stays up, and a value at the bound is
// stored.
func TestDeepNesting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	attack := deepPush(1_000_000)
	if len(attack) < 9<<20 || len(attack) >= DefaultConfig().MaxMessageBytes {
		t.Fatalf("the attack is %d bytes, want about 9.5 MB, under the limit", len(attack))
	}

	// Connect protocol, unary, binary.
	resp, body := h.rawPost(t, "/weir.v1.IngestService/Push", "application/proto", attack)
	var cerr struct{ Code, Message string }
	if err := json.Unmarshal(body, &cerr); err != nil {
		t.Fatalf("Connect response %d %q: %v", resp.StatusCode, body, err)
	}
	if resp.StatusCode != http.StatusBadRequest || cerr.Code != "invalid_argument" || !strings.Contains(cerr.Message, deepMessage) {
		t.Errorf("Connect: %d %+v, want 400 invalid_argument %q", resp.StatusCode, cerr, deepMessage)
	}
	h.checkAlive(t, "the Connect attack")

	// gRPC: one length-prefixed message; the status is in the trailers.
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(attack)))
	resp, _ = h.rawPost(t, "/weir.v1.IngestService/Push", "application/grpc", append(frame, attack...))
	if st, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message"); st != "3" || !strings.Contains(msg, "nesting") {
		t.Errorf("gRPC: status %q %q, want 3 (INVALID_ARGUMENT) saying %q", st, msg, deepMessage)
	}
	h.checkAlive(t, "the gRPC attack")

	// gRPC stream: the request fails the stream.
	resp, _ = h.rawPost(t, "/weir.v1.IngestService/PushStream", "application/grpc", append(frame, attack...))
	if st := resp.Trailer.Get("Grpc-Status"); st != "3" {
		t.Errorf("gRPC stream: status %q, want 3", st)
	}
	h.checkAlive(t, "the gRPC stream attack")

	// JSON nested a million levels, over the Connect protocol.
	deepJSON := `{"stream":"app","records":[{"attributes":[{"key":"a","value":` +
		strings.Repeat(`{"arrayValue":{"values":[`, 500_000) + `{"stringValue":"x"}` + strings.Repeat(`]}}`, 500_000) + `}]}]}`
	resp, body = h.rawPost(t, "/weir.v1.IngestService/Push", "application/json", []byte(deepJSON))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "JSON nesting deeper than") {
		t.Errorf("JSON: %d %s", resp.StatusCode, body)
	}
	h.checkAlive(t, "the JSON attack")

	// Just past the bound, through generated clients; then at the bound.
	for name, c := range map[string]interface {
		Push(context.Context, *connect.Request[weirv1.PushRequest]) (*connect.Response[weirv1.PushResponse], error)
	}{"connect": h.client, "grpc": h.grpc, "json": h.json} {
		_, err := c.Push(context.Background(), connect.NewRequest(pushOfValue(nestedValue(MaxValueDepth+1))))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), deepMessage) {
			t.Errorf("%s: %d levels: %v, want invalid_argument %q", name, MaxValueDepth+1, err, deepMessage)
		}
		resp, err := c.Push(context.Background(), connect.NewRequest(pushOfValue(nestedValue(MaxValueDepth))))
		if err != nil || resp.Msg.GetAccepted() != 1 {
			t.Errorf("%s: %d levels: %v, %v", name, MaxValueDepth, resp, err)
		}
	}
	want := strings.Repeat("[", MaxValueDepth-1) + `"x"` + strings.Repeat("]", MaxValueDepth-1)
	stored := 0
	for _, r := range h.records(t, "app") {
		if r.Body == "nested" {
			stored++
			if len(r.Attributes) != 1 || r.Attributes[0].Value != want {
				t.Errorf("stored %+v, want a = %s", r.Attributes, want)
			}
		}
	}
	if stored != 3 {
		t.Errorf("%d records at the bound stored, want 3", stored)
	}
}

// TestMessageFlood sends a request of empty values, two bytes each on
// the wire: past one message per four bytes of the size limit it is
// refused before it is decoded.
func TestMessageFlood(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxMessageBytes = 4096 })
	flood := func(n int) *weirv1.PushRequest {
		arr := &weirv1.ArrayValue{}
		for range n {
			arr.Values = append(arr.Values, &weirv1.AnyValue{})
		}
		return pushOfValue(&weirv1.AnyValue{Value: &weirv1.AnyValue_ArrayValue{ArrayValue: arr}})
	}
	// The request, its record, the attribute, its value and the array:
	// five messages besides the empty values.
	if _, err := h.client.Push(context.Background(), connect.NewRequest(flood(1024-5))); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	_, err := h.client.Push(context.Background(), connect.NewRequest(flood(1024-4)))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "more than 1024 messages") {
		t.Errorf("past the limit: %v", err)
	}
	h.checkAlive(t, "the flood")
}

// TestRecordFlood: a batch of more records than MaxBatchRecords is
// refused before it is decoded (empty records take two bytes each on the
// wire), in either encoding, and the server goes on.
func TestRecordFlood(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxBatchRecords = 100 })
	push := func(n int) *weirv1.PushRequest {
		req := &weirv1.PushRequest{Stream: "app"}
		for range n {
			req.Records = append(req.Records, &weirv1.LogRecord{Body: "x"})
		}
		return req
	}
	jsonClient := weirv1connect.NewIngestServiceClient(h.http, h.url, connect.WithProtoJSON())
	for name, c := range map[string]weirv1connect.IngestServiceClient{"proto": h.client, "json": jsonClient} {
		if _, err := c.Push(context.Background(), connect.NewRequest(push(100))); err != nil {
			t.Errorf("%s: at the limit: %v", name, err)
		}
		_, err := c.Push(context.Background(), connect.NewRequest(push(101)))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "more than 100 records") {
			t.Errorf("%s: past the limit: %v", name, err)
		}
	}
	// On a stream the message cannot be read, so the stream ends.
	st := h.client.PushStream(context.Background())
	if err := st.Send(&weirv1.PushStreamRequest{BatchId: 1, Stream: "app", Records: push(101).Records}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Receive(); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "more than 100 records") {
		t.Errorf("stream: %v", err)
	}
	st.CloseRequest()
	st.CloseResponse()
	h.checkAlive(t, "the records")
}

// FuzzCodec feeds the service's binary and JSON codecs arbitrary
// requests: they never crash, and what they decode is within the bounds.
func FuzzCodec(f *testing.F) {
	for _, levels := range []int{1, MaxValueDepth, MaxValueDepth + 1, 10_000} {
		f.Add(deepPush(levels), false)
	}
	f.Add([]byte(`{"stream":"app","records":[{"body":"x","attributes":[{"key":"a","value":{"arrayValue":{"values":[{"stringValue":"]"}]}}}]}]}`), true)
	f.Add([]byte(strings.Repeat(`{"arrayValue":{"values":[`, 10_000)), true)
	f.Add([]byte(`{"records":[{"traceId":"AAEC"}]}`), true)
	b := newBounds(1<<20, 100_000)
	binaryCodec, jsonC := vtCodec{b}, jsonCodec{name: "json", b: b}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		var req weirv1.PushRequest
		var err error
		if isJSON {
			err = jsonC.Unmarshal(data, &req)
		} else {
			err = binaryCodec.Unmarshal(data, &req)
		}
		if err != nil {
			return
		}
		// Within the bounds: encoding it again is accepted. (The
		// generated code, unlike proto.Marshal, does not refuse the
		// invalid UTF-8 it decodes; validation dead-letters it later.)
		wire, err := req.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.check(wire, &req); err != nil {
			t.Errorf("decoded a request past the bounds: %v", err)
		}
		for _, r := range req.GetRecords() {
			for _, kv := range r.GetAttributes() {
				_ = valueText(kv.GetValue())
			}
		}
	})
}

// TestJSONRecordsCountedFirst: a Connect JSON push of more records than
// a batch may hold is refused before protojson builds them.
func TestJSONRecordsCountedFirst(t *testing.T) {
	c := jsonCodec{name: "json", b: newBounds(16<<20, 100_000)}
	flood := []byte(`{"stream":"app","records":[` + strings.Repeat(`{},`, 1_000_000) + `{}]}`)
	var err error
	allocs := testing.AllocsPerRun(1, func() { err = c.Unmarshal(flood, &weirv1.PushRequest{}) })
	if !errors.Is(err, protolimit.ErrTooManyRecords) {
		t.Fatalf("flood: %v", err)
	}
	if allocs > 100 {
		t.Errorf("refusing the flood took %.0f allocations", allocs)
	}
}

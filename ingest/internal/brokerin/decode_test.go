package brokerin

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/weirlabs/weir/ingest/jsonl"
	"github.com/weirlabs/weir/internal/record"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	p := &Params{Stream: "in", StreamFrom: "svc", MaxMessageBytes: 64}
	meta := []record.KV{{Key: "kafka.topic", Value: "t"}}
	for _, tc := range []struct {
		name, value, stream, body string
		reject                    bool
		attrs                     int
	}{
		{"text", "hello", "in", "hello", false, 1},
		{"json", `{"msg":"hi","svc":"Pay-Api","n":1}`, "pay_api", "hi", false, 3},
		{"json stream unusable", `{"msg":"hi","svc":"_x"}`, "in", "hi", false, 2},
		{"array is text", `[1,2]`, "in", "[1,2]", false, 1},
		{"broken json", `{"msg":`, "in", `{"msg":`, true, 0},
		{"too deep", `{"a":` + strings.Repeat("[", jsonl.MaxDepth) + `}`, "in", "", true, 0},
		{"too long", strings.Repeat("y", 65), "in", strings.Repeat("y", 64), true, 1},
	} {
		stream, rec, reject := Decode([]byte(tc.value), meta, p)
		if stream != tc.stream || (reject != nil) != tc.reject || (tc.body != "" && rec.Body != tc.body) {
			t.Errorf("%s: stream %q body %q reject %v; want %q %q reject=%v", tc.name, stream, rec.Body, reject, tc.stream, tc.body, tc.reject)
		}
		if !tc.reject && len(rec.Attributes) != tc.attrs {
			t.Errorf("%s: attributes %v, want %d", tc.name, rec.Attributes, tc.attrs)
		}
	}
	// The stream can come from a broker attribute too.
	stream, _, _ := Decode([]byte("x"), []record.KV{{Key: "svc", Value: "Web"}}, p)
	if stream != "web" {
		t.Errorf("stream from a broker attribute = %q, want web", stream)
	}
}

// FuzzDecode: any message decodes without panicking, within the bounds,
// to a valid stream and a body no longer than the message.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "plain", `{"msg":"x","level":"warn","a":{"b":[1,{"c":2}]}}`, `{"svc":"Checkout-API"}`,
		`{"a":` + strings.Repeat(`{"a":`, 40), `{"time":"1e400"}`, "\xff\xfe", `{"msg":"\ud800"}`} {
		f.Add([]byte(s))
	}
	p := &Params{Stream: "in", StreamFrom: "svc", MaxMessageBytes: 4096}
	f.Fuzz(func(t *testing.T, value []byte) {
		stream, rec, reject := Decode(value, nil, p)
		if err := record.ValidateStream(stream); err != nil {
			t.Fatalf("stream %q: %v", stream, err)
		}
		if len(rec.Body) > max(len(value), p.MaxMessageBytes) {
			t.Fatalf("body of %d bytes from %d", len(rec.Body), len(value))
		}
		if reject == nil && len(rec.Attributes) > jsonl.MaxFields {
			t.Fatalf("%d attributes", len(rec.Attributes))
		}
		if reject == nil && utf8.Valid(value) && !utf8.ValidString(rec.Body) {
			t.Fatalf("valid input gave an invalid body %q", rec.Body)
		}
	})
}

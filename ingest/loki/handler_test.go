package loki_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/ingest/internal/ingesttest"
	"github.com/weirlabs/weir/ingest/loki"
	"github.com/weirlabs/weir/internal/record"
)

func newServer(t *testing.T, sub loki.Submitter) *httptest.Server {
	t.Helper()
	return newServerBounded(t, sub, 64<<10)
}

// newServerBounded serves the handler with bodies of at most maxBody
// bytes.
func newServerBounded(t *testing.T, sub loki.Submitter, maxBody int) *httptest.Server {
	t.Helper()
	cfg := loki.DefaultConfig()
	cfg.MaxBodyBytes = maxBody
	h, err := loki.NewHandler(cfg, sub)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func push(t *testing.T, url, contentType, encoding string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+loki.Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header
}

func str(b []byte, num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func msg(b []byte, num protowire.Number, m []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), m)
}

// stream encodes a StreamAdapter with entries of (ns, line, metadata
// pairs).
func stream(labels string, entries ...[]string) []byte {
	s := str(nil, 1, labels)
	for i, e := range entries {
		var ts, m []byte
		ts = protowire.AppendVarint(protowire.AppendTag(ts, 1, protowire.VarintType), uint64(1772366400+i))
		m = msg(m, 1, ts)
		m = str(m, 2, e[0])
		for j := 1; j+1 < len(e); j += 2 {
			m = msg(m, 3, str(str(nil, 1, e[j]), 2, e[j+1]))
		}
		s = msg(s, 2, m)
	}
	return s
}

func TestProtobufPush(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h.Svc)
	var req []byte
	req = msg(req, 1, stream(`{job="varlogs", host="h1", stream="Web-Front"}`, []string{"GET /", "level", "warn", "trace_id", "abc"}, []string{"GET /x"}))
	req = msg(req, 1, stream(`{service_name="billing", level="error"}`, []string{"charge failed"}))
	req = msg(req, 1, stream(`{app="x"}`, []string{"no stream label"}))
	req = msg(req, 1, stream(`{job="a", oops}`, []string{"bad labels"}))
	status, body, _ := push(t, srv.URL, "application/x-protobuf", "", snappy.Encode(nil, req))
	if status != http.StatusBadRequest || !strings.Contains(body, "1 of 5 entries went to the dead-letter stream") {
		t.Fatalf("status %d: %s", status, body)
	}
	got := h.Records(t)
	web := got["web_front"]
	if len(web) != 2 || web[0].Body != "GET /" || web[0].SeverityText != "warn" || web[0].SeverityNumber != record.SeverityWarn ||
		web[0].Timestamp != 1772366400e9 || web[1].Timestamp != 1772366401e9 {
		t.Fatalf("web_front: %+v", web)
	}
	if v, _ := ingesttest.Attr(web[0].Attributes, "trace_id"); v != "abc" {
		t.Errorf("structured metadata: %v", web[0].Attributes)
	}
	if v, _ := ingesttest.Attr(web[0].Resource, "service.name"); v != "varlogs" {
		t.Errorf("service.name from job: %v", web[0].Resource)
	}
	if v, _ := ingesttest.Attr(web[0].Resource, "host"); v != "h1" {
		t.Errorf("labels as resource: %v", web[0].Resource)
	}
	billing := got["billing"]
	if len(billing) != 1 || billing[0].SeverityText != "error" || billing[0].ServiceName() != "billing" {
		t.Errorf("billing: %+v", billing)
	}
	if l := got["loki"]; len(l) != 1 || l[0].Body != "no stream label" || l[0].ServiceName() != "x" {
		t.Errorf("default stream: %+v", l)
	}
	dead := got["_dead_letter"]
	if len(dead) != 1 || dead[0].Body != "bad labels" {
		t.Fatalf("dead letters: %+v", dead)
	}
	if v, _ := ingesttest.Attr(dead[0].Attributes, "loki.labels"); v != `{job="a", oops}` {
		t.Errorf("dead letter keeps the labels: %v", dead[0].Attributes)
	}
}

func TestJSONPush(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h.Svc)
	body := `{"streams": [{"stream": {"service_name": "api", "env": "prod"},
		"values": [["1772366400000000001", "first", {"level": "info", "user": "u1"}], ["1772366400000000002", "second"], [1, "number ts"]]}]}`
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(body))
	zw.Close()
	status, text, _ := push(t, srv.URL, "application/json; charset=utf-8", "gzip", z.Bytes())
	if status != http.StatusBadRequest || !strings.Contains(text, "1 of 3 entries") {
		t.Fatalf("status %d: %s", status, text)
	}
	got := h.Records(t)
	api := got["api"]
	if len(api) != 2 || api[0].Body != "first" || api[0].Timestamp != 1772366400000000001 || api[0].SeverityNumber != record.SeverityInfo {
		t.Fatalf("api: %+v", api)
	}
	if v, _ := ingesttest.Attr(api[0].Attributes, "user"); v != "u1" {
		t.Errorf("metadata: %v", api[0].Attributes)
	}
	if v, _ := ingesttest.Attr(api[1].Resource, "env"); v != "prod" {
		t.Errorf("labels: %v", api[1].Resource)
	}
	if dead := got["_dead_letter"]; len(dead) != 1 || dead[0].Body != `[1, "number ts"]` {
		t.Errorf("dead letters: %+v", dead)
	}
}

func TestPushErrors(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h.Svc)
	// A snappy block whose header claims 1 GiB.
	bomb := protowire.AppendVarint(nil, 1<<30)
	bomb = append(bomb, 0, 0, 0, 0)
	huge := snappy.Encode(nil, make([]byte, 100<<10))
	for _, c := range []struct {
		name, ct, enc string
		body          []byte
		status        int
		text          string
	}{
		{"snappy header past the limit", "application/x-protobuf", "", bomb, 413, "the snappy block holds 1073741824 bytes"},
		{"snappy body past the limit", "application/x-protobuf", "", huge, 413, "the limit is 65536"},
		{"not snappy", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 400, "snappy"},
		{"not protobuf", "application/x-protobuf", "", snappy.Encode(nil, []byte{0x0a, 0x05, 1}), 400, "malformed push request"},
		{"bad JSON", "application/json", "", []byte(`{"streams": [`), 400, "malformed push request"},
		{"deep JSON", "application/json", "", []byte(strings.Repeat("[", 100)), 400, "nesting deeper than 8"},
		{"text", "text/plain", "", []byte("x"), 415, "application/x-protobuf"},
		{"brotli", "application/json", "br", []byte("x"), 415, "Content-Encoding"},
	} {
		status, text, _ := push(t, srv.URL, c.ct, c.enc, c.body)
		if status != c.status || !strings.Contains(text, c.text) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, status, text, c.status, c.text)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+loki.Path, bytes.NewReader(snappy.Encode(nil, msg(nil, 1, stream(`{}`, []string{"x"})))))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Weir-Ack-Level", "forever")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad ack level: %d", resp.StatusCode)
	}
	if got := h.Records(t); len(got) != 0 {
		t.Errorf("stored %v", got)
	}
}

// busy answers every push as a full buffer does.
type busy struct{}

func (busy) Submit(context.Context, string, []record.Record, []error, buffer.Level) (ingest.Result, error) {
	err := connect.NewError(connect.CodeResourceExhausted, errors.New("buffer full"))
	err.Meta().Set("Retry-After", "2")
	return ingest.Result{}, err
}
func (busy) ParseLevel(string) (buffer.Level, error) { return buffer.Durable, nil }

func TestBackpressure(t *testing.T) {
	srv := newServer(t, busy{})
	status, text, hdr := push(t, srv.URL, "application/x-protobuf", "", snappy.Encode(nil, msg(nil, 1, stream(`{job="a"}`, []string{"x"}))))
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") != "2" || !strings.Contains(text, "buffer full") {
		t.Errorf("%d %q Retry-After %q", status, text, hdr.Get("Retry-After"))
	}
}

func TestSuccessIs204(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h.Svc)
	status, text, _ := push(t, srv.URL, "application/x-protobuf", "", snappy.Encode(nil, msg(nil, 1, stream(`{job="app"}`, []string{"ok"}))))
	if status != http.StatusNoContent {
		t.Fatalf("%d %s", status, text)
	}
	if got := h.Records(t)["app"]; len(got) != 1 {
		t.Errorf("%+v", got)
	}
}

// TestTooManyEntries: a push of more entries than a request may hold is
// refused as too large, in either encoding, and nothing of it is stored.
func TestTooManyEntries(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServerBounded(t, h.Svc, 4<<20)
	n := httpin.MaxRecords/2 + 1
	entries := make([][]string, n)
	for i := range entries {
		entries[i] = []string{"x"}
	}
	half := stream(`{job="a"}`, entries...)
	proto := snappy.Encode(nil, msg(msg(nil, 1, half), 1, half))
	values := strings.Repeat(`["1","x"],`, n)
	values = values[:len(values)-1]
	json := `{"streams":[{"stream":{"job":"a"},"values":[` + values + `]},{"stream":{"job":"b"},"values":[` + values + `]}]}`
	for ct, body := range map[string][]byte{"application/x-protobuf": proto, "application/json": []byte(json)} {
		status, text, _ := push(t, srv.URL, ct, "", body)
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(text, "more than 100000 records") {
			t.Errorf("%s: %d %q, want 413", ct, status, text)
		}
	}
	if got := h.Records(t); len(got) != 0 {
		t.Errorf("stored %d streams", len(got))
	}
}

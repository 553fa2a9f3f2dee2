package jsonl_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/ingest/internal/ingesttest"
	"github.com/weirlabs/weir/ingest/jsonl"
	"github.com/weirlabs/weir/internal/record"
)

func newServer(t *testing.T, h *ingesttest.Harness) *httptest.Server {
	t.Helper()
	cfg := jsonl.DefaultConfig()
	cfg.MaxBodyBytes, cfg.MaxLineBytes = 64<<10, 512
	vl, err := jsonl.NewVictoriaLogs(cfg, h.Svc)
	if err != nil {
		t.Fatal(err)
	}
	native, err := jsonl.NewNative(cfg, h.Svc)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(jsonl.VictoriaLogsPath, vl)
	mux.Handle(jsonl.NativePath, native)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/stream+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestVictoriaLogsArgs(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h)
	body := `{"log": {"text": "disk full", "level": "error"}, "date": "2026-03-01T12:00:00Z", "app": "Billing", "host": "h1", "secret": "x", "k8s": {"pod": "p"}}
not json at all
{"log": {"text": "second"}, "app": "Billing", "level": "warn", "date": 1772366401}

{"log": {"text": "other app"}, "app": "auth"}
`
	status, text := post(t, srv.URL+jsonl.VictoriaLogsPath+"?_msg_field=log.text&_time_field=date&_stream_fields=app,host&ignore_fields=secret,k8s.*", body)
	if status != http.StatusOK || text != `{"accepted":3,"dead_lettered":1}`+"\n" {
		t.Fatalf("%d %s", status, text)
	}
	got := h.Records(t)
	billing := got["billing"]
	if len(billing) != 2 {
		t.Fatalf("billing: %+v", got)
	}
	r := billing[0]
	if r.Body != "disk full" || r.Timestamp != 1772366400e9 || r.SeverityText != "error" || r.SeverityNumber != record.SeverityError {
		t.Errorf("first: %+v", r)
	}
	if v, _ := ingesttest.Attr(r.Resource, "host"); v != "h1" {
		t.Errorf("stream fields as resource: %v", r.Resource)
	}
	if _, ok := ingesttest.Attr(r.Attributes, "secret"); ok {
		t.Errorf("ignored field kept: %v", r.Attributes)
	}
	if _, ok := ingesttest.Attr(r.Attributes, "k8s.pod"); ok {
		t.Errorf("ignored prefix kept: %v", r.Attributes)
	}
	if v, _ := ingesttest.Attr(r.Attributes, "log.level"); v != "error" {
		t.Errorf("nested fields: %v", r.Attributes)
	}
	if billing[1].Timestamp != 1772366401e9 || billing[1].SeverityText != "warn" {
		t.Errorf("second: %+v", billing[1])
	}
	if a := got["auth"]; len(a) != 1 || a[0].Body != "other app" {
		t.Errorf("auth: %+v", a)
	}
	dead := got["_dead_letter"]
	if len(dead) != 1 || dead[0].Body != "not json at all" {
		t.Fatalf("dead letters: %+v", dead)
	}
	// A line whose stream cannot be known goes with the first stream
	// that stores records (ingest refuses a batch of rejects only).
	if v, _ := ingesttest.Attr(dead[0].Attributes, "weir.dead_letter.stream"); v != "billing" {
		t.Errorf("dead letter's stream: %v", dead[0].Attributes)
	}
}

func TestNative(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h)
	long := `{"msg": "` + strings.Repeat("x", 600) + `"}`
	body := `{"message": "one", "time": "1772366400000", "severity": "DEBUG"}` + "\r\n" + long + "\n" + `{"_msg": "three", "n": 1.5}`
	status, text := post(t, srv.URL+jsonl.NativePath+"?stream=jobs", body)
	var ans jsonl.Answer
	if status != http.StatusOK || json.Unmarshal([]byte(text), &ans) != nil || ans != (jsonl.Answer{Accepted: 2, DeadLettered: 1}) {
		t.Fatalf("%d %s", status, text)
	}
	got := h.Records(t)
	jobs := got["jobs"]
	if len(jobs) != 2 || jobs[0].Body != "one" || jobs[0].Timestamp != 1772366400e9 || jobs[0].SeverityNumber != record.SeverityDebug || jobs[1].Body != "three" {
		t.Fatalf("jobs: %+v", jobs)
	}
	if v, _ := ingesttest.Attr(jobs[1].Attributes, "n"); v != "1.5" {
		t.Errorf("attributes: %v", jobs[1].Attributes)
	}
	if dead := got["_dead_letter"]; len(dead) != 1 || dead[0].Body != long {
		t.Errorf("dead letters: %+v", dead)
	}
}

func TestDebugStoresNothing(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h)
	status, text := post(t, srv.URL+jsonl.VictoriaLogsPath+"?debug=1&_stream_fields=app", `{"_msg": "x", "app": "web"}`+"\n{")
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, text)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"stream":"web"`) || !strings.Contains(lines[1], `"error":"line is not a JSON object`) {
		t.Errorf("debug answer: %s", text)
	}
	if got := h.Records(t); len(got) != 0 {
		t.Errorf("debug stored %v", got)
	}
}

func TestErrors(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h)
	for _, c := range []struct {
		path, body string
		status     int
		text       string
	}{
		{jsonl.NativePath + "?stream=Bad-Name", `{}`, 400, `"code":"invalid_argument","error":"invalid stream name \"Bad-Name\"`},
		{jsonl.NativePath + "?stream=logs", `{}`, 400, `reserved`},
		{jsonl.VictoriaLogsPath + "?ack_level=soon", `{}`, 400, "unknown acknowledgement level"},
		{jsonl.NativePath, strings.Repeat(`{"msg": "x"}`+"\n", 6000), 413, `"code":"resource_exhausted"`},
		{jsonl.VictoriaLogsPath + "?ignore_fields=" + strings.Repeat("a,", jsonl.MaxFieldNames+1), `{}`, 400, "ignore_fields names more than 64 fields"},
	} {
		status, text := post(t, srv.URL+c.path, c.body)
		if status != c.status || !strings.Contains(text, c.text) {
			t.Errorf("%s: %d %s, want %d with %s", c.path, status, text, c.status, c.text)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+jsonl.NativePath, bytes.NewReader([]byte("x")))
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad gzip: %d", resp.StatusCode)
	}
	if got := h.Records(t); len(got) != 0 {
		t.Errorf("stored %v", got)
	}
}

// TestTooManyRecords: a request of more records than a request may hold
// is refused as too large, whatever its size in bytes, and nothing of it
// is stored; it is refused while decoding, before the records exist.
func TestTooManyRecords(t *testing.T) {
	h := ingesttest.New(t, nil)
	cfg := jsonl.DefaultConfig()
	native, err := jsonl.NewNative(cfg, h.Svc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(native)
	t.Cleanup(srv.Close)
	body := strings.Repeat("{}\n\n", httpin.MaxRecords+1)
	status, text := post(t, srv.URL+jsonl.NativePath+"?stream=s", body)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(text, "more than 100000 records") {
		t.Errorf("%d records: %d %s, want 413", httpin.MaxRecords+1, status, text)
	}
	if got := h.Records(t); len(got) != 0 {
		t.Errorf("stored %d streams", len(got))
	}
}

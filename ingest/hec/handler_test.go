package hec_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weirlabs/weir/ingest/hec"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/ingest/internal/ingesttest"
	"github.com/weirlabs/weir/internal/record"
)

func newServer(t *testing.T, h *ingesttest.Harness) *httptest.Server {
	t.Helper()
	return newServerBounded(t, h, 64<<10)
}

// newServerBounded serves the handler's routes with bodies of at most
// maxBody bytes.
func newServerBounded(t *testing.T, h *ingesttest.Harness, maxBody int) *httptest.Server {
	t.Helper()
	cfg := hec.DefaultConfig()
	cfg.MaxBodyBytes = maxBody
	hh, err := hec.NewHandler(cfg, h.Svc)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for p, handler := range hh.Routes() {
		mux.Handle(p, handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	Text    string `json:"text"`
	Code    int    `json:"code"`
	Invalid *int   `json:"invalid-event-number"`
	Detail  string `json:"detail"`
}

func do(t *testing.T, method, url, encoding string, body []byte) (int, answer) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set(hec.ChannelHeader, "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s %s: %d %q", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, a
}

func TestEvents(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h)
	body := `{"time": 1772366400.5, "host": "web-1", "source": "/var/log/app.log", "sourcetype": "app", "index": "Web", "event": "GET / 200", "fields": {"severity": "INFO", "region": "eu"}}
{"time": "1772366401", "index": "web", "event": {"msg": "slow", "level": "warn", "ms": 1200}}
{"index": "web", "event": ""}
{"event": "no index"}`
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(body))
	zw.Close()
	status, a := do(t, http.MethodPost, srv.URL+hec.EventPath, "gzip", z.Bytes())
	if status != http.StatusBadRequest || a.Code != hec.CodeBlankEvent || a.Text != "Event field cannot be blank" || a.Invalid == nil || *a.Invalid != 2 {
		t.Fatalf("%d %+v", status, a)
	}
	// A request of only bad events stores nothing and answers with the
	// first one's code, as one with good events does.
	for body, want := range map[string]int{`{"event": ""}`: hec.CodeBlankEvent, `{"time": 1}`: hec.CodeNoEvent, `{"event": "x", "time": -0.5}`: hec.CodeInvalidFormat} {
		if status, a := do(t, http.MethodPost, srv.URL+hec.EventPath, "", []byte(body)); status != http.StatusBadRequest || a.Code != want || a.Invalid == nil || *a.Invalid != 0 {
			t.Errorf("%s: %d %+v, want 400 code %d at event 0", body, status, a, want)
		}
	}
	got := h.Records(t)
	web := got["web"]
	if len(web) != 2 {
		t.Fatalf("web: %+v", got)
	}
	r := web[0]
	if r.Body != "GET / 200" || r.Timestamp != 1772366400500000000 || r.SeverityNumber != record.SeverityInfo {
		t.Errorf("first: %+v", r)
	}
	for k, want := range map[string]string{hec.AttrHost: "web-1", hec.AttrSource: "/var/log/app.log", hec.AttrSourcetype: "app", hec.AttrIndex: "Web"} {
		if v, _ := ingesttest.Attr(r.Resource, k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if v, _ := ingesttest.Attr(r.Attributes, "region"); v != "eu" {
		t.Errorf("fields: %v", r.Attributes)
	}
	if web[1].Body != `{"msg":"slow","level":"warn","ms":1200}` || web[1].SeverityText != "warn" {
		t.Errorf("second: %+v", web[1])
	}
	if d := got["hec"]; len(d) != 1 || d[0].Body != "no index" {
		t.Errorf("default stream: %+v", d)
	}
	if dead := got["_dead_letter"]; len(dead) != 1 || dead[0].Body != `{"index": "web", "event": ""}` {
		t.Errorf("dead letters: %+v", dead)
	}
}

func TestRawAndHealth(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h)
	status, a := do(t, http.MethodPost, srv.URL+hec.RawPath+"?index=app&sourcetype=syslog&host=h2", "", []byte("line one\r\n\nERROR line two\n"))
	if status != http.StatusOK || a.Code != 0 || a.Text != "Success" {
		t.Fatalf("%d %+v", status, a)
	}
	status, a = do(t, http.MethodGet, srv.URL+hec.HealthPath, "", nil)
	if status != http.StatusOK || a.Code != hec.CodeHealthy || a.Text != "HEC is healthy" {
		t.Errorf("health: %d %+v", status, a)
	}
	got := h.Records(t)["app"]
	if len(got) != 2 || got[0].Body != "line one" || got[1].Body != "ERROR line two" {
		t.Fatalf("%+v", got)
	}
	if v, _ := ingesttest.Attr(got[1].Resource, hec.AttrSourcetype); v != "syslog" {
		t.Errorf("resource %v", got[1].Resource)
	}
}

func TestErrors(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServer(t, h)
	for _, c := range []struct {
		path, body string
		status     int
		code       int
		detail     string
	}{
		{hec.EventPath, "", 400, hec.CodeNoData, ""},
		{hec.RawPath, " \n", 400, hec.CodeNoData, ""},
		{hec.EventPath, `{"event": "x"`, 400, hec.CodeInvalidFormat, "event 0: not a JSON object"},
		{hec.EventPath, `[1, 2]`, 400, hec.CodeInvalidFormat, "not a JSON object"},
		{hec.EventPath + "?ack_level=never", `{"event": "x"}`, 400, hec.CodeInvalidFormat, "unknown acknowledgement level"},
		{hec.EventPath, strings.Repeat(`{"event": "x"}`, 5000), 413, hec.CodeInvalidFormat, "more than 65536 bytes"},
	} {
		status, a := do(t, http.MethodPost, srv.URL+c.path, "", []byte(c.body))
		if status != c.status || a.Code != c.code || !strings.Contains(a.Detail, c.detail) {
			t.Errorf("%s %.40q: %d %+v, want %d code %d", c.path, c.body, status, a, c.status, c.code)
		}
	}
	if got := h.Records(t); len(got) != 0 {
		t.Errorf("stored %v", got)
	}
}

// TestTooManyRecords: events or raw lines past the records a request may
// hold are refused as too large, and nothing of the request is stored.
func TestTooManyRecords(t *testing.T) {
	h := ingesttest.New(t, nil)
	srv := newServerBounded(t, h, 4<<20)
	for path, body := range map[string]string{
		hec.EventPath: strings.Repeat(`{"event":"x"}`, httpin.MaxRecords+1),
		hec.RawPath:   strings.Repeat("x\n", httpin.MaxRecords+1),
	} {
		status, a := do(t, http.MethodPost, srv.URL+path, "", []byte(body))
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(a.Detail, "more than 100000 records") {
			t.Errorf("%s: %d %+v, want 413", path, status, a)
		}
	}
	if got := h.Records(t); len(got) != 0 {
		t.Errorf("stored %d streams", len(got))
	}
}

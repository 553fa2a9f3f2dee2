package esbulk_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/esbulk"
	"github.com/weirlabs/weir/internal/record"
)

// fakeSubmitter records what it is given and fails the streams it is
// told to.
type fakeSubmitter struct {
	mu      sync.Mutex
	got     map[string][]record.Record
	rejects map[string]int
	fail    map[string]error
}

func (f *fakeSubmitter) Submit(_ context.Context, stream string, recs []record.Record, rejects []error, _ buffer.Level) (ingest.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[stream]; err != nil {
		return ingest.Result{}, err
	}
	if f.got == nil {
		f.got, f.rejects = map[string][]record.Record{}, map[string]int{}
	}
	f.got[stream] = append(f.got[stream], recs...)
	for _, r := range rejects {
		if r != nil {
			f.rejects[stream]++
		}
	}
	return ingest.Result{Records: len(recs)}, nil
}

func (f *fakeSubmitter) ParseLevel(name string) (buffer.Level, error) {
	if name == "" {
		return buffer.Durable, nil
	}
	return 0, fmt.Errorf("unknown level %q", name)
}

type bulkResponse struct {
	Took   int64                                   `json:"took"`
	Errors bool                                    `json:"errors"`
	Items  []map[string]map[string]json.RawMessage `json:"items"`
}

func do(t *testing.T, h http.Handler, method, path string, body []byte, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func newHandler(sub esbulk.Submitter, cfg esbulk.Config) http.Handler {
	return esbulk.New(cfg, sub, slog.New(slog.NewTextHandler(io.Discard, nil))).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>ui</html>")
	}))
}

func TestBulkAnswersEachItemInOrder(t *testing.T) {
	t.Parallel()
	sub := &fakeSubmitter{}
	h := newHandler(sub, esbulk.Config{})
	body := strings.Join([]string{
		`{"index":{"_index":"a","_id":"1"}}`, `{"message":"one"}`,
		`{"delete":{"_index":"a","_id":"1"}}`,
		`{"create":{"_index":"b"}}`, `{"message":"two","@timestamp":"not a time"}`,
		`not json`, `{"message":"lost"}`,
		`{"index":{}}`, `{"message":"three"}`,
	}, "\n") + "\n"
	w := do(t, h, "POST", "/a/_bulk?refresh=wait_for&pipeline=x", []byte(body), "Content-Type", "application/x-ndjson")
	if w.Code != 200 || w.Header().Get("X-Elastic-Product") != "Elasticsearch" {
		t.Fatalf("status %d, headers %v: %s", w.Code, w.Header(), w.Body)
	}
	var resp bulkResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.Errors || len(resp.Items) != 5 {
		t.Fatalf("response %s", w.Body)
	}
	wants := []struct {
		action string
		status int
	}{{"index", 201}, {"delete", 400}, {"create", 201}, {"index", 400}, {"index", 201}}
	for i, want := range wants {
		res, ok := resp.Items[i][want.action]
		if !ok || string(res["status"]) != fmt.Sprint(want.status) {
			t.Errorf("item %d: %v, want %s %d", i, resp.Items[i], want.action, want.status)
		}
		if want.status == 201 && (string(res["result"]) != `"created"` || len(res["_id"]) < 3 || string(res["_version"]) != "1") {
			t.Errorf("item %d: %v", i, res)
		}
		if want.status == 400 && !bytes.Contains(res["error"], []byte(`"reason"`)) {
			t.Errorf("item %d: no error reason: %v", i, res)
		}
	}
	if id := string(resp.Items[0]["index"]["_id"]); id != `"1"` {
		t.Errorf("item 0 id %s", id)
	}
	if len(sub.got["a"]) != 2 || sub.got["a"][0].Body != "one" || sub.got["a"][1].Body != "three" || len(sub.got["b"]) != 1 {
		t.Errorf("submitted %+v", sub.got)
	}
	if sub.rejects["b"] != 1 {
		t.Errorf("dead-lettered %v, want the document with a bad @timestamp", sub.rejects)
	}
}

func TestBulkBackpressure(t *testing.T) {
	t.Parallel()
	full := connect.NewError(connect.CodeResourceExhausted, errors.New("buffer full"))
	full.Meta().Set("Retry-After", "2")
	body := []byte("{\"index\":{\"_index\":\"a\"}}\n{\"message\":\"x\"}\n{\"index\":{\"_index\":\"b\"}}\n{\"message\":\"y\"}\n")

	// The first stream refused: nothing stored, the whole request is 429.
	sub := &fakeSubmitter{fail: map[string]error{"a": full}}
	w := do(t, newHandler(sub, esbulk.Config{}), "POST", "/_bulk", body, "Content-Type", "application/json")
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" || !strings.Contains(w.Body.String(), "es_rejected_execution_exception") {
		t.Fatalf("status %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if len(sub.got) != 0 {
		t.Errorf("stored %v", sub.got)
	}

	// A later stream refused: its items are 429, the stored ones 201.
	sub = &fakeSubmitter{fail: map[string]error{"b": full}}
	w = do(t, newHandler(sub, esbulk.Config{}), "POST", "/_bulk", body, "Content-Type", "application/json")
	var resp bulkResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != 200 {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	if s := string(resp.Items[0]["index"]["status"]); s != "201" {
		t.Errorf("item 0 status %s", s)
	}
	if s := string(resp.Items[1]["index"]["status"]); s != "429" || !resp.Errors {
		t.Errorf("item 1 status %s", s)
	}
}

func TestBulkBodyBounds(t *testing.T) {
	t.Parallel()
	sub := &fakeSubmitter{}
	h := newHandler(sub, esbulk.Config{MaxBodyBytes: 1 << 10})
	line := []byte("{\"index\":{\"_index\":\"a\"}}\n{\"message\":\"zipped\"}\n")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(line)
	zw.Close()
	if w := do(t, h, "POST", "/_bulk", zipped.Bytes(), "Content-Type", "application/x-ndjson", "Content-Encoding", "gzip"); w.Code != 200 || len(sub.got["a"]) != 1 {
		t.Fatalf("gzip body: %d %s", w.Code, w.Body)
	}
	// 1 MiB of zeros compresses to about 1 KiB and expands past the bound.
	zipped.Reset()
	zw = gzip.NewWriter(&zipped)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	if w := do(t, h, "POST", "/_bulk", zipped.Bytes(), "Content-Type", "application/x-ndjson", "Content-Encoding", "gzip"); w.Code != 413 {
		t.Errorf("gzip bomb: %d %s", w.Code, w.Body)
	}
	if w := do(t, h, "POST", "/_bulk", bytes.Repeat([]byte("x"), 2<<10), "Content-Type", "application/x-ndjson"); w.Code != 413 {
		t.Errorf("large body: %d %s", w.Code, w.Body)
	}
	if w := do(t, h, "POST", "/_bulk", []byte("not gzip"), "Content-Type", "application/x-ndjson", "Content-Encoding", "gzip"); w.Code != 400 {
		t.Errorf("bad gzip: %d %s", w.Code, w.Body)
	}
	if w := do(t, h, "POST", "/_bulk", line, "Content-Type", "application/x-ndjson", "Content-Encoding", "br"); w.Code != 415 {
		t.Errorf("brotli: %d %s", w.Code, w.Body)
	}
	if w := do(t, h, "POST", "/_bulk", line, "Content-Type", "text/plain"); w.Code != 406 {
		t.Errorf("text/plain: %d %s", w.Code, w.Body)
	}
	if w := do(t, h, "GET", "/_bulk", nil); w.Code != 405 {
		t.Errorf("GET /_bulk: %d", w.Code)
	}
	if len(sub.got["a"]) != 1 {
		t.Errorf("stored %d records, want the one of the valid body", len(sub.got["a"]))
	}

	// More actions than a request may hold: refused whole, whether the
	// actions take one line each or two.
	big := newHandler(sub, esbulk.Config{MaxBodyBytes: 8 << 20})
	for name, body := range map[string]string{
		"index":  strings.Repeat("{\"index\":{\"_index\":\"b\"}}\n{}\n", 100_001),
		"delete": strings.Repeat("{\"delete\":{\"_index\":\"b\"}}\n", 100_001),
		"mixed":  strings.Repeat("{\"delete\":{\"_index\":\"b\"}}\n", 100_000) + "{\"index\":{\"_index\":\"b\"}}\n{}\n",
	} {
		if w := do(t, big, "POST", "/_bulk", []byte(body), "Content-Type", "application/x-ndjson"); w.Code != 413 || !strings.Contains(w.Body.String(), "more than 100000 records") {
			t.Errorf("%s: 100,001 actions: %d %.200s", name, w.Code, w.Body)
		}
	}
	if len(sub.got["b"]) != 0 {
		t.Errorf("stored %d records of a refused request", len(sub.got["b"]))
	}
}

func TestProbes(t *testing.T) {
	t.Parallel()
	h := newHandler(&fakeSubmitter{}, esbulk.Config{})
	w := do(t, h, "GET", "/", nil, "X-Elastic-Client-Meta", "es=8.19.7")
	var info struct {
		Version struct {
			Number string `json:"number"`
		} `json:"version"`
		Tagline string `json:"tagline"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil || w.Code != 200 || !strings.HasPrefix(info.Version.Number, "8.") || info.Tagline == "" ||
		w.Header().Get("X-Elastic-Product") != "Elasticsearch" {
		t.Errorf("GET / from a client: %d %s %v", w.Code, w.Body, err)
	}
	for _, hdr := range [][]string{{"User-Agent", "Elastic-Filebeat/8.19.0 (linux; amd64)"}, {"Accept", "application/json"}, {"User-Agent", "Vector/0.49.0"}} {
		if w := do(t, h, "HEAD", "/", nil, hdr...); w.Code != 200 || w.Header().Get("X-Elastic-Product") == "" {
			t.Errorf("HEAD / with %v: %d", hdr, w.Code)
		}
	}
	if w := do(t, h, "GET", "/", nil, "Accept", "text/html,application/xhtml+xml"); !strings.Contains(w.Body.String(), "ui") {
		t.Errorf("GET / from a browser: %s", w.Body)
	}
	if w := do(t, h, "GET", "/", nil); !strings.Contains(w.Body.String(), "ui") {
		t.Errorf("GET / without hints: %s", w.Body)
	}
	if w := do(t, h, "GET", "/app.js", nil); !strings.Contains(w.Body.String(), "ui") {
		t.Errorf("GET /app.js: %s", w.Body)
	}
	for path, want := range map[string]string{
		"/_license":                `"active"`,
		"/_cluster/health":         `"green"`,
		"/_cat/health":             "green",
		"/_cat/health?format=json": `"green"`,
		"/_nodes/_local":           `"nodes"`,
		"/_xpack":                  `"ilm"`,
	} {
		if w := do(t, h, "GET", path, nil); w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s: %d %s", path, w.Code, w.Body)
		}
	}
	if w := do(t, h, "GET", "/_index_template/filebeat-8", nil); w.Code != 404 {
		t.Errorf("GET template: %d", w.Code)
	}
	for _, p := range []string{"/_index_template/filebeat-8", "/_ilm/policy/filebeat", "/_template/x"} {
		if w := do(t, h, "PUT", p, []byte(`{"a":1}`), "Content-Type", "application/json"); w.Code != 200 || !strings.Contains(w.Body.String(), `"acknowledged":true`) {
			t.Errorf("PUT %s: %d %s", p, w.Code, w.Body)
		}
	}
	if w := do(t, h, "GET", "/_search", nil); w.Code != 404 || !strings.Contains(w.Body.String(), "_bulk") {
		t.Errorf("GET /_search: %d %s", w.Code, w.Body)
	}
}

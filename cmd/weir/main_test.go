package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// loghubDir holds the Loghub samples the tests push.
const loghubDir = "../../testdata/loghub"

// TestMain lets the test binary act as the weir command for the tests that
// run it as a subprocess (WEIR_TEST_AS_WEIR=1).
func TestMain(m *testing.M) {
	if os.Getenv("WEIR_TEST_AS_WEIR") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testServer is a weir server on a loopback port, running in-process.
type testServer struct {
	url  string
	data string
	stop func() error
}

// startServer runs serve on 127.0.0.1 with a fresh data directory (or the
// given one) and stops it when the test ends.
func startServer(t testing.TB, data string, mutate func(*config)) *testServer {
	t.Helper()
	cfg := defaultConfig()
	if data == "" {
		data = t.TempDir()
	}
	cfg.Data = data
	cfg.Query.Threads = 2
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	go func() { done <- serve(ctx, cfg, ln, log) }()
	s := &testServer{url: "http://" + ln.Addr().String(), data: data}
	stopped := false
	var stopErr error
	s.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	waitHealthy(t, s.url)
	return s
}

func waitHealthy(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s not healthy: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sqlResult is the JSON answer of /v1/sql.
type sqlResult struct {
	Columns []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"columns"`
	Rows      []map[string]any `json:"rows"`
	Truncated bool             `json:"truncated"`
	Error     string           `json:"error"`
	Code      string           `json:"code"`
}

// postSQL runs sql through POST /v1/sql and returns the status, body and
// trailer.
func postSQL(t testing.TB, url, sql, accept string) (int, []byte, http.Header) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	return post(t, url+"/v1/sql", body, accept)
}

// post posts a JSON body, asking for the accept media type if set, and
// returns the status, the answer and the trailer.
func post(t testing.TB, url string, body []byte, accept string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw, resp.Trailer
}

// mustSQL runs sql and decodes the JSON result, failing the test on error.
func mustSQL(t testing.TB, url, sql string) sqlResult {
	t.Helper()
	status, raw, _ := postSQL(t, url, sql, "")
	var res sqlResult
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("%s: decode %q: %v", sql, raw, err)
	}
	if status != http.StatusOK || res.Error != "" {
		t.Fatalf("%s: status %d: %s", sql, status, raw)
	}
	return res
}

// countBy runs a two-column (key, count) query and returns it as a map.
func countBy(t *testing.T, url, sql string) map[string]int64 {
	t.Helper()
	res := mustSQL(t, url, sql)
	out := map[string]int64{}
	for _, r := range res.Rows {
		k := fmt.Sprint(r[res.Columns[0].Name])
		n, err := r[res.Columns[1].Name].(json.Number).Int64()
		if err != nil {
			t.Fatalf("%s: count %v: %v", sql, r, err)
		}
		out[k] = n
	}
	return out
}

// runWeir runs the weir command in-process, as a user would run it.
func runWeir(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func newClients(url string) (weirv1connect.IngestServiceClient, weirv1connect.QueryServiceClient) {
	hc := newHTTPClient()
	return weirv1connect.NewIngestServiceClient(hc, url), weirv1connect.NewQueryServiceClient(hc, url)
}

func textRecord(body string) *weirv1.LogRecord {
	return &weirv1.LogRecord{
		Body:     body,
		Resource: []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "test"}}}},
	}
}

// lakeFiles lists the published Parquet files under a data directory
// (not the damaged ones set aside under lake/.damaged/).
func lakeFiles(t *testing.T, data string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(data, "lake"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".parquet") && !strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// waitCount polls a single-count query until it answers want, for up to
// ten seconds: records become visible within a second of their ack.
func waitCount(t *testing.T, url, sql string, want int64) {
	t.Helper()
	waitCountFor(t, url, sql, want, 10*time.Second)
}

// waitCountFor is waitCount with a given patience.
func waitCountFor(t *testing.T, url, sql string, want int64, patience time.Duration) {
	t.Helper()
	deadline := time.Now().Add(patience)
	var got string
	for time.Now().Before(deadline) {
		// A stream's view appears with its first records: until then the
		// query fails, and waiting goes on.
		status, raw, _ := postSQL(t, url, sql, "")
		if status != http.StatusOK {
			got = string(raw)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		res := mustSQL(t, url, sql)
		if len(res.Rows) == 1 && len(res.Columns) == 1 {
			got = fmt.Sprint(res.Rows[0][res.Columns[0].Name])
			if got == fmt.Sprint(want) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: got %s, want %d", sql, got, want)
}

// postJSON posts a JSON body and returns the status and the answer.
func postJSON(t testing.TB, url string, body []byte) (int, []byte) {
	t.Helper()
	status, raw, _ := post(t, url, body, "")
	return status, raw
}

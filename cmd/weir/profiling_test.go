package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProfiling checks the two ways of profiling a running server: pprof
// on its own listener (not on the public port), with goroutines labelled
// by stage, and profiles pushed to a Pyroscope server (a stand-in here
// that records what the real client sends to /ingest).
func TestProfiling(t *testing.T) {
	var mu sync.Mutex
	names := map[string]int{}
	pyro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/ingest" {
			mu.Lock()
			names[r.URL.Query().Get("name")]++
			mu.Unlock()
		}
	}))
	defer pyro.Close()
	pprofAddr := freeAddr(t)
	s := startServer(t, "", func(c *config) {
		c.Profiling.PprofAddr = pprofAddr
		c.Profiling.PyroscopeURL = pyro.URL
		c.Profiling.UploadInterval = 500 * time.Millisecond
	})
	if err := pushErr(t, s.url, "app", textRecord("profiled")); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 1)

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
	if status != http.StatusOK {
		t.Fatalf("pprof: %d", status)
	}
	for _, stage := range []string{`"stage":"pipeline"`, `"stage":"wal"`, `"stage":"sink"`} {
		if !strings.Contains(body, stage) {
			t.Errorf("no goroutine labelled %s in the goroutine profile", stage)
		}
	}
	if status, _ := get(s.url + "/debug/pprof/"); status == http.StatusOK {
		t.Error("pprof is served on the public port")
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		var got []string
		pushed := false
		for n := range names {
			got = append(got, n)
			pushed = pushed || strings.HasPrefix(n, "weir{") && strings.Contains(n, "instance="+strings.TrimPrefix(s.url, "http://"))
		}
		mu.Unlock()
		if pushed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no profile of weir pushed to Pyroscope; got %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.yaml.in/yaml/v3"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

func TestRetentionConfig(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	var c struct {
		Retention retentionConfig `yaml:"retention"`
	}
	src := "retention:\n  default: 90d\n  tenants: {acme: 30d}\n  streams: {acme/debug: 1d12h, audit: 0}\n  interval: 30s\n"
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	r := c.Retention.sink()
	if r.Default != 90*day || r.Tenants["acme"] != 30*day || r.Streams["acme/debug"] != 36*time.Hour || r.Interval != 30*time.Second {
		t.Errorf("parsed %+v", r)
	}
	if d, ok := r.Streams["default/audit"]; !ok || d != 0 {
		t.Errorf("a stream without a tenant is the default tenant's: %+v", r.Streams)
	}
	if err := yaml.Unmarshal([]byte("retention: 7d\n"), &c); err != nil || c.Retention.sink().Default != 7*day {
		t.Errorf("retention: 7d gave %+v, %v", c.Retention, err)
	}
	for _, bad := range []string{"retention: 7x\n", "retention: {defualt: 7d}\n", "retention: {tenants: {acme: -1h}}\n", "retention: 1.5d\n"} {
		var c struct {
			Retention retentionConfig `yaml:"retention"`
		}
		if err := yaml.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%q accepted: %+v", bad, c.Retention)
		}
	}
}

// metric returns the value of a metric without labels from /metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("metric %s not found", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// retentionYAML keeps stream app seven days and every other stream
// forever, and looks for expired files every 100 ms.
const retentionYAML = `
sink:
  max_file_age: 100ms
retention:
  streams: {app: 7d}
  interval: 100ms
`

// TestRetentionEndToEnd pushes records ten days old and records of now
// to a stream kept for seven days and to one kept forever: the old
// records of the first leave SQL and the disk, the rest stay, the metric
// counts what went, and a graceful restart brings nothing back.
func TestRetentionEndToEnd(t *testing.T) {
	data := t.TempDir()
	mutate := func(c *config) {
		if err := yaml.Unmarshal([]byte(retentionYAML), c); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, data, mutate)
	checkRetention(t, s.url, data)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, mutate)
	waitReady(t, s.url)
	checkNothingBack(t, s.url)
	checkRetained(t, s.url, data)
}

// TestRetentionKill is TestRetentionEndToEnd with kill -9 instead of a
// graceful restart: the write-ahead log still holds the removed records
// then, and must not bring them back.
func TestRetentionKill(t *testing.T) {
	data := t.TempDir()
	config := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(config, []byte(retentionYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startWeir(t, data, config)
	checkRetention(t, p.url, data)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p = startWeir(t, data, config)
	waitReady(t, p.url)
	checkNothingBack(t, p.url)
	checkRetained(t, p.url, data)
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := <-p.exited; err != nil {
		t.Errorf("weir after SIGINT: %v\n%s", err, p.logs.String())
	}
}

// checkRetention pushes 50 records ten days old and 30 of now to app
// (kept 7 days) and 20 old ones to keep (kept forever), waits for the
// retention metric to count the 50, and checks what SQL and the disk
// show.
func checkRetention(t *testing.T, url, data string) {
	t.Helper()
	ingest, _ := newClients(url)
	old := time.Now().Add(-10 * 24 * time.Hour).UTC()
	push := func(stream string, ts time.Time, n int) {
		t.Helper()
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord("line " + strconv.Itoa(i))
			recs[i].TimeUnixNano = uint64(ts.Add(time.Duration(i) * time.Millisecond).UnixNano())
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: stream, Records: recs})); err != nil {
			t.Fatal(err)
		}
	}
	push("app", old, 50)
	push("app", time.Now(), 30)
	push("keep", old, 20)
	deadline := time.Now().Add(20 * time.Second)
	for metric(t, url, "weir_retention_rows_total") < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("retention removed %v rows, want 50", metric(t, url, "weir_retention_rows_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := metric(t, url, "weir_retention_files_total"); got < 1 {
		t.Errorf("weir_retention_files_total = %v", got)
	}
	checkRetained(t, url, data)
}

// checkNothingBack checks, right after a restart is ready, that app
// holds its 30 recent records only: once ready, the records the
// write-ahead log replayed are queryable, and none of the removed ones
// may be among them (retention would remove them again moments later,
// so waiting would hide them).
func checkNothingBack(t *testing.T, url string) {
	t.Helper()
	res := mustSQL(t, url, "SELECT count(*) AS n FROM app")
	if n := fmt.Sprint(res.Rows[0]["n"]); n != "30" {
		t.Errorf("app holds %s records after the restart, want 30: removed records came back", n)
	}
}

// checkRetained checks that app holds only its 30 recent records, keep
// its 20 old ones, and that app's expired directories are gone.
func checkRetained(t *testing.T, url, data string) {
	t.Helper()
	cutoff := "TIMESTAMPTZ '" + time.Now().Add(-7*24*time.Hour).UTC().Format(time.RFC3339) + "'"
	waitCount(t, url, "SELECT count(*) FROM app WHERE timestamp < "+cutoff, 0)
	waitCount(t, url, "SELECT count(*) FROM app", 30)
	waitCount(t, url, "SELECT count(DISTINCT _offset) FROM app", 30)
	waitCount(t, url, "SELECT count(*) FROM keep", 20)
	cutDate := time.Now().Add(-7 * 24 * time.Hour).UTC().Format("2006-01-02")
	oldDirs := func() []string {
		dirs, _ := filepath.Glob(filepath.Join(data, "lake", "tenant=default", "stream=app", "date=*"))
		var out []string
		for _, d := range dirs {
			if strings.TrimPrefix(filepath.Base(d), "date=") < cutDate {
				out = append(out, d)
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(oldDirs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if d := oldDirs(); len(d) > 0 {
		t.Errorf("expired directories still there: %v", d)
	}
	kept, _ := filepath.Glob(filepath.Join(data, "lake", "tenant=default", "stream=keep", "date=*", "hour=*", "*.parquet"))
	if len(kept) == 0 {
		t.Error("the files of stream keep are gone")
	}
}

// waitReady waits for /readyz to answer 200.
func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s not ready", url)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// requireProgram returns the path of an external program the test
// drives. Without it the test skips, except under CI (WEIR_CI=1), where
// .ci/run installs it and a missing program is a failure.
func requireProgram(t *testing.T, name, install string) string {
	t.Helper()
	for _, dir := range []string{"", "/usr/sbin", "/sbin"} {
		p := name
		if dir != "" {
			p = filepath.Join(dir, name)
		}
		if found, err := exec.LookPath(p); err == nil {
			return found
		}
	}
	if os.Getenv("WEIR_CI") == "1" {
		t.Fatalf("%s is not installed; .ci/run installs it (%s)", name, install)
	}
	t.Skipf("%s is not installed (%s); skipping", name, install)
	return ""
}

// startRsyslog runs rsyslogd in the foreground with the configuration
// conf (its work directory is dir) until the test ends.
func startRsyslog(t *testing.T, dir, conf string) {
	t.Helper()
	bin := requireProgram(t, "rsyslogd", "apt-get install rsyslog rsyslog-elasticsearch")
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-N1", "-f", confPath).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1: %v\n%s\n%s", err, out, conf)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", logs.String())
		}
	})
}

// TestBulkGoElasticsearch sends documents with the official Go client's
// BulkIndexer to a real server and checks through SQL that each arrived
// once, with its fields, resource and severity; one with an unreadable
// @timestamp is acknowledged and kept in the dead-letter stream.
func TestBulkGoElasticsearch(t *testing.T) {
	s := startServer(t, "", nil)
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.url}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := es.Info()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	body, _ := io.ReadAll(info.Body)
	info.Body.Close()
	if info.StatusCode != 200 || !strings.Contains(string(body), `"number":"8.`) {
		t.Fatalf("Info: %d %s", info.StatusCode, body)
	}

	const n = 600
	levels := []string{"debug", "info", "warn", "error"}
	var ok, failed atomic.Int64
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client: es, Index: "logs-gotest-default", NumWorkers: 2, FlushBytes: 8 << 10,
		OnError: func(_ context.Context, err error) { t.Errorf("bulk indexer: %v", err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		doc := map[string]any{
			"@timestamp": base.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
			"message":    fmt.Sprintf("document %d", i),
			"log":        map[string]any{"level": levels[i%len(levels)]},
			"service":    map[string]any{"name": "gotest"},
			"host":       map[string]any{"name": "builder"},
			"user":       map[string]any{"id": i, "roles": []string{"a", "b"}},
		}
		if i == n/2 {
			// Kept in the dead-letter stream: stored with the valid
			// documents of its request, so acknowledged as created.
			doc["@timestamp"] = "the day before yesterday"
		}
		raw, _ := json.Marshal(doc)
		err := bi.Add(ctx, esutil.BulkIndexerItem{
			Action: "create", DocumentID: fmt.Sprintf("doc-%d", i), Body: bytes.NewReader(raw),
			OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) { ok.Add(1) },
			OnFailure: func(_ context.Context, item esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
				failed.Add(1)
				t.Errorf("item %s: %d %+v %v", item.DocumentID, res.Status, res.Error, err)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := bi.Stats(); ok.Load() != n || failed.Load() != 0 || st.NumCreated != n || st.NumFailed != 0 {
		t.Fatalf("indexer: %d ok, %d failed, stats %+v", ok.Load(), failed.Load(), st)
	}

	waitCount(t, s.url, "SELECT count(*) FROM logs_gotest_default", n-1)
	waitCount(t, s.url, "SELECT count(DISTINCT attributes['es.id']) FROM logs_gotest_default", n-1)
	waitCount(t, s.url, "SELECT count(*) FROM logs_gotest_default WHERE attributes['es.id'] = 'doc-300'", 0)
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE attributes['es.id'] = 'doc-300' AND body = 'document 300'", 1)
	bySeverity := countBy(t, s.url, "SELECT severity_text, count(*) FROM logs_gotest_default GROUP BY 1")
	for _, lvl := range []string{"DEBUG", "INFO", "WARN", "ERROR"} {
		want := int64(n / 4)
		if lvl == "DEBUG" { // doc-300 went to the dead letters
			want--
		}
		if bySeverity[lvl] != want {
			t.Errorf("severity %s: %d records, want %d (%v)", lvl, bySeverity[lvl], want, bySeverity)
		}
	}
	res := mustSQL(t, s.url, `SELECT body, severity_number, epoch_ms(timestamp) AS ms, service_name, resource['host.name'] AS host,
		attributes['user.id'] AS uid, attributes['user.roles'] AS roles, attributes['es.index'] AS idx
		FROM logs_gotest_default WHERE attributes['es.id'] = 'doc-7'`)
	if len(res.Rows) != 1 {
		t.Fatalf("doc-7: %+v", res.Rows)
	}
	row := res.Rows[0]
	want := map[string]string{
		"body": "document 7", "severity_number": "17", "ms": fmt.Sprint(base.Add(7 * time.Second).UnixMilli()),
		"service_name": "gotest", "host": "builder", "uid": "7", "roles": `["a","b"]`, "idx": "logs-gotest-default",
	}
	for k, v := range want {
		if got := fmt.Sprint(row[k]); got != v {
			t.Errorf("doc-7 %s = %q, want %q", k, got, v)
		}
	}
}

// TestBulkBadLines posts a body whose malformed lines sit among valid
// ones: the malformed get 400 items, the valid are stored, all in order.
func TestBulkBadLines(t *testing.T) {
	s := startServer(t, "", nil)
	body := strings.Join([]string{
		`{"index":{"_index":"mixed"}}`, `{"message":"good 1","level":"info"}`,
		`{"index":{"_index":"mixed"}}`, `{"message": "unterminated`,
		`[1,2,3]`, `{"message":"after a broken action"}`,
		`{"delete":{"_index":"mixed","_id":"x"}}`,
		`{"index":{"_index":"-bad"}}`, `{"message":"bad index"}`,
		`{"index":{"_index":"mixed"}}`, `{"message":"good 2","level":"error"}`,
	}, "\n") + "\n"
	req, _ := http.NewRequest(http.MethodPost, s.url+"/_bulk", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		Errors bool                        `json:"errors"`
		Items  []map[string]map[string]any `json:"items"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s: %v", resp.StatusCode, raw, err)
	}
	want := []string{"index 201", "index 400", "index 400", "delete 400", "index 400", "index 201"}
	if len(out.Items) != len(want) || !out.Errors {
		t.Fatalf("items %s", raw)
	}
	for i, w := range want {
		action, status, _ := strings.Cut(w, " ")
		if got := fmt.Sprint(out.Items[i][action]["status"]); got != status {
			t.Errorf("item %d: %v, want %s", i, out.Items[i], w)
		}
	}
	waitCount(t, s.url, "SELECT count(*) FROM mixed", 2)
	if got := countBy(t, s.url, "SELECT body, severity_number FROM mixed"); got["good 1"] != 9 || got["good 2"] != 17 {
		t.Errorf("stored %v", got)
	}
}

// TestBulkRsyslog has rsyslog's omelasticsearch, in bulk mode, send the
// lines of a file it follows (imfile) to weir as JSON documents.
func TestBulkRsyslog(t *testing.T) {
	requireProgram(t, "rsyslogd", "apt-get install rsyslog rsyslog-elasticsearch")
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so"); err != nil {
		if matches, _ := filepath.Glob("/usr/lib/*/rsyslog/omelasticsearch.so"); len(matches) == 0 {
			if os.Getenv("WEIR_CI") == "1" {
				t.Fatal("rsyslog's omelasticsearch is not installed; .ci/run installs rsyslog-elasticsearch")
			}
			t.Skip("rsyslog's omelasticsearch is not installed (apt-get install rsyslog-elasticsearch); skipping")
		}
	}
	s := startServer(t, "", nil)
	u, _ := url.Parse(s.url)
	dir := t.TempDir()
	const n = 300
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, "rsyslog line %d\n", i)
	}
	in := filepath.Join(dir, "in.log")
	if err := os.WriteFile(in, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	startRsyslog(t, dir, fmt.Sprintf(`
global(workDirectory=%[1]q)
module(load="imfile" mode="polling" PollingInterval="1")
module(load="omelasticsearch")
input(type="imfile" File=%[2]q Tag="weirtest" Severity="warning" Facility="local0")
template(name="weirjson" type="list" option.jsonf="on") {
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
  property(outname="host.name" name="hostname" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="app" name="programname" format="jsonf")
}
action(type="omelasticsearch" server="127.0.0.1" serverport=%[3]q template="weirjson"
       searchIndex="rsyslog-test" bulkmode="on" esVersion.major="8"
       queue.type="linkedlist" queue.dequeueBatchSize="64"
       action.resumeRetryCount="-1" errorFile=%[4]q)
`, dir, in, u.Port(), filepath.Join(dir, "es-errors.json")))

	waitCountFor(t, s.url, "SELECT count(*) FROM rsyslog_test", n, 30*time.Second)
	waitCount(t, s.url, "SELECT count(DISTINCT body) FROM rsyslog_test WHERE body LIKE 'rsyslog line %'", n)
	waitCount(t, s.url, "SELECT count(*) FROM rsyslog_test WHERE severity_text = 'WARN' AND attributes['app'] = 'weirtest' AND resource['host.name'] <> ''", n)
	if raw, err := os.ReadFile(filepath.Join(dir, "es-errors.json")); err == nil && len(raw) > 0 {
		t.Errorf("omelasticsearch reported errors: %s", raw)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestUIServed checks the UI's routes on a real server: the page and its
// modules with their media types, the dashboards and the schema, and that
// the UI, mounted at "/", leaves every other route alone.
func TestUIServed(t *testing.T) {
	s := startServer(t, "", nil)
	if out, err := runWeir(t, "push", "--server", s.url, "--stream", "hdfs", "--guess-severity", filepath.Join(loghubDir, "HDFS_2k.log")); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	waitCount(t, s.url, "SELECT count(*) FROM logs", 2000)
	for path, want := range map[string]string{
		"/":                  "text/html; charset=utf-8",
		"/app.js":            "text/javascript; charset=utf-8",
		"/views/explore.js":  "text/javascript; charset=utf-8",
		"/style.css":         "text/css; charset=utf-8",
		"/ui/dashboards":     "application/json",
		"/ui/schema":         "application/json",
		"/ui/schema?stream=": "application/json",
	} {
		status, ctype, _ := get(t, s.url+path)
		if status != http.StatusOK || ctype != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, status, ctype, want)
		}
	}
	if status, _, _ := get(t, s.url+"/no/such/page"); status != http.StatusNotFound {
		t.Errorf("GET /no/such/page: %d, want 404", status)
	}
	if status, _, body := get(t, s.url+"/healthz"); status != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", status, body)
	}
	if status, _, _ := get(t, s.url+"/v1/sql"); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/sql: %d, want 405 from the SQL handler", status)
	}
	_, _, body := get(t, s.url+"/ui/schema?stream=hdfs")
	var sc struct {
		Streams []struct {
			Name    string `json:"name"`
			Records int64  `json:"records"`
		} `json:"streams"`
		AttributeKeys []struct {
			Key   string `json:"key"`
			Count int64  `json:"count"`
		} `json:"attribute_keys"`
	}
	if err := json.Unmarshal([]byte(body), &sc); err != nil {
		t.Fatalf("schema %s: %v", body, err)
	}
	if len(sc.Streams) != 1 || sc.Streams[0].Name != "hdfs" || sc.Streams[0].Records != 2000 {
		t.Errorf("schema streams: %+v", sc.Streams)
	}
	// Records pushed without processors carry no attributes.
	if len(sc.AttributeKeys) != 0 {
		t.Errorf("schema attribute keys: %+v", sc.AttributeKeys)
	}
}

// TestUIDashboardsFile starts servers with a dashboards file: a good one
// is served after the built-in dashboard, a bad one stops the start with
// the file and line named.
func TestUIDashboardsFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dash.yaml"), []byte(`dashboards:
  - name: Mine
    panels:
      - {title: Count, kind: stat, sql: "SELECT count(*) FROM logs"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := writeConfig(t, dir, "ui:\n  dashboards: dash.yaml\n")
	s := startServer(t, "", withConfigFile(t, cfgPath))
	_, _, body := get(t, s.url+"/ui/dashboards")
	var d struct {
		Dashboards []struct {
			Name string `json:"name"`
		} `json:"dashboards"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || len(d.Dashboards) != 2 || d.Dashboards[1].Name != "Mine" {
		t.Fatalf("dashboards %s: %v", body, err)
	}

	if err := os.WriteFile(filepath.Join(dir, "dash.yaml"), []byte("dashboards:\n  - name: Bad\n    panels:\n      - {title: X, kind: pie, sql: SELECT 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	if err := loadConfigFile(&cfg, cfgPath); err != nil {
		t.Fatal(err)
	}
	cfg.Data = t.TempDir()
	err := serveWith(t, cfg)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "dash.yaml")+":4:") || !strings.Contains(err.Error(), `kind "pie"`) {
		t.Fatalf("serve with a bad dashboards file: %v", err)
	}
}

// serveWith runs serve until it fails or a second has passed, and returns
// its error.
func serveWith(t *testing.T, cfg config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return serve(ctx, cfg, ln, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// checkUI drives the web UI in headless Chromium against s, which holds
// the 16 Loghub samples pushed as streams (total records) with the
// example processors, as a new user would have it (TestLoghubExamples-
// EndToEnd calls it): the overview shows volume by severity, Explore
// filters, Top errors finds the HDFS warning pattern and opens its
// records, the SQL console charts a query, the dashboards draw, and live
// tail receives new records. Screenshots go to $WEIR_ARTIFACTS/ui, named
// in the log; without it, to the test's temporary directory, removed
// with it.
func checkUI(t *testing.T, s *testServer, streams []string, total int64) {
	chrome := findChromium(t)
	b := newBrowser(t, chrome)

	// Overview: a histogram stacked by severity, totals per stream.
	b.do(chromedp.Navigate(s.url + "/#/overview?range=all"))
	b.waitFor(`document.querySelector('#overview').dataset.state === 'ready'`, "the overview")
	sevs := evalJS[[]string](b, `[...new Set([...document.querySelectorAll('#ov-hist rect.bar')].map((r) => r.dataset.sev))].sort()`)
	for _, want := range []string{"ERROR", "INFO", "WARN"} {
		if !slices.Contains(sevs, want) {
			t.Errorf("histogram severities %v: no %s", sevs, want)
		}
	}
	if got := evalJS[string](b, `document.querySelector('#ov-total .v').textContent.replaceAll(',', '')`); got != strconv.FormatInt(total, 10) {
		t.Errorf("overview total %s, want %d", got, total)
	}
	if got := evalJS[[]string](b, `[...document.querySelectorAll('#ov-streams tbody td:first-child')].map((td) => td.textContent).sort()`); !slices.Equal(got, streams) {
		t.Errorf("overview streams %v", got)
	}
	b.screenshot("overview")

	// A histogram bucket zooms in from the keyboard too: Tab to it, Enter.
	b.do(chromedp.Focus(chromedp.CSS("#ov-hist g.hits rect")), chromedp.KeyEvent(kb.Enter))
	b.waitFor(`location.hash.includes('from=') && location.hash.includes('to=') && document.querySelector('#overview').dataset.state === 'ready'`, "the zoomed-in overview")
	b.do(chromedp.Navigate(s.url + "/#/overview?range=all"))
	b.waitFor(`!location.hash.includes('from=') && document.querySelector('#overview').dataset.state === 'ready'`, "the overview over all time")

	// The tabs work from the keyboard: the right arrow opens Explore.
	b.do(chromedp.Focus(chromedp.CSS("#tab-overview")), chromedp.KeyEvent(kb.ArrowRight))
	b.waitFor(`location.hash.startsWith('#/explore') && document.querySelector('#tab-explore').getAttribute('aria-selected') === 'true' && document.querySelector('#explore').dataset.state === 'ready'`, "Explore from the keyboard")

	// Explore: filter by stream and severity in the form (once the stream
	// list has loaded).
	b.waitFor(`document.querySelector('#explore-stream option[value="zookeeper"]') !== null`, "the stream list")
	b.do(chromedp.SetValue(chromedp.CSS("#explore-stream"), "zookeeper"),
		chromedp.SetValue(chromedp.CSS("#explore-sev"), "17"),
		chromedp.Click(chromedp.CSS("#explore form.filters button[type=submit]")))
	errorCount := sqlInt(t, s.url, "SELECT count(*) FROM logs WHERE stream = 'zookeeper' AND severity_number >= 17")
	b.waitFor(fmt.Sprintf(`location.hash.includes('stream=zookeeper') && document.querySelector('#explore').dataset.state === 'ready' && document.querySelectorAll('#explore-rows tr.record').length === %d`, errorCount), "the filtered records")
	rows := evalJS[[]struct{ Stream, Sev string }](b, `[...document.querySelectorAll('#explore-rows tr.record')].map((tr) => ({Stream: tr.dataset.stream, Sev: tr.querySelector('.sev').textContent}))`)
	for _, r := range rows {
		if r.Stream != "zookeeper" || !strings.HasPrefix(r.Sev, "ERROR") && !strings.HasPrefix(r.Sev, "FATAL") {
			t.Errorf("filtered row %+v", r)
		}
	}
	// Expand a row and click an attribute's value: it becomes a filter.
	b.do(chromedp.Click(chromedp.CSS("#explore-rows tr.record button.expander")))
	b.waitFor(`[...document.querySelectorAll('#explore-rows tr.detail:not([hidden]) td')].some((td) => td.textContent === 'attributes.component')`, "the expanded row")
	b.screenshot("explore-row")
	component := evalJS[string](b, `(() => {
		const tr = [...document.querySelectorAll('#explore-rows tr.detail:not([hidden]) table.kv tr')].find((tr) => tr.cells[0].textContent === 'attributes.component');
		const v = tr.querySelector('button.val');
		v.click();
		return v.textContent;
	})()`)
	n := sqlInt(t, s.url, fmt.Sprintf("SELECT count(*) FROM logs WHERE stream = 'zookeeper' AND severity_number >= 17 AND attributes['component'] = '%s'", strings.ReplaceAll(component, "'", "''")))
	b.waitFor(fmt.Sprintf(`location.hash.includes('attr=component') && document.querySelector('#explore').dataset.state === 'ready' && document.querySelectorAll('#explore-rows tr.record').length === %d`, n), "the click-to-filter records")
	if chips := evalJS[string](b, `document.querySelector('#explore .chips').textContent`); !strings.Contains(chips, "component = "+component) {
		t.Errorf("filter chips %q lack component = %s", chips, component)
	}

	// Keyset paging: two pages of HDFS records, newest first, are the
	// first 200 records in that order.
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#/explore?range=all&stream=hdfs'`))
	b.waitFor(`document.querySelector('#explore').dataset.state === 'ready' && document.querySelectorAll('#explore-rows tr.record').length === 100 && !document.querySelector('#explore-more').hidden`, "the first page")
	b.do(chromedp.Click(chromedp.CSS("#explore-more")))
	b.waitFor(`document.querySelector('#explore').dataset.state === 'ready' && document.querySelectorAll('#explore-rows tr.record').length === 200`, "the second page")
	got := evalJS[[]string](b, `[...document.querySelectorAll('#explore-rows tr.record')].map((tr) => tr.dataset.offset)`)
	res := mustSQL(t, s.url, "SELECT _offset::VARCHAR AS o FROM hdfs ORDER BY timestamp DESC, _offset DESC LIMIT 200")
	var want []string
	for _, r := range res.Rows {
		want = append(want, r["o"].(string))
	}
	if !slices.Equal(got, want) {
		t.Errorf("two pages of HDFS offsets:\n got %v\nwant %v", got, want)
	}

	// Body search, whatever the case (an ILIKE '%…%' the sandbox takes):
	// the records whose body holds the text.
	res = mustSQL(t, s.url, "SELECT count(*) AS n FROM hdfs WHERE lower(body) LIKE '%verification succeeded%'")
	searched, _ := res.Rows[0]["n"].(json.Number).Int64()
	if searched == 0 || searched >= 100 {
		t.Fatalf("%d HDFS records hold the text searched for; the check wants one page of them", searched)
	}
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#/explore?range=all&stream=hdfs&q=VERIFICATION+succeeded'`))
	b.waitFor(fmt.Sprintf(`location.hash.includes('q=') && document.querySelector('#explore').dataset.state === 'ready' && document.querySelectorAll('#explore-rows tr.record').length === %d`, searched), "the searched records")

	// Top errors: with warnings included, the HDFS warning pattern is
	// listed; clicking it shows its records in Explore.
	res = mustSQL(t, s.url, `SELECT attributes['pattern.id'] AS id, any_value(attributes['pattern.template']) AS template, count(*) AS n
		FROM hdfs WHERE severity_number >= 13 GROUP BY 1 ORDER BY n DESC LIMIT 1`)
	pid, template := res.Rows[0]["id"].(string), res.Rows[0]["template"].(string)
	pn, _ := res.Rows[0]["n"].(json.Number).Int64()
	b.do(chromedp.Click(chromedp.CSS("#tab-errors")))
	b.waitFor(`document.querySelector('#errors').dataset.state === 'ready'`, "Top errors")
	b.do(chromedp.Click(chromedp.CSS("#errors-warn")))
	sel := fmt.Sprintf(`#errors-table tr[data-pattern="%s"]`, pid)
	b.waitFor(fmt.Sprintf(`location.hash.includes('warn=1') && document.querySelector('#errors').dataset.state === 'ready' && document.querySelector('%s') !== null`, sel), "the HDFS warning pattern")
	if text := evalJS[string](b, fmt.Sprintf(`document.querySelector('%s').textContent`, sel)); !strings.Contains(text, template) || !strings.Contains(text, strconv.FormatInt(pn, 10)) {
		t.Errorf("pattern row %q, want %q and %d", text, template, pn)
	}
	if !evalJS[bool](b, fmt.Sprintf(`document.querySelector('%s svg.spark polyline') !== null`, sel)) {
		t.Error("the pattern has no sparkline")
	}
	b.screenshot("top-errors")
	b.do(chromedp.Click(chromedp.CSS(sel + " button.val")))
	b.waitFor(fmt.Sprintf(`location.hash.includes('pattern.id') && document.querySelector('#explore').dataset.state === 'ready' && document.querySelectorAll('#explore-rows tr.record').length === %d`, pn), "the pattern's records")
	if streams := evalJS[[]string](b, `[...new Set([...document.querySelectorAll('#explore-rows tr.record')].map((tr) => tr.dataset.stream))]`); !slices.Equal(streams, []string{"hdfs"}) {
		t.Errorf("pattern records from %v", streams)
	}
	b.screenshot("explore-pattern")

	// SQL console: Ctrl+Enter runs; a time bucket and a count make a
	// line chart, a label and a count a bar chart.
	b.do(chromedp.Click(chromedp.CSS("#tab-console")))
	q := "SELECT time_bucket(INTERVAL 1 HOUR, timestamp) AS t, severity_text, count(*) AS n FROM hdfs GROUP BY ALL ORDER BY t, severity_text"
	rowCount := len(mustSQL(t, s.url, q).Rows)
	b.console(q)
	b.do(chromedp.Focus(chromedp.CSS("#sql")), chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	b.waitFor(fmt.Sprintf(`document.querySelector('#console').dataset.state === 'ready' && document.querySelectorAll('#console-table tbody tr').length === %d`, rowCount), "the console's result")
	if !evalJS[bool](b, `document.querySelectorAll('#console-chart [data-kind=line] polyline.line').length === 2`) {
		t.Error("no line chart with two series (INFO, WARN) for a time-bucketed count")
	}
	b.screenshot("console")
	b.console("SELECT stream, count(*) AS n FROM logs GROUP BY stream ORDER BY n DESC, stream")
	b.do(chromedp.Click(chromedp.CSS("#sql-run")))
	b.waitFor(fmt.Sprintf(`document.querySelector('#console').dataset.state === 'ready' && document.querySelectorAll('#console-chart [data-kind=bar] rect.bar').length === %d`, len(streams)), "a bar chart")
	b.do(chromedp.Click(chromedp.CSS("#sql-explain")))
	b.waitFor(`document.querySelector('#console').dataset.state === 'ready' && (document.querySelector('#sql-plan') || {}).textContent?.includes('┌')`, "the plan")
	csv := b.download("#sql-csv", ".csv")
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); len(lines) != len(streams)+1 || strings.TrimSpace(lines[0]) != "stream,n" {
		t.Errorf("CSV download:\n%s", csv)
	}
	if pq := b.download("#sql-parquet", ".parquet"); !strings.HasPrefix(pq, "PAR1") || !strings.HasSuffix(pq, "PAR1") {
		t.Errorf("Parquet download of %d bytes is not a Parquet file", len(pq))
	}
	b.console("SELECT count(*) FROM range(2000000000000) t(i) WHERE i % 7 = 3")
	b.do(chromedp.Click(chromedp.CSS("#sql-run")))
	b.waitFor(`document.querySelector('#console').dataset.state === 'loading'`, "the slow query to start")
	time.Sleep(200 * time.Millisecond)
	b.do(chromedp.Click(chromedp.CSS("#sql-cancel")))
	b.waitFor(`document.querySelector('#console').dataset.state === 'cancelled'`, "the cancel")
	start := time.Now()
	mustSQL(t, s.url, "SELECT 1")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a query after the cancel took %v", d)
	}

	// Dashboards: every panel of the built-in dashboard draws.
	b.do(chromedp.Click(chromedp.CSS("#tab-dashboards")))
	b.waitFor(`document.querySelector('#dashboards').dataset.state === 'ready'`, "the dashboards")
	if states := evalJS[[]string](b, `[...document.querySelectorAll('#dash-grid .panel')].map((p) => p.dataset.state)`); len(states) < 8 || slices.ContainsFunc(states, func(s string) bool { return s != "ready" }) {
		t.Errorf("panel states %v", states)
	}
	if got := evalJS[string](b, `document.querySelector('#dash-grid .panel[data-kind=stat] .panel-stat').textContent.replaceAll(',', '')`); got != strconv.FormatInt(total, 10) {
		t.Errorf("records panel %s, want %d", got, total)
	}
	b.screenshot("dashboards")

	// Live tail of stream hdfs: a record pushed to hdfs appears, one to
	// zookeeper does not; while paused, records wait.
	b.do(chromedp.Click(chromedp.CSS("#tab-tail")))
	b.do(chromedp.SetValue(chromedp.CSS("#tail-stream"), "hdfs"), chromedp.Click(chromedp.CSS("#tail form.filters button[type=submit]")))
	b.waitFor(`location.hash.includes('stream=hdfs') && document.querySelector('#tail').dataset.state === 'ready'`, "the tail to connect")
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	pushLine(t, s.url, "zookeeper", "2015-07-29 17:41:44,747 - WARN  [main:QuorumPeer@1] - ui tail other "+nonce)
	pushLine(t, s.url, "hdfs", "081109 203615 148 WARN dfs.DataNode: ui tail record "+nonce)
	b.waitFor(fmt.Sprintf(`document.querySelector('#tail-rows').textContent.includes('ui tail record %s')`, nonce), "the pushed record in the tail")
	if evalJS[bool](b, fmt.Sprintf(`document.querySelector('#tail-rows').textContent.includes('ui tail other %s')`, nonce)) {
		t.Error("the tail of hdfs shows a zookeeper record")
	}
	b.do(chromedp.Click(chromedp.CSS("#tail-pause")))
	pushLine(t, s.url, "hdfs", "081109 203616 148 INFO dfs.DataNode: ui tail paused "+nonce)
	b.waitFor(`document.querySelector('#tail-counts').textContent.includes('1 waiting')`, "the record held by the pause")
	if evalJS[bool](b, fmt.Sprintf(`document.querySelector('#tail-rows').textContent.includes('ui tail paused %s')`, nonce)) {
		t.Error("a record showed while paused")
	}
	b.do(chromedp.Click(chromedp.CSS("#tail-pause")))
	b.waitFor(fmt.Sprintf(`document.querySelector('#tail-rows').textContent.includes('ui tail paused %s')`, nonce), "the held record after resuming")
	b.screenshot("live-tail")
	b.checkErrors()
}

// uiBrowser is a headless Chromium tab for one test.
type uiBrowser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	downloads string

	mu       sync.Mutex
	jsErrors []string
}

// findChromium returns the path of a Chromium or Chrome binary ($WEIR_CHROME
// first), or skips the test; under WEIR_CI=1 it fails instead.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEIR_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("WEIR_CI") == "1" {
		t.Fatal("Chromium is not installed; the browser tests need it (apt-get install chromium)")
	}
	t.Skip("Chromium is not installed (apt-get install chromium, or set WEIR_CHROME); skipping the browser test")
	return ""
}

func newBrowser(t *testing.T, chrome string) *uiBrowser {
	t.Helper()
	b := &uiBrowser{t: t, downloads: t.TempDir()}
	if dir := os.Getenv("WEIR_ARTIFACTS"); dir != "" {
		b.artifacts = filepath.Join(dir, "ui")
		if err := os.MkdirAll(b.artifacts, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		b.artifacts = t.TempDir()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.WindowSize(1280, 900),
		chromedp.DisableGPU,
		// Chromium leaves its singleton socket's directory in TMPDIR;
		// the test's own is removed with it.
		chromedp.Env("TMPDIR="+t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	b.ctx = ctx
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
			b.mu.Lock()
			b.jsErrors = append(b.jsErrors, msg)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	_, err = chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: b.downloads,
	})
	if err != nil {
		t.Fatalf("set the download directory: %v", err)
	}
	return b
}

func (b *uiBrowser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fail("%v", err)
	}
}

// waitFor waits up to 20 s for a JavaScript expression to be truthy.
func (b *uiBrowser) waitFor(expr, what string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.fail("waiting for %s (%s): %v", what, expr, err)
	}
}

// console puts a statement into the SQL console and forgets the last
// result's state, so that waits see the next one.
func (b *uiBrowser) console(sql string) {
	b.t.Helper()
	b.do(chromedp.SetValue(chromedp.CSS("#sql"), sql), chromedp.Evaluate[chromedp.Void](`document.querySelector('#console').dataset.state = ''`))
}

// download clicks a download button and returns the file that arrives.
func (b *uiBrowser) download(button, ext string) string {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(button)))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(b.downloads, "*"+ext))
		if len(files) == 1 {
			raw, err := os.ReadFile(files[0])
			if err != nil {
				b.t.Fatal(err)
			}
			os.Remove(files[0])
			return string(raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.fail("no %s download arrived in %s", ext, b.downloads)
	return ""
}

func (b *uiBrowser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.artifacts, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// fail saves a screenshot of the page as it is and ends the test.
func (b *uiBrowser) fail(format string, args ...any) {
	b.t.Helper()
	b.screenshot("failure")
	b.checkErrors()
	b.t.Fatalf(format, args...)
}

// checkErrors fails the test for every uncaught JavaScript exception.
func (b *uiBrowser) checkErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.jsErrors {
		b.t.Errorf("JavaScript exception: %s", e)
	}
	b.jsErrors = nil
}

func evalJS[T any](b *uiBrowser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// sqlInt runs a one-number query.
func sqlInt(t *testing.T, url, sql string) int64 {
	t.Helper()
	res := mustSQL(t, url, sql)
	n, err := res.Rows[0][res.Columns[0].Name].(json.Number).Int64()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// pushLine pushes one line to a stream with `weir push --guess-severity`.
func pushLine(t *testing.T, url, stream, line string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "line.log")
	if err := os.WriteFile(f, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runWeir(t, "push", "--server", url, "--stream", stream, "--guess-severity", f); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
}

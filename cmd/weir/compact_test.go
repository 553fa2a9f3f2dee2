package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/chromedp/chromedp"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestCompactionEndToEnd runs a server that compacts files a second old:
// while Loghub lines of four services arrive and queries run all the
// time, the published files are replaced by compacted ones, no query
// fails, every record is counted once before and after a restart, and
// the lake ends up in compacted files only.
func TestCompactionEndToEnd(t *testing.T) {
	data := t.TempDir()
	mutate := func(c *config) {
		c.Sink.MaxFileAge = 200 * time.Millisecond
		c.Sink.Compaction.Age = time.Second
		c.Sink.Compaction.SortRows = 1024
	}
	s := startServer(t, data, mutate)
	var lines []string
	for _, name := range []string{"HDFS_2k.log", "OpenSSH_2k.log", "Zookeeper_2k.log", "Spark_2k.log"} {
		f, err := os.Open(filepath.Join(loghubDir, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures []string
	var mu sync.Mutex
	var seen atomic.Bool // a query succeeded: the stream's view exists
	wg.Go(func() {
		for ctx.Err() == nil {
			status, raw, _ := postSQL(t, s.url, "SELECT count(*) AS n, count(DISTINCT _offset) AS d FROM app", "")
			// The view appears with the first records; until then the
			// query fails for a good reason.
			if status == http.StatusOK {
				seen.Store(true)
			} else if seen.Load() {
				mu.Lock()
				failures = append(failures, string(raw))
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	ingest, _ := newClients(s.url)
	services := []string{"hdfs", "sshd", "zookeeper", "spark"}
	const perPush = 400
	// The records' times spread over ten minutes of the last quarter hour.
	base := time.Now().Add(-15 * time.Minute).Truncate(time.Minute)
	pushed := 0
	for round := range 8 {
		recs := make([]*weirv1.LogRecord, perPush)
		for i := range recs {
			n := round*perPush + i
			recs[i] = &weirv1.LogRecord{
				TimeUnixNano:   uint64(base.Add(time.Duration(n) * 10 * time.Minute / 3200).UnixNano()),
				Body:           lines[(n*7919)%len(lines)],
				SeverityNumber: weirv1.SeverityNumber([]int32{9, 9, 9, 13, 17}[n%5]),
				Resource:       []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: services[n%len(services)]}}}},
			}
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
		pushed += perPush
		time.Sleep(250 * time.Millisecond)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", int64(pushed))

	// Wait for every published file to be compacted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		files := lakeFiles(t, data)
		compacted := 0
		for _, p := range files {
			if compactedFile(t, p) {
				compacted++
			}
		}
		if len(files) > 0 && compacted == len(files) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d files compacted after 30 s", compacted, len(files))
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitCount(t, s.url, "SELECT count(DISTINCT _offset) FROM app", int64(pushed))
	if n, replaced := metric(t, s.url, "weir_compaction_files_total"), metric(t, s.url, "weir_compaction_replaced_files_total"); n < 1 || replaced < n {
		t.Errorf("weir_compaction_files_total = %v, weir_compaction_replaced_files_total = %v", n, replaced)
	}
	if rows := metric(t, s.url, "weir_compaction_rows_total"); rows < float64(pushed) {
		t.Errorf("weir_compaction_rows_total = %v, want at least the %d records pushed", rows, pushed)
	}
	if due, busy := metric(t, s.url, "weir_compaction_due_files"), metric(t, s.url, "weir_compaction_seconds_total"); due != 0 || busy <= 0 {
		t.Errorf("weir_compaction_due_files = %v, weir_compaction_seconds_total = %v once every file is compacted", due, busy)
	}
	cancel()
	wg.Wait()
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d queries failed while files were compacted; first: %s", len(failures), failures[0])
	}
	mu.Unlock()
	waitCount(t, s.url, "SELECT count(*) FROM app", int64(pushed))
	if got := countBy(t, s.url, "SELECT service_name, count(*) FROM app GROUP BY 1"); len(got) != len(services) || got["hdfs"] != int64(pushed/len(services)) {
		t.Errorf("records per service after compaction: %v", got)
	}

	// The UI's counts over the compacted files come from their rollups.
	t.Run("browser", func(t *testing.T) { checkRollupUI(t, s, base.Add(3*time.Minute+17*time.Second)) })

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, mutate)
	waitCount(t, s.url, "SELECT count(*) FROM app", int64(pushed))
	waitCount(t, s.url, "SELECT count(DISTINCT _offset) FROM app", int64(pushed))
}

// compactedFile reports whether the Parquet file at path was written by
// compaction.
func compactedFile(t *testing.T, path string) bool {
	t.Helper()
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		return false // replaced and deleted meanwhile
	}
	defer r.Close()
	return r.MetaData().KeyValueMetadata().FindValue("weir.compacted") != nil
}

// checkRollupUI opens the overview and Top errors in headless Chromium
// over two hours from `from`, which falls inside a minute of records: the
// UI counts the range's whole minutes from log_counts (the rollups of
// compacted files) and its first, part minute from logs, and every number
// it shows must equal the same count over logs.
func checkRollupUI(t *testing.T, s *testServer, from time.Time) {
	b := newBrowser(t, findChromium(t))
	from = from.UTC()
	to := from.Add(2 * time.Hour)
	rng := fmt.Sprintf("from=%s&to=%s", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	in := fmt.Sprintf("timestamp >= '%s'::TIMESTAMPTZ AND timestamp < '%s'::TIMESTAMPTZ", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))

	b.do(chromedp.Navigate(s.url + "/#/overview?" + rng))
	b.waitFor(`location.hash.includes('from=') && document.querySelector('#overview').dataset.state === 'ready'`, "the overview")
	total := sqlInt(t, s.url, "SELECT count(*) FROM logs WHERE "+in)
	part := sqlInt(t, s.url, fmt.Sprintf("SELECT count(*) FROM logs WHERE %s AND timestamp < '%s'::TIMESTAMPTZ", in, from.Truncate(time.Minute).Add(time.Minute).Format(time.RFC3339Nano)))
	if part == 0 || part == total || total == sqlInt(t, s.url, "SELECT count(*) FROM logs") {
		t.Fatalf("the range holds %d records, %d in its part minute: want some in both and some outside", total, part)
	}
	if got := evalJS[string](b, `document.querySelector('#ov-total .v').textContent.replaceAll(',', '')`); got != strconv.FormatInt(total, 10) {
		t.Errorf("overview total %s, want %d", got, total)
	}
	bySev := evalJS[map[string]int64](b, `[...document.querySelectorAll('#ov-hist rect.bar')].reduce((m, r) => (m[r.dataset.sev] = (m[r.dataset.sev] || 0) + Number(r.dataset.count), m), {})`)
	equalCounts(t, "histogram by severity", bySev, countBy(t, s.url, `SELECT CASE WHEN severity_number >= 17 THEN 'ERROR' WHEN severity_number >= 13 THEN 'WARN' ELSE 'INFO' END, count(*) FROM logs WHERE `+in+` GROUP BY 1`))
	type row struct{ Key, Records, Warnings, Errors string }
	services := evalJS[[]row](b, `[...document.querySelectorAll('#ov-services tbody tr')].map((tr) => {
		const n = (i) => tr.cells[i].textContent.replaceAll(',', '');
		return {Key: tr.cells[0].textContent, Records: n(1), Warnings: n(2), Errors: n(3)};
	})`)
	res := mustSQL(t, s.url, `SELECT service_name AS k, count(*)::VARCHAR AS n, (count(*) FILTER (WHERE severity_number BETWEEN 13 AND 16))::VARCHAR AS w,
		(count(*) FILTER (WHERE severity_number >= 17))::VARCHAR AS e FROM logs WHERE `+in+` GROUP BY 1 ORDER BY count(*) DESC, 1`)
	var want []row
	for _, r := range res.Rows {
		want = append(want, row{r["k"].(string), r["n"].(string), r["w"].(string), r["e"].(string)})
	}
	if !slices.Equal(services, want) {
		t.Errorf("records per service\n got %v\nwant %v", services, want)
	}
	b.screenshot("overview-rollups")

	// Top errors: the records have no pattern id, so they are one group,
	// and its sparkline adds up to it.
	b.do(chromedp.Navigate(s.url + "/#/errors?" + rng))
	b.waitFor(`location.hash.startsWith('#/errors') && document.querySelector('#errors').dataset.state === 'ready'`, "Top errors")
	errs := sqlInt(t, s.url, "SELECT count(*) FROM logs WHERE severity_number >= 17 AND "+in)
	got := evalJS[[]string](b, `[...document.querySelectorAll('#errors-table tbody tr')].map((tr) => tr.cells[2].textContent.replaceAll(',', '') + ' ' + tr.querySelector('svg.spark').getAttribute('aria-label').slice(7).split(', ').reduce((a, n) => a + Number(n), 0))`)
	if w := fmt.Sprintf("%d %d", errs, errs); len(got) != 1 || got[0] != w {
		t.Errorf("Top errors rows (records, sparkline total) %q, want [%s]", got, w)
	}
	if text := evalJS[string](b, `document.querySelector('#errors-table tbody tr td.time').textContent`); text == "" {
		t.Error("Top errors shows no last-seen time")
	}
	b.screenshot("top-errors-rollups")
}

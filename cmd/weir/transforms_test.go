package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// writeConfig writes a configuration file into dir and returns its path.
func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// withConfigFile makes a test server read its configuration from path.
func withConfigFile(t *testing.T, path string) func(*config) {
	return func(c *config) {
		if err := loadConfigFile(c, path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeadLetterReplay pushes records that a stream's processors reject
// (a bad parse configuration), finds them in _dead_letter with the error,
// fixes the configuration, reloads it and replays the dead letters: they
// arrive parsed, once, however often the replay is repeated, and a server
// restart keeps that.
func TestDeadLetterReplay(t *testing.T) {
	data := t.TempDir()
	cfgPath := writeConfig(t, t.TempDir(), `
streams:
  app:
    processors:
      - parse: {format: json}
      - severity: {field: level}
`)
	s := startServer(t, data, withConfigFile(t, cfgPath))
	ingest, _ := newClients(s.url)
	admin := weirv1connect.NewAdminServiceClient(http.DefaultClient, s.url)
	ctx := context.Background()

	resp, err := ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{
		textRecord(`{"level":"warn","msg":"json ok"}`),
		textRecord(`level=error msg="logfmt one"`),
		textRecord(`level=info msg="logfmt two"`),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.GetAccepted() != 3 || resp.Msg.GetDeadLettered() != 2 {
		t.Fatalf("push: %+v", resp.Msg)
	}
	waitCount(t, s.url, `SELECT count(*) FROM _dead_letter`, 2)
	res := mustSQL(t, s.url, `SELECT body, attributes['weir.dead_letter.stream'] AS stream, attributes['weir.dead_letter.stage'] AS stage,
		attributes['weir.dead_letter.error'] AS error FROM _dead_letter ORDER BY body`)
	if len(res.Rows) != 2 || res.Rows[0]["stream"] != "app" || res.Rows[0]["stage"] != "processors[0].parse" ||
		res.Rows[0]["body"] != `level=error msg="logfmt one"` || !strings.Contains(res.Rows[0]["error"].(string), "expected '{'") {
		t.Fatalf("dead letters: %v", res.Rows)
	}

	// A broken file is refused and changes nothing.
	writeConfig(t, filepath.Dir(cfgPath), "streams:\n  app:\n    processors:\n      - parse: {format: yaml}\n")
	_, err = admin.ReloadConfig(ctx, connect.NewRequest(&weirv1.ReloadConfigRequest{}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "weir.yaml") ||
		!strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "streams.app.processors[0].parse.format") {
		t.Fatalf("bad reload: %v", err)
	}
	// Fix the configuration: logfmt as well as JSON, via auto-detection.
	writeConfig(t, filepath.Dir(cfgPath), `
streams:
  app:
    processors:
      - parse: {format: auto}
      - severity: {field: level}
`)
	if _, err := runWeir(t, "reload", "--server", s.url); err != nil {
		t.Fatal(err)
	}
	out, err := runWeir(t, "replay-dead-letter", "--server", s.url)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "read 2 dead letters: 2 replayed, 0 failed again") {
		t.Fatalf("replay: %s", out)
	}
	waitCount(t, s.url, `SELECT count(*) FROM app`, 3)
	res = mustSQL(t, s.url, `SELECT attributes['msg'] AS msg, severity_text FROM app ORDER BY msg`)
	want := []string{"json ok/WARN", "logfmt one/ERROR", "logfmt two/INFO"}
	for i, r := range res.Rows {
		if got := r["msg"].(string) + "/" + r["severity_text"].(string); got != want[i] {
			t.Errorf("row %d: %s, want %s", i, got, want[i])
		}
	}
	// Replaying again writes nothing.
	rr, err := admin.ReplayDeadLetter(ctx, connect.NewRequest(&weirv1.ReplayDeadLetterRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if rr.Msg.GetReplayed() != 0 || rr.Msg.GetRead() != 2 {
		t.Fatalf("second replay: %+v", rr.Msg)
	}
	// A crash after pushing the replayed records but before saving the
	// replay state: the state is lost, the dead letters are sent again,
	// and the buffer recognises them as retries of the replay producer.
	if err := os.Remove(filepath.Join(data, "dead_letter_replay.json")); err != nil {
		t.Fatal(err)
	}
	rr, err = admin.ReplayDeadLetter(ctx, connect.NewRequest(&weirv1.ReplayDeadLetterRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if rr.Msg.GetReplayed() != 2 {
		t.Fatalf("replay without state: %+v", rr.Msg)
	}
	// A marker pushed after the replay to the same partition: once it is
	// visible, so is anything the replay wrote.
	if _, err := ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{
		textRecord("level=error msg=after-replay"),
	}})); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s.url, `SELECT count(*) FROM app WHERE attributes['msg'] = 'after-replay'`, 1)
	if n := sqlInt(t, s.url, `SELECT count(*) FROM app WHERE attributes['msg'] <> 'after-replay'`); n != 3 {
		t.Fatalf("%d records after replaying without state, want the 3 of before", n)
	}

	// SIGHUP reloads too: drop info records from now on.
	writeConfig(t, filepath.Dir(cfgPath), `
streams:
  app:
    processors:
      - parse: {format: auto}
      - severity: {field: level}
      - drop: 'severity < WARN'
`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Each round pushes an info probe and an error marker: once the marker
	// is visible and its probe is not, the new rules are running.
	deadline := time.Now().Add(10 * time.Second)
	for round := 0; ; round++ {
		probe, marker := fmt.Sprintf("probe%d", round), fmt.Sprintf("marker%d", round)
		_, err := ingest.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{
			textRecord("level=info msg=" + probe), textRecord("level=error msg=" + marker),
		}}))
		if err != nil {
			t.Fatal(err)
		}
		waitCount(t, s.url, fmt.Sprintf(`SELECT count(*) FROM app WHERE attributes['msg'] = '%s'`, marker), 1)
		res := mustSQL(t, s.url, fmt.Sprintf(`SELECT count(*) AS n FROM app WHERE attributes['msg'] = '%s'`, probe))
		if res.Rows[0]["n"] == json.Number("0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the configuration")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// After a restart the replay state is kept: nothing is replayed twice.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, withConfigFile(t, cfgPath))
	out, err = runWeir(t, "replay-dead-letter", "--server", s.url)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "0 replayed") {
		t.Fatalf("replay after restart: %s", out)
	}
	if n := mustSQL(t, s.url, `SELECT count(*) AS n FROM app WHERE attributes['msg'] LIKE '%one' OR attributes['msg'] LIKE '%two'`).Rows[0]["n"]; n != json.Number("2") {
		t.Fatalf("replayed records %v times after restart, want 2", n)
	}
}

// TestLoghubExamplesEndToEnd starts the server with the shipped Loghub
// configuration, pushes the 16 sample files with `weir push` and checks
// through SQL that every line was parsed (no dead letters), that levels
// and components match the ground truth, that the HDFS warnings group
// into the ground truth's one pattern, and that pattern ids survive a
// restart.
func TestLoghubExamplesEndToEnd(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, withConfigFile(t, filepath.Join("..", "..", "examples", "loghub.yaml")))
	files, err := filepath.Glob(filepath.Join(loghubDir, "*_2k.log"))
	if err != nil || len(files) != 16 {
		t.Fatalf("want the 16 Loghub samples in %s, found %d (%v)", loghubDir, len(files), err)
	}
	want := map[string]int64{}
	var streams []string
	for _, f := range files {
		stream := strings.ToLower(strings.TrimSuffix(filepath.Base(f), "_2k.log"))
		streams = append(streams, stream)
		want[stream] = countLines(t, f)
		if out, err := runWeir(t, "push", "--server", s.url, "--stream", stream, "--batch", "500", "--guess-severity", f); err != nil {
			t.Fatalf("push %s: %v: %s", f, err, out)
		}
	}
	var total int64
	for _, n := range want {
		total += n
	}
	// The samples' timestamps spread over 2,157 hours of 796 dates of the
	// streams (HPC's over years, in no time order). Those hours are long
	// past, so the lake writes one day file per stream and date rather
	// than a file per hour (sink.Config.DayFilesAfter); bench/RESULTS.md
	// has the time to visible.
	waitCountFor(t, s.url, "SELECT count(*) FROM logs", total, 5*time.Minute)
	equalCounts(t, "count by stream", countBy(t, s.url, "SELECT stream, count(*) FROM logs GROUP BY 1"), want)
	// Every record's date and hour are those of its timestamp, whether
	// its file is an hour's or a day's; HDFS's and BGL's hours agree with
	// the ground truth's timestamps.
	if n := sqlInt(t, s.url, `SELECT count(*) FROM logs WHERE hour <> date_part('hour', timezone('UTC', timestamp)) OR date <> timezone('UTC', timestamp)::DATE`); n != 0 {
		t.Errorf("%d records whose date or hour is not their timestamp's", n)
	}
	const byHour = `SELECT strftime(date, '%Y-%m-%d') || ' ' || lpad(hour::VARCHAR, 2, '0'), count(*) FROM `
	equalCounts(t, "HDFS records per hour", countBy(t, s.url, byHour+"hdfs GROUP BY 1"), loghubHours(t, "HDFS", func(r map[string]string) time.Time {
		ts, err := time.Parse("060102 150405", r["Date"]+" "+r["Time"])
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}))
	equalCounts(t, "BGL records per hour", countBy(t, s.url, byHour+"bgl GROUP BY 1"), loghubHours(t, "BGL", func(r map[string]string) time.Time {
		ts, err := time.Parse("2006-01-02-15.04.05.000000", r["Time"])
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}))
	if res := mustSQL(t, s.url, "SELECT count(*) AS n FROM _dead_letter"); res.Rows[0]["n"] != json.Number("0") {
		t.Errorf("dead letters: %v", mustSQL(t, s.url, "SELECT * FROM _dead_letter LIMIT 3").Rows)
	}
	for _, c := range []struct{ system, column, sql string }{
		{"HDFS", "Level", "SELECT severity_text, count(*) FROM hdfs GROUP BY 1"},
		{"Zookeeper", "Level", "SELECT attributes['level'], count(*) FROM zookeeper GROUP BY 1"},
		{"BGL", "Component", "SELECT attributes['component'], count(*) FROM bgl GROUP BY 1"},
		{"Spark", "Component", "SELECT attributes['component'], count(*) FROM spark GROUP BY 1"},
	} {
		equalCounts(t, c.system+" "+c.column, countBy(t, s.url, c.sql),
			csvColumnCounts(t, filepath.Join(loghubDir, c.system+"_2k.log_structured.csv"), c.column))
	}
	// Timestamps come from the lines: HDFS spans 2008-11-09..11.
	res := mustSQL(t, s.url, "SELECT min(timestamp)::VARCHAR AS lo, max(timestamp)::VARCHAR AS hi FROM hdfs")
	if lo, hi := res.Rows[0]["lo"], res.Rows[0]["hi"]; !strings.HasPrefix(lo.(string), "2008-11-09") || !strings.HasPrefix(hi.(string), "2008-11-1") {
		t.Errorf("HDFS timestamps %v .. %v", lo, hi)
	}
	// The top HDFS warning pattern: the ground truth has one event (80 lines).
	patterns := `SELECT attributes['pattern.id'] AS id, any_value(attributes['pattern.template']) AS template, count(*) AS n
		FROM hdfs WHERE severity_number >= 13 GROUP BY 1 ORDER BY n DESC`
	res = mustSQL(t, s.url, patterns)
	if len(res.Rows) != 1 || res.Rows[0]["n"] != json.Number("80") || !strings.Contains(res.Rows[0]["template"].(string), "<*>") {
		t.Fatalf("HDFS warning patterns: %v", res.Rows)
	}
	id := res.Rows[0]["id"].(string)

	// What a new user sees in the browser, on the same data (it pushes a
	// few records of its own to watch them in live tail).
	slices.Sort(streams)
	t.Run("browser", func(t *testing.T) { checkUI(t, s, streams, total) })

	// After a restart the same lines get the same pattern ids. Stopping
	// publishes every file: one day file per stream and date of the
	// samples (each stream has one partition). The browser test pushed
	// three more lines of two of those dates (HDFS's and Zookeeper's)
	// more than a minute after the samples, when their day files may
	// have been published by age already: each such line opens another
	// day file of its date (compaction merges them later).
	pastDays := sqlInt(t, s.url, "SELECT count(*) FROM (SELECT DISTINCT stream, date FROM logs WHERE date < current_date - 1)")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	var days int64
	var hours []string
	for _, p := range lakeFiles(t, data) {
		if filepath.Base(filepath.Dir(p)) == "hour=24" {
			days++
		} else {
			hours = append(hours, p)
		}
	}
	if days < pastDays || days > pastDays+3 || len(hours) > 0 {
		t.Errorf("%d day files for %d streams × dates of the samples, and %d other files (%v); want one day file each, up to 3 more for the browser test's lines, and no others", days, pastDays, len(hours), hours)
	}
	s = startServer(t, data, withConfigFile(t, filepath.Join("..", "..", "examples", "loghub.yaml")))
	if out, err := runWeir(t, "push", "--server", s.url, "--stream", "hdfs", "--guess-severity", filepath.Join(loghubDir, "HDFS_2k.log")); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	waitCount(t, s.url, "SELECT count(*) FROM hdfs WHERE body NOT LIKE '%ui tail%'", 2*want["hdfs"])
	if n := sqlInt(t, s.url, fmt.Sprintf("SELECT count(*) FROM hdfs WHERE attributes['pattern.id'] = '%s'", id)); n != 160 {
		t.Errorf("after restart, %d records of the HDFS warning pattern %s, want 160", n, id)
	}
}

// TestPromotedColumns pushes parsed records until their frequent
// attributes become typed columns, then queries old and new files
// together: the typed column where files have it, the attributes map
// everywhere, and a value of the wrong type NULL in its column but kept
// in the map.
func TestPromotedColumns(t *testing.T) {
	cfgPath := writeConfig(t, t.TempDir(), "streams:\n  web:\n    processors:\n      - parse: {format: logfmt}\n")
	s := startServer(t, "", func(c *config) {
		withConfigFile(t, cfgPath)(c)
		c.Transform.MaxColumns = 16
	})
	ingest, _ := newClients(s.url)
	push := func(from, n int, status func(int) string) {
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord(fmt.Sprintf("status=%s bytes=%d path=/p%d", status(from+i), (from+i)*10, (from+i)%7))
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "web", Records: recs})); err != nil {
			t.Fatal(err)
		}
	}
	ok := func(int) string { return "200" }
	push(0, 1000, ok) // the decision's sample
	waitCount(t, s.url, "SELECT count(*) FROM web", 1000)
	push(1000, 500, ok)
	push(1500, 1, func(int) string { return "teapot" })
	waitCount(t, s.url, "SELECT count(*) FROM web", 1501)

	res := mustSQL(t, s.url, "SELECT column_name, column_type FROM (DESCRIBE web) WHERE column_name LIKE 'attr_%' ORDER BY 1")
	got := fmt.Sprint(res.Rows)
	for _, want := range []string{"attr_bytes BIGINT", "attr_path VARCHAR", "attr_status BIGINT"} {
		name, typ, _ := strings.Cut(want, " ")
		if !strings.Contains(got, "column_name:"+name+" column_type:"+typ) {
			t.Errorf("web has no column %s: %s", want, got)
		}
	}
	// The first 1,000 are in batches written before the columns existed.
	if n := sqlInt(t, s.url, "SELECT count(*) FROM web WHERE attr_status = 200"); n != 500 {
		t.Errorf("%d rows with attr_status = 200, want 500", n)
	}
	if n := sqlInt(t, s.url, "SELECT count(*) FROM web WHERE attributes['status'] = '200'"); n != 1500 {
		t.Errorf("%d rows with attributes['status'] = '200', want 1500", n)
	}
	if n := sqlInt(t, s.url, "SELECT count(*) FROM web WHERE attr_status IS NULL AND attributes['status'] = 'teapot'"); n != 1 {
		t.Errorf("the conflicting value: %d rows", n)
	}
	if n := sqlInt(t, s.url, "SELECT sum(attr_bytes) FROM web"); n != 10*(1000+1500)*(1500-1000+1)/2 {
		t.Errorf("sum(attr_bytes) = %d", n)
	}
	// Streams with and without the columns read together.
	if err := pushErr(t, s.url, "plain", textRecord("no columns here")); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM logs WHERE stream = 'plain' AND attr_status IS NULL", 1)
}

// loghubHours counts the records of a Loghub sample's ground truth
// (<system>_2k.log_structured.csv) by the UTC hour that at gives each
// row, as "YYYY-MM-DD HH".
func loghubHours(t *testing.T, system string, at func(row map[string]string) time.Time) map[string]int64 {
	t.Helper()
	rows := readCSV(t, filepath.Join(loghubDir, system+"_2k.log_structured.csv"))
	out := map[string]int64{}
	for _, r := range rows[1:] {
		row := map[string]string{}
		for i, name := range rows[0] {
			row[name] = r[i]
		}
		out[at(row).UTC().Format("2006-01-02 15")]++
	}
	return out
}

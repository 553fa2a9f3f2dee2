package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirlabs/weir/internal/auth"
)

// needCurl returns the path of curl, skipping the test without it (and
// failing it in CI, where every client must be there).
func needCurl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("WEIR_CI") != "" {
			t.Fatal("curl is not installed; CI needs it for the protocol tests")
		}
		t.Skip("curl is not installed")
	}
	return p
}

// curl runs curl with args and body on stdin, and returns the status
// and the answer.
func curl(t *testing.T, body string, args ...string) (int, string) {
	t.Helper()
	args = append([]string{"-sS", "-o", "-", "-w", "\n%{http_code}", "--data-binary", "@-"}, args...)
	cmd := exec.Command(needCurl(t), args...)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, out)
	}
	text := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(text, '\n')
	var status int
	fmt.Sscan(text[i+1:], &status)
	return status, strings.TrimSpace(text[:max(i, 0)])
}

// Loki's push protobuf, written as Loki's clients write it.
func lokiString(b []byte, num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func lokiMessage(b []byte, num protowire.Number, m []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), m)
}

type lokiEntry struct {
	at   time.Time
	line string
	meta [][2]string
}

// lokiStream encodes a StreamAdapter.
func lokiStream(labels string, entries ...lokiEntry) []byte {
	s := lokiString(nil, 1, labels)
	for _, e := range entries {
		var ts, m []byte
		ts = protowire.AppendVarint(protowire.AppendTag(ts, 1, protowire.VarintType), uint64(e.at.Unix()))
		ts = protowire.AppendVarint(protowire.AppendTag(ts, 2, protowire.VarintType), uint64(e.at.Nanosecond()))
		m = lokiMessage(m, 1, ts)
		m = lokiString(m, 2, e.line)
		for _, kv := range e.meta {
			m = lokiMessage(m, 3, lokiString(lokiString(nil, 1, kv[0]), 2, kv[1]))
		}
		s = lokiMessage(s, 2, m)
	}
	return protowire.AppendVarint(protowire.AppendTag(s, 3, protowire.VarintType), 42)
}

func postRaw(t *testing.T, url, contentType string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header
}

// TestLokiPush pushes with a Loki protobuf client (snappy) and with
// curl's JSON, and reads every entry back once, with its labels,
// metadata and severity; bad pushes get Loki's plain-text errors, and an
// entry with unreadable labels goes to the dead-letter stream while its
// request's other entries are stored.
func TestLokiPush(t *testing.T) {
	// Files are published within a second, so a COMMITTED push is
	// acknowledged well within the push timeout.
	s := startServer(t, "", func(c *config) { c.Sink.MaxFileAge = time.Second })
	now := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	var req []byte
	req = lokiMessage(req, 1, lokiStream(`{job="checkout", stream="shop", env="prod"}`,
		lokiEntry{now, "order placed", [][2]string{{"level", "info"}, {"order_id", "o-1"}}},
		lokiEntry{now.Add(time.Millisecond), "payment declined", [][2]string{{"level", "error"}, {"order_id", "o-2"}}}))
	req = lokiMessage(req, 1, lokiStream(`{job="checkout", stream="shop", env="prod", pod="p\"1"}`,
		lokiEntry{now.Add(2 * time.Millisecond), "stock low", [][2]string{{"detected_level", "warn"}}}))
	status, text, _ := postRaw(t, s.url+"/loki/api/v1/push", "application/x-protobuf", snappy.Encode(nil, req))
	if status != http.StatusNoContent {
		t.Fatalf("protobuf push: %d %s", status, text)
	}
	jsonPush := fmt.Sprintf(`{"streams": [{"stream": {"service_name": "shop", "region": "eu"},
		"values": [["%d", "shipped", {"level": "info", "carrier": "dhl"}], ["%d", "lost parcel", {"level": "fatal"}]]}]}`,
		now.Add(3*time.Millisecond).UnixNano(), now.Add(4*time.Millisecond).UnixNano())
	status, text = curl(t, jsonPush, "-H", "Content-Type: application/json", "-H", "Weir-Ack-Level: committed", s.url+"/loki/api/v1/push")
	if status != http.StatusNoContent {
		t.Fatalf("JSON push with curl: %d %s", status, text)
	}
	waitCount(t, s.url, "SELECT count(*) FROM shop", 5)
	res := mustSQL(t, s.url, `SELECT body, severity_text, severity_number, service_name, attributes['order_id'] AS order_id,
		attributes['carrier'] AS carrier, resource['env'] AS env, resource['pod'] AS pod, resource['region'] AS region,
		epoch_ns(timestamp) AS ns FROM shop ORDER BY timestamp`)
	want := []string{
		fmt.Sprintf("order placed INFO 9 checkout o-1 <nil> prod <nil> <nil> %d", now.UnixNano()),
		fmt.Sprintf("payment declined ERROR 17 checkout o-2 <nil> prod <nil> <nil> %d", now.Add(time.Millisecond).UnixNano()),
		fmt.Sprintf("stock low WARN 13 checkout <nil> <nil> prod p\"1 <nil> %d", now.Add(2*time.Millisecond).UnixNano()),
		fmt.Sprintf("shipped INFO 9 shop <nil> dhl <nil> <nil> eu %d", now.Add(3*time.Millisecond).UnixNano()),
		fmt.Sprintf("lost parcel FATAL 21 shop <nil> <nil> <nil> <nil> eu %d", now.Add(4*time.Millisecond).UnixNano()),
	}
	if len(res.Rows) != len(want) {
		t.Fatalf("rows %v", res.Rows)
	}
	for i, r := range res.Rows {
		got := fmt.Sprint(r["body"], " ", strings.ToUpper(fmt.Sprint(r["severity_text"])), " ", r["severity_number"], " ", r["service_name"], " ",
			r["order_id"], " ", r["carrier"], " ", r["env"], " ", r["pod"], " ", r["region"], " ", r["ns"])
		if got != want[i] {
			t.Errorf("row %d: %s\n want %s", i, got, want[i])
		}
	}

	// Bad input: Loki's plain-text errors, nothing stored.
	for _, c := range []struct {
		name, ct string
		body     []byte
		status   int
	}{
		{"not snappy", "application/x-protobuf", []byte("plain text"), http.StatusBadRequest},
		{"not protobuf", "application/x-protobuf", snappy.Encode(nil, []byte{0x0a, 0x09, 0x01}), http.StatusBadRequest},
		{"bad JSON", "application/json", []byte(`{"streams": [{"stream": {"a": 1}}]}`), http.StatusBadRequest},
		{"form", "application/x-www-form-urlencoded", []byte("a=b"), http.StatusUnsupportedMediaType},
	} {
		status, text, hdr := postRaw(t, s.url+"/loki/api/v1/push", c.ct, c.body)
		if status != c.status || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || text == "" {
			t.Errorf("%s: %d %q (%s)", c.name, status, text, hdr.Get("Content-Type"))
		}
	}
	// Unreadable labels: that stream's entry is dead-lettered, the other
	// stream's entry stored, and the answer says so.
	req = lokiMessage(nil, 1, lokiStream(`{job="checkout", stream="shop"}`, lokiEntry{now.Add(5 * time.Millisecond), "refund issued", nil}))
	req = lokiMessage(req, 1, lokiStream(`{job=checkout}`, lokiEntry{now, "unlabelled", nil}))
	status, text, _ = postRaw(t, s.url+"/loki/api/v1/push", "application/x-protobuf", snappy.Encode(nil, req))
	if status != http.StatusBadRequest || !strings.Contains(text, "1 of 2 entries went to the dead-letter stream") {
		t.Errorf("bad labels: %d %s", status, text)
	}
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE body = 'unlabelled' AND attributes['loki.labels'] = '{job=checkout}'", 1)
	waitCount(t, s.url, "SELECT count(*) FROM shop", 6)
	waitCount(t, s.url, "SELECT count(*) FROM shop WHERE body = 'refund issued'", 1)
}

// TestJSONLinesCurl sends JSON lines with curl, as to VictoriaLogs and to
// weir's own endpoint, and reads every line back once; a line that is
// not JSON goes to the dead-letter stream with its text.
func TestJSONLinesCurl(t *testing.T) {
	s := startServer(t, "", nil)
	now := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	lines := fmt.Sprintf(`{"ts": "%s", "message": "user login", "level": "info", "app": "Portal", "user": {"id": 7, "roles": ["a", "b"]}, "trace": "x"}
{"ts": "%s", "message": "disk at 91%%", "level": "warning", "app": "Portal", "host": "h1"}
not json {
{"ts": %d, "message": "cron ran", "app": "scheduler"}
`, now.Format(time.RFC3339Nano), now.Add(time.Millisecond).Format(time.RFC3339Nano), now.Add(2*time.Millisecond).UnixMilli())
	status, text := curl(t, lines, "-H", "Content-Type: application/stream+json",
		s.url+"/insert/jsonline?_stream_fields=app&_msg_field=message&_time_field=ts&ignore_fields=trace")
	if status != http.StatusOK || text != `{"accepted":3,"dead_lettered":1}` {
		t.Fatalf("VictoriaLogs-style push: %d %s", status, text)
	}
	waitCount(t, s.url, "SELECT count(*) FROM portal", 2)
	waitCount(t, s.url, "SELECT count(*) FROM scheduler", 1)
	res := mustSQL(t, s.url, `SELECT body, severity_text, severity_number, resource['app'] AS app, attributes['user.id'] AS uid,
		attributes['user.roles'] AS roles, attributes['trace'] AS trace, epoch_ms(timestamp) AS ms FROM portal ORDER BY timestamp`)
	got := fmt.Sprint(res.Rows)
	want := fmt.Sprintf("[map[app:Portal body:user login ms:%d roles:[\"a\",\"b\"] severity_number:9 severity_text:info trace:<nil> uid:7] "+
		"map[app:Portal body:disk at 91%% ms:%d roles:<nil> severity_number:13 severity_text:warning trace:<nil> uid:<nil>]]",
		now.UnixMilli(), now.Add(time.Millisecond).UnixMilli())
	if got != want {
		t.Errorf("portal:\n got %s\nwant %s", got, want)
	}
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE body = 'not json {'", 1)

	status, text = curl(t, `{"msg": "batch done", "severity": "ERROR", "job": {"id": 12}}`+"\n"+`{"_msg": "batch started", "time": "2026-01-01T00:00:00Z"}`+"\n[1, 2]\n",
		s.url+"/v1/ingest/jsonl?stream=jobs")
	if status != http.StatusOK || text != `{"accepted":2,"dead_lettered":1}` {
		t.Fatalf("native push: %d %s", status, text)
	}
	waitCount(t, s.url, "SELECT count(*) FROM jobs WHERE body = 'batch done' AND severity_number = 17 AND attributes['job.id'] = '12'", 1)
	waitCount(t, s.url, "SELECT count(*) FROM jobs WHERE body = 'batch started' AND timestamp = TIMESTAMP '2026-01-01 00:00:00'", 1)
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE body = '[1, 2]'", 1)

	// Bad input: the request's own error shape, nothing stored.
	status, text = curl(t, `{"msg": "x"}`, s.url+"/v1/ingest/jsonl?stream=Not-Valid")
	var e struct{ Code, Error string }
	if status != http.StatusBadRequest || json.Unmarshal([]byte(text), &e) != nil || e.Code != "invalid_argument" || !strings.Contains(e.Error, "Not-Valid") {
		t.Errorf("bad stream: %d %s", status, text)
	}
	status, text = curl(t, "only garbage\n", "-H", "Content-Type: application/stream+json", s.url+"/insert/jsonline")
	if status != http.StatusBadRequest || !strings.Contains(text, "not a JSON object") {
		t.Errorf("all lines bad: %d %s", status, text)
	}
	waitCount(t, s.url, "SELECT count(*) FROM logs WHERE stream <> '_dead_letter'", 5)
}

// TestHECCurl sends Splunk HEC events and raw lines with curl and a
// Splunk token, against a server with API keys, and reads them back in
// the key's tenant; bad events get HEC's answers.
func TestHECCurl(t *testing.T) {
	key := newTenantKey(t, "splunk-forwarder", "acme", auth.RoleIngest, auth.RoleQuery)
	s := startServer(t, "", func(c *config) { c.Auth.Keys = []auth.Key{key.key} })
	splunk := "Authorization: Splunk " + key.token
	now := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	sec := func(d time.Duration) string {
		return fmt.Sprintf("%d.%03d", now.Add(d).Unix(), now.Add(d).Nanosecond()/1e6)
	}
	events := fmt.Sprintf(`{"time": %s, "host": "web-1", "source": "/var/log/nginx/access.log", "sourcetype": "nginx", "index": "web", "event": "GET /cart 200", "fields": {"severity": "info", "dc": "fra"}}
{"time": %s, "host": "web-1", "index": "web", "event": {"msg": "upstream timeout", "level": "error", "ms": 30000}}
{"time": %s, "event": "no index given", "fields": {"level": "debug"}}`, sec(0), sec(time.Millisecond), sec(2*time.Millisecond))
	status, text := curl(t, events, "-H", splunk, "-H", "X-Splunk-Request-Channel: 0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba", s.url+"/services/collector/event")
	if status != http.StatusOK || text != `{"text":"Success","code":0}` {
		t.Fatalf("events: %d %s", status, text)
	}
	status, text = curl(t, "first raw line\nERROR second raw line\n", "-H", splunk, s.url+"/services/collector/raw?index=web&sourcetype=app&source=batch&host=job-1")
	if status != http.StatusOK || text != `{"text":"Success","code":0}` {
		t.Fatalf("raw: %d %s", status, text)
	}
	countAs(t, s.url, key.token, "SELECT count(*) FROM web", 4)
	countAs(t, s.url, key.token, "SELECT count(*) FROM hec WHERE body = 'no index given' AND severity_number = 5", 1)
	_, res := sqlAs(t, s.url, key.token, `SELECT body, severity_text, severity_number, resource['host.name'] AS host, resource['com.splunk.sourcetype'] AS st,
		resource['com.splunk.source'] AS src, attributes['dc'] AS dc, CAST(epoch_ms(timestamp) AS VARCHAR) AS ms FROM web ORDER BY body`)
	got := fmt.Sprint(res.Rows)
	for _, w := range []string{
		fmt.Sprintf("map[body:GET /cart 200 dc:fra host:web-1 ms:%d severity_number:9 severity_text:info src:/var/log/nginx/access.log st:nginx]", now.UnixMilli()),
		fmt.Sprintf("map[body:{\"msg\":\"upstream timeout\",\"level\":\"error\",\"ms\":30000} dc:<nil> host:web-1 ms:%d severity_number:17 severity_text:error src:<nil> st:<nil>]", now.Add(time.Millisecond).UnixMilli()),
		"body:first raw line dc:<nil> host:job-1",
		"src:batch st:app",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("web rows lack %s:\n%s", w, got)
		}
	}

	// HEC's answers to bad input; the good events of a request are
	// stored, the bad one dead-lettered.
	status, text = curl(t, `{"event": "kept", "index": "web"}{"event": ""}`, "-H", splunk, s.url+"/services/collector/event")
	if status != http.StatusBadRequest || !strings.HasPrefix(text, `{"text":"Event field cannot be blank","code":13,"invalid-event-number":1`) {
		t.Errorf("blank event: %d %s", status, text)
	}
	countAs(t, s.url, key.token, "SELECT count(*) FROM web WHERE body = 'kept'", 1)
	countAs(t, s.url, key.token, `SELECT count(*) FROM _dead_letter WHERE body = '{"event": ""}'`, 1)
	status, text = curl(t, `{"event": "x"} {oops`, "-H", splunk, s.url+"/services/collector/event")
	if status != http.StatusBadRequest || !strings.HasPrefix(text, `{"text":"Invalid data format","code":6,"invalid-event-number":1`) {
		t.Errorf("broken JSON: %d %s", status, text)
	}
	status, text = curl(t, "", "-H", splunk, s.url+"/services/collector/event")
	if status != http.StatusBadRequest || text != `{"text":"No data","code":5}` {
		t.Errorf("no data: %d %s", status, text)
	}
	status, _ = curl(t, `{"event": "x"}`, s.url+"/services/collector/event")
	if status != http.StatusUnauthorized {
		t.Errorf("without a token: %d", status)
	}
	cmd := exec.Command(needCurl(t), "-sS", "-H", splunk, s.url+"/services/collector/health")
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != `{"text":"HEC is healthy","code":17}` {
		t.Errorf("health: %s %v", out, err)
	}
	countAs(t, s.url, key.token, "SELECT count(*) FROM logs WHERE stream <> '_dead_letter'", 7)
}

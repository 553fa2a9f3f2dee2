package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/klauspost/compress/snappy"

	"github.com/weirlabs/weir/ingest/loki"
	"github.com/weirlabs/weir/internal/auth"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// budgetLines returns n JSON lines of about 100 bytes, numbered from
// first, for the stream budget.
func budgetLines(first, n int) []byte {
	var b bytes.Buffer
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, `{"_msg":"line %07d %s"}`+"\n", i, strings.Repeat("x", 75))
	}
	return b.Bytes()
}

// stalledPush sends the head of a jsonl push with all of body announced
// and only its first sent bytes written; the returned function sends
// the rest and returns the answer's status.
func stalledPush(t *testing.T, url string, body []byte, sent int) func() int {
	t.Helper()
	return stalledPushAs(t, url, "", body, sent)
}

// stalledPushAs is stalledPush with a key (none if token is "").
func stalledPushAs(t *testing.T, url, token string, body []byte, sent int) func() int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := ""
	if token != "" {
		key = "Authorization: Bearer " + token + "\r\n"
	}
	head := fmt.Sprintf("POST /v1/ingest/jsonl?stream=budget HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %d\r\n\r\n", key, len(body))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body[:sent]); err != nil {
		t.Fatal(err)
	}
	return func() int {
		t.Helper()
		if _, err := conn.Write(body[sent:]); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
}

// waitMetric polls a /metrics series until ok accepts its value.
func waitMetric(t *testing.T, url, series string, ok func(float64) bool) float64 {
	t.Helper()
	return waitMetricAs(t, url, "", series, ok)
}

// waitMetricAs is waitMetric with a key (none if token is "").
func waitMetricAs(t *testing.T, url, token, series string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := metricValueAs(t, url, token, series)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed at %v", series, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSecurityInflightBudget: the request bytes every ingest endpoint
// holds are bounded together by ingest.max_inflight_bytes. Bodies sent
// slowly hold what they have sent; while they fill the budget, a large
// push is refused at once (429 with Retry-After over HTTP,
// RESOURCE_EXHAUSTED over Connect, a gzip message too), a small one is
// still taken, and the stalled pushes, once their clients send the
// rest, are stored whole. A compressed message that inflates past
// max_message_bytes is refused without inflating the rest. The budget
// ends empty.
func TestSecurityInflightBudget(t *testing.T) {
	t.Parallel()
	const limit = 2 << 20
	s := startServer(t, "", func(c *config) {
		c.Ingest.MaxMessageBytes = 1 << 20
		c.Ingest.MaxInflightBytes = limit
		c.Ingest.InflightStallTimeout = 5 * time.Minute // the stalls here are on purpose
	})
	// Two pushes of ~880 KB each stall after 800,000 bytes: 13 steps of
	// 64 KiB each, 1.7 MB of the 2 MiB, are held.
	a, b := budgetLines(0, 8800), budgetLines(10000, 8800)
	finishA := stalledPush(t, s.url, a, 800_000)
	finishB := stalledPush(t, s.url, b, 800_000)
	const held = 2 * 13 << 16
	// settle waits until the budget holds only the stalled pushes, as
	// a refused request's bytes are returned just after its answer: a
	// refusal then leaves less than the 256 KiB of body that net/http
	// drains, so the connection stays open for the answer.
	settle := func() {
		t.Helper()
		waitMetric(t, s.url, "weir_ingest_inflight_bytes", func(v float64) bool { return v == held })
	}
	settle()
	if got := metricValue(t, s.url, "weir_ingest_inflight_limit_bytes"); got != limit {
		t.Errorf("inflight limit metric %v, want %d", got, limit)
	}

	// A 600 KB push does not fit: refused, to be retried.
	settle()
	resp, err := http.Post(s.url+"/v1/ingest/jsonl?stream=budget", "application/x-ndjson", bytes.NewReader(budgetLines(20000, 6000)))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(text), "max_inflight_bytes") {
		t.Errorf("large push while the budget is held: %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), text)
	}
	// The same through every shipper protocol, as sent and as
	// decompressed (the budget refuses before anything is decoded).
	large := bytes.Repeat([]byte("a"), 600_000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(large)
	zw.Close()
	for _, c := range []struct{ path, ctype, enc string }{
		{"/v1/logs", "application/x-protobuf", ""},
		{"/v1/logs", "application/json", "gzip"},
		{loki.Path, "application/x-protobuf", ""},
		{loki.Path, "application/json", "gzip"},
		{loki.Path, "application/x-protobuf", "snappy"},
		{"/_bulk", "application/x-ndjson", ""},
		{"/_bulk", "application/x-ndjson", "gzip"},
		{"/services/collector/event", "application/json", ""},
		{"/services/collector/raw", "text/plain", "gzip"},
		{"/insert/jsonline", "application/stream+json", "gzip"},
	} {
		settle()
		body := large
		switch c.enc {
		case "gzip":
			body = gz.Bytes()
		case "snappy":
			body = snappy.Encode(nil, large)
		}
		req, _ := http.NewRequest(http.MethodPost, s.url+c.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", c.ctype)
		if c.enc == "gzip" {
			req.Header.Set("Content-Encoding", "gzip")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(text), "max_inflight_bytes") {
			t.Errorf("%s %s %s while the budget is held: %d, Retry-After %q: %.300s", c.path, c.ctype, c.enc, resp.StatusCode, resp.Header.Get("Retry-After"), text)
		}
	}
	// The same over Connect, plain and gzip. A refusal that leaves more
	// than 256 KiB of a body unread closes the connection, and the client
	// may see the reset rather than the answer.
	ing := weirv1connect.NewIngestServiceClient(http.DefaultClient, s.url)
	zing := weirv1connect.NewIngestServiceClient(http.DefaultClient, s.url, connect.WithSendGzip())
	// 4,200 records of ~125 bytes: over the room left, and what the
	// refusal leaves unread is under the 256 KiB net/http drains.
	var recs []*weirv1.LogRecord
	for i := range 4200 {
		recs = append(recs, textRecord(fmt.Sprintf("connect %06d %s", i, strings.Repeat("y", 80))))
	}
	for name, c := range map[string]weirv1connect.IngestServiceClient{"plain": ing, "gzip": zing} {
		settle()
		_, err := c.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "budget", Records: recs}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "max_inflight_bytes") {
			t.Errorf("%s Connect push while the budget is held: %v", name, err)
		}
	}
	// A zstd-compressed Arrow batch is charged as it is decompressed.
	schema := arrow.NewSchema([]arrow.Field{{Name: "body", Type: arrow.BinaryTypes.String}}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	bld.Field(0).(*array.StringBuilder).Append(string(large))
	rec := bld.NewRecordBatch()
	bld.Release()
	var ipcBody bytes.Buffer
	iw := ipc.NewWriter(&ipcBody, ipc.WithSchema(schema), ipc.WithZstd())
	if err := iw.Write(rec); err != nil {
		t.Fatal(err)
	}
	rec.Release()
	if err := iw.Close(); err != nil {
		t.Fatal(err)
	}
	settle()
	_, err = ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "budget", ArrowIpc: ipcBody.Bytes()}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "max_inflight_bytes") {
		t.Errorf("zstd Arrow push of %d bytes while the budget is held: %v", ipcBody.Len(), err)
	}
	// A small push fits beside the stalled ones.
	resp, err = http.Post(s.url+"/v1/ingest/jsonl?stream=budget", "application/x-ndjson", bytes.NewReader(budgetLines(30000, 20)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("small push while the budget is held: %d", resp.StatusCode)
	}
	if got := metricValue(t, s.url, "weir_ingest_inflight_refused_total"); got < 14 {
		t.Errorf("refused counter %v, want at least 14", got)
	}

	// The stalled pushes complete and are stored whole.
	if st := finishA(); st != http.StatusOK {
		t.Errorf("stalled push A: %d", st)
	}
	if st := finishB(); st != http.StatusOK {
		t.Errorf("stalled push B: %d", st)
	}
	waitCount(t, s.url, "SELECT count(*) FROM budget", 8800+8800+20)
	waitMetric(t, s.url, "weir_ingest_inflight_bytes", func(v float64) bool { return v == 0 })

	// A gzip message of 64 MiB of one byte (~64 KB compressed) is
	// refused once it passes 1 MiB, not inflated to its end.
	bomb := &weirv1.PushRequest{Stream: "budget", Records: []*weirv1.LogRecord{textRecord(strings.Repeat("z", 64<<20))}}
	start := time.Now()
	_, err = zing.Push(context.Background(), connect.NewRequest(bomb))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("gzip message inflating past max_message_bytes: %v", err)
	}
	t.Logf("gzip message of 64 MiB refused in %v", time.Since(start))
	waitMetric(t, s.url, "weir_ingest_inflight_bytes", func(v float64) bool { return v == 0 })
}

// shareServer starts a server with a 4 MiB in-flight budget, 1 MiB
// messages and a 5-minute push timeout, and keys for the tenants hog
// and fair (ingest and query) and for metrics; stall sets
// ingest.inflight_stall_timeout.
func shareServer(t *testing.T, stall time.Duration) (s *testServer, hog, fair, metrics tenantKey) {
	t.Helper()
	hog = newTenantKey(t, "hog", "hog", auth.RoleIngest, auth.RoleQuery)
	fair = newTenantKey(t, "fair", "fair", auth.RoleIngest, auth.RoleQuery)
	metrics = newTenantKey(t, "prometheus", "", auth.RoleMetrics)
	s = startServer(t, "", func(c *config) {
		c.Auth.Keys = []auth.Key{hog.key, fair.key, metrics.key}
		c.Ingest.MaxMessageBytes = 1 << 20
		c.Ingest.MaxInflightBytes = 4 << 20
		c.Ingest.PushTimeout = 5 * time.Minute
		c.Ingest.InflightStallTimeout = stall
		c.Server.ReadTimeout = 5 * time.Minute
	})
	return s, hog, fair, metrics
}

// TestSecurityInflightTenantShare: tenants share the in-flight budget
// when they contend for it. One tenant's slow pushes fill the budget;
// another tenant's push waits for room, and the room the first gives
// back goes to it, not to the first tenant's next push, which waits
// until its tenant holds less than its share. Every push is stored
// whole, each in its own tenant.
func TestSecurityInflightTenantShare(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	s, hog, fair, metrics := shareServer(t, 5*time.Minute) // the stalls here are on purpose
	metric := func(series string, ok func(float64) bool) {
		t.Helper()
		waitMetricAs(t, s.url, metrics.token, series, ok)
	}
	// Four pushes of 995,000 bytes stall after 990,000: 16 steps of
	// 64 KiB each, the whole budget, held by hog alone.
	const stalled, lines = 4, 9950
	var finish []func() int
	for i := range stalled {
		finish = append(finish, stalledPushAs(t, s.url, hog.token, budgetLines(i*lines, lines), 990_000))
	}
	metric("weir_ingest_inflight_bytes", func(v float64) bool { return v == 4*mib })

	const more = 7000 // lines of the pushes that wait: 700,000 bytes
	push := func(token string, first int) <-chan string {
		done := make(chan string, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/ingest/jsonl?stream=budget", bytes.NewReader(budgetLines(first, more)))
			resp, err := keyClient(token).Do(req)
			if err != nil {
				done <- err.Error()
				return
			}
			text, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- fmt.Sprintf("%d %s", resp.StatusCode, text)
		}()
		return done
	}
	fairDone := push(fair.token, 100_000)
	metric("weir_ingest_inflight_waiting", func(v float64) bool { return v == 1 })
	hogNext := push(hog.token, 200_000)
	metric("weir_ingest_inflight_waiting", func(v float64) bool { return v == 2 })

	// A stalled push ends and gives back its MiB: it goes to fair,
	// while hog, holding 3 MiB of its 2 MiB share, waits on.
	if st := finish[0](); st != http.StatusOK {
		t.Fatalf("stalled push 0: %d", st)
	}
	if got := <-fairDone; !strings.HasPrefix(got, "200 ") {
		t.Fatalf("fair's push: %s", got)
	}
	select {
	case got := <-hogNext:
		t.Fatalf("hog's next push was answered while hog held more than its share: %s", got)
	default:
	}
	if v := metricValueAs(t, s.url, metrics.token, "weir_ingest_inflight_waiting"); v != 1 {
		t.Errorf("waiting %v after fair's push, want hog's 1", v)
	}

	// Once hog holds less than its share, its next push is taken.
	for i, f := range finish[1:] {
		if st := f(); st != http.StatusOK {
			t.Errorf("stalled push %d: %d", i+1, st)
		}
	}
	if got := <-hogNext; !strings.HasPrefix(got, "200 ") {
		t.Errorf("hog's next push: %s", got)
	}
	countAs(t, s.url, hog.token, "SELECT count(*) FROM budget", stalled*lines+more)
	countAs(t, s.url, fair.token, "SELECT count(*) FROM budget", more)
	metric("weir_ingest_inflight_bytes", func(v float64) bool { return v == 0 })
}

// tricklePush sends a jsonl push with all of body announced and all but
// its last 5,000 bytes written, then one more byte every tick; once stop
// is closed it writes the rest. Its answer (status and text) comes on
// the returned channel.
func tricklePush(t *testing.T, url, token string, body []byte, tick time.Duration, stop <-chan struct{}) <-chan string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /v1/ingest/jsonl?stream=budget HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", token, len(body))
	sent := len(body) - 5000
	if _, err := conn.Write(append([]byte(head), body[:sent]...)); err != nil {
		t.Fatal(err)
	}
	answer := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answer <- err.Error()
			return
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer <- fmt.Sprintf("%d %s", resp.StatusCode, text)
	}()
	go func() {
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		for sent < len(body) {
			select {
			case <-stop:
				conn.Write(body[sent:]) // fails once the server has cut the push
				return
			case <-ticker.C:
				if _, err := conn.Write(body[sent : sent+1]); err != nil {
					return
				}
				sent++
			}
		}
	}()
	return answer
}

// TestSecurityInflightShareCut: pushes that keep a few bytes trickling
// in hold the budget while their tenant is alone, but once another
// tenant waits for room, a push of a tenant over its share holds it for
// ingest.inflight_stall_timeout at most: it is cut (429, to be retried)
// and the room goes to the waiting tenant. The pushes not cut (if any:
// each read armed while its tenant is over its share is cut when the
// time comes), and the waiting one, are stored whole.
func TestSecurityInflightShareCut(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	s, hog, fair, metrics := shareServer(t, 3*time.Second)
	// Four pushes of 995,000 bytes hold 16 steps of 64 KiB each once
	// their first 990,000 bytes are in: the whole budget.
	const stalled, lines = 4, 9950
	stop := make(chan struct{})
	var answers []<-chan string
	for i := range stalled {
		answers = append(answers, tricklePush(t, s.url, hog.token, budgetLines(i*lines, lines), 100*time.Millisecond, stop))
	}
	waitMetricAs(t, s.url, metrics.token, "weir_ingest_inflight_bytes", func(v float64) bool { return v == 4*mib })

	const more = 7000
	resp, err := keyClient(fair.token).Post(s.url+"/v1/ingest/jsonl?stream=budget", "application/x-ndjson", bytes.NewReader(budgetLines(100_000, more)))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fair's push: %d %s", resp.StatusCode, text)
	}
	close(stop)
	whole, cut := 0, 0
	for i, a := range answers {
		switch got := <-a; {
		case strings.HasPrefix(got, "200 "):
			whole++
		case strings.HasPrefix(got, "429 ") && strings.Contains(got, "more than its share"):
			cut++
		default:
			t.Errorf("hog's push %d: %s", i, got)
		}
	}
	if cut == 0 {
		t.Error("no push of hog's was cut while fair waited")
	}
	t.Logf("hog's pushes: %d cut, %d whole", cut, whole)
	if whole > 0 {
		countAs(t, s.url, hog.token, "SELECT count(*) FROM budget", int64(whole*lines))
	}
	countAs(t, s.url, fair.token, "SELECT count(*) FROM budget", more)
	waitMetricAs(t, s.url, metrics.token, "weir_ingest_inflight_bytes", func(v float64) bool { return v == 0 })
}

// TestSecurityInflightStall: a push that holds some of the in-flight
// budget and then sends nothing is cut after
// ingest.inflight_stall_timeout — 408 over HTTP, deadline_exceeded over
// Connect — and its bytes are returned, so a few slow clients cannot
// keep the budget from everyone else.
func TestSecurityInflightStall(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", func(c *config) { c.Ingest.InflightStallTimeout = 300 * time.Millisecond })
	for _, c := range []struct{ path, ctype, want string }{
		{"/v1/ingest/jsonl?stream=budget", "application/x-ndjson", "408 Request Timeout"},
		{"/weir.v1.IngestService/Push", "application/proto", "deadline_exceeded"},
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\nConnect-Protocol-Version: 1\r\nContent-Length: 900000\r\n\r\n", c.path, c.ctype)
		if _, err := io.WriteString(conn, head+strings.Repeat("s", 200_000)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if got := resp.Status + " " + string(text); !strings.Contains(got, c.want) || !strings.Contains(got, "stalled") {
			t.Errorf("%s stalled: %s", c.path, got)
		}
	}
	waitMetric(t, s.url, "weir_ingest_inflight_bytes", func(v float64) bool { return v == 0 })
}

// TestSecurityControlMessageBound: the services that take small
// requests (Tail, Subscribe, Admin) refuse a message over 1 MiB before
// holding it, and Query its own bound; a gzip message that inflates
// past the bound is refused without being inflated to its end.
func TestSecurityControlMessageBound(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", nil)
	// A Tail taken would stream until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := strings.Repeat("w", 2<<20)
	for _, gz := range []bool{false, true} {
		var opts []connect.ClientOption
		if gz {
			opts = append(opts, connect.WithSendGzip())
		}
		admin := weirv1connect.NewAdminServiceClient(http.DefaultClient, s.url, opts...)
		_, err := admin.Delete(ctx, connect.NewRequest(&weirv1.DeleteRequest{Stream: "app", Where: big}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("gzip %v: Delete with a 2 MiB predicate: %v", gz, err)
		}
		sub := weirv1connect.NewSubscribeServiceClient(http.DefaultClient, s.url, opts...)
		_, err = sub.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: big}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("gzip %v: Commit with a 2 MiB group: %v", gz, err)
		}
		tail := weirv1connect.NewTailServiceClient(http.DefaultClient, s.url, opts...)
		st, err := tail.Tail(ctx, connect.NewRequest(&weirv1.TailRequest{Contains: big}))
		if err == nil {
			for st.Receive() {
			}
			err = st.Err()
			st.Close()
		}
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("gzip %v: Tail with a 2 MiB filter: %v", gz, err)
		}
		q := weirv1connect.NewQueryServiceClient(http.DefaultClient, s.url, opts...)
		qs, err := q.Query(ctx, connect.NewRequest(&weirv1.QueryRequest{Sql: "SELECT 1 --" + strings.Repeat(" ", 64<<20)}))
		if err == nil {
			for qs.Receive() {
			}
			err = qs.Err()
			qs.Close()
		}
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("gzip %v: Query of 64 MiB: %v", gz, err)
		}
	}
}

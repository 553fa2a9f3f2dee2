package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeQuerier answers every query with one row (n), or fails.
type fakeQuerier struct {
	n       atomic.Int64
	fail    atomic.Bool
	queries atomic.Int64
}

func (q *fakeQuerier) Query(ctx context.Context, tenant, sql string, maxRows int) (*Result, error) {
	q.queries.Add(1)
	if q.fail.Load() {
		return nil, errors.New("no slot")
	}
	if strings.HasPrefix(sql, "EXPLAIN ") {
		return &Result{Columns: []string{"plan"}}, nil
	}
	return &Result{Columns: []string{"stream", "n"}, Rows: [][]any{{"hdfs", q.n.Load()}}}, nil
}

// recorder is an http.RoundTripper that keeps what is posted and answers
// with status (200 unless set).
type recorder struct {
	mu     sync.Mutex
	posts  map[string][]string // bodies by host
	status atomic.Int32
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	if r.posts == nil {
		r.posts = map[string][]string{}
	}
	r.posts[req.URL.Host] = append(r.posts[req.URL.Host], string(body))
	r.mu.Unlock()
	status := int(r.status.Load())
	if status == 0 {
		status = http.StatusOK
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

func (r *recorder) take(host string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.posts[host]
	delete(r.posts, host)
	return out
}

func testRules(t *testing.T, yml string) []Rule {
	t.Helper()
	rules, err := ParseRules([]byte(yml), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func newTestManager(t *testing.T, dir string, q Querier, rec *recorder) *Manager {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Alertmanager.URLs = []string{"http://am.test"}
	cfg.Webhooks = []WebhookConfig{{Name: "hook", URL: "http://hook.test/x", Body: `{"text": {{json .Annotations.summary}}, "status": {{json .Status}}}`}}
	cfg.ExternalURL = "http://weir.test"
	m, err := New(cfg, Deps{Querier: q, StateDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Client: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const spikeRule = `
rules:
  - name: spike
    sql: SELECT stream, count(*) AS n FROM logs WHERE $__timeFilter GROUP BY 1
    every: 10s
    for: 20s
    condition: {column: n, op: ">", value: 5}
    labels: {severity: page}
    annotations: {summary: "{{.n}} errors in {{.stream}}"}
`

// amAlerts decodes the Alertmanager posts.
func amAlerts(t *testing.T, posts []string) []amAlert {
	t.Helper()
	var out []amAlert
	for _, p := range posts {
		var as []amAlert
		if err := json.Unmarshal([]byte(p), &as); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, as...)
	}
	return out
}

// TestStateMachine drives a rule through pending, firing and resolved on
// a fake clock, checks what the Alertmanager and the webhook receive, and
// that a restart keeps a firing alert firing (same startsAt) and never
// sends a resolved one as new.
func TestStateMachine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		q := &fakeQuerier{}
		rec := &recorder{}
		m := newTestManager(t, dir, q, rec)
		ctx := context.Background()
		if err := m.SetRules(ctx, testRules(t, spikeRule)); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		state := func(m *Manager) string {
			r := m.Rules("default")[0]
			if len(r.Alerts) == 0 {
				return "none"
			}
			return string(r.Alerts[0].State)
		}
		synctest.Wait()
		if got := state(m); got != "none" {
			t.Fatalf("at start: %s", got)
		}
		q.n.Store(10)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := state(m); got != "pending" {
			t.Fatalf("after the spike: %s, want pending", got)
		}
		start := time.Now()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := state(m); got != "pending" {
			t.Fatalf("10 s into the spike: %s, want pending", got)
		}
		if p := rec.take("am.test"); len(p) != 0 {
			t.Fatalf("pending alert sent: %v", p)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := state(m); got != "firing" {
			t.Fatalf("20 s into the spike: %s, want firing", got)
		}
		// The firing state is on disk at once: a crash now would not
		// lose it.
		crashed := newTestManager(t, dir, q, rec)
		if err := crashed.SetRules(ctx, testRules(t, spikeRule)); err != nil {
			t.Fatal(err)
		}
		if got := state(crashed); got != "firing" {
			t.Fatalf("the state file after firing: %s, want firing", got)
		}
		as := amAlerts(t, rec.take("am.test"))
		if len(as) != 1 || as[0].Labels["alertname"] != "spike" || as[0].Labels["stream"] != "hdfs" || as[0].Labels["severity"] != "page" ||
			!as[0].StartsAt.Equal(start) || as[0].Annotations["summary"] != "10 errors in hdfs" || !strings.HasPrefix(as[0].GeneratorURL, "http://weir.test/#/explore?") {
			t.Fatalf("alertmanager got %+v", as)
		}
		if !as[0].EndsAt.After(time.Now()) {
			t.Errorf("a firing alert's endsAt %v is not in the future", as[0].EndsAt)
		}
		hooks := rec.take("hook.test")
		if len(hooks) != 1 || hooks[0] != `{"text": "10 errors in hdfs", "status": "firing"}` {
			t.Fatalf("webhook got %q", hooks)
		}

		// Still firing: re-sent to the Alertmanager once a minute, not
		// to the webhook.
		time.Sleep(time.Minute)
		synctest.Wait()
		if as := amAlerts(t, rec.take("am.test")); len(as) != 1 || !as[0].StartsAt.Equal(start) {
			t.Fatalf("resend: %+v", as)
		}
		if hooks := rec.take("hook.test"); len(hooks) != 0 {
			t.Fatalf("webhook resent: %q", hooks)
		}

		// A restart keeps it firing with its startsAt.
		if err := m.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		m = newTestManager(t, dir, q, rec)
		if err := m.SetRules(ctx, testRules(t, spikeRule)); err != nil {
			t.Fatal(err)
		}
		if got := state(m); got != "firing" {
			t.Fatalf("after restart: %s, want firing", got)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if hooks := rec.take("hook.test"); len(hooks) != 0 {
			t.Fatalf("webhook after restart: %q", hooks)
		}

		// The spike ends: resolved, with endsAt, once.
		q.n.Store(1)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := state(m); got != "resolved" {
			t.Fatalf("after the spike: %s, want resolved", got)
		}
		rec.take("am.test")
		hooks = rec.take("hook.test")
		if len(hooks) != 1 || !strings.Contains(hooks[0], `"status": "resolved"`) {
			t.Fatalf("webhook on resolve: %q", hooks)
		}
		if err := m.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}

		// After another restart the resolved alert is sent as resolved
		// only, and not to the webhook.
		m = newTestManager(t, dir, q, rec)
		if err := m.SetRules(ctx, testRules(t, spikeRule)); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		for _, a := range amAlerts(t, rec.take("am.test")) {
			if a.EndsAt.IsZero() || a.EndsAt.After(time.Now()) {
				t.Errorf("a resolved alert was sent as active: %+v", a)
			}
		}
		if hooks := rec.take("hook.test"); len(hooks) != 0 {
			t.Fatalf("webhook after the second restart: %q", hooks)
		}
		if err := m.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestKeepFiringFor: an alert stays firing that long after its
// condition stops holding; a pending one that stops holding is dropped
// unsent.
func TestKeepFiringFor(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tm := timing{For: 0, KeepFiringFor: 30 * time.Second, Retention: time.Minute}
	ins := map[string]*Instance{}
	on := map[string]sample{"a": {labels: map[string]string{"x": "1"}, value: 3}}
	if ev := advance(ins, on, t0, tm); len(ev) != 1 || ins["a"].State != StateFiring {
		t.Fatalf("for 0: %v %+v", ev, ins["a"])
	}
	if ev := advance(ins, nil, t0.Add(20*time.Second), tm); len(ev) != 0 || ins["a"].State != StateFiring {
		t.Fatalf("kept firing: %v %+v", ev, ins["a"])
	}
	if ev := advance(ins, nil, t0.Add(30*time.Second), tm); len(ev) != 1 || ins["a"].State != StateResolved {
		t.Fatalf("resolved: %v %+v", ev, ins["a"])
	}
	if ev := advance(ins, on, t0.Add(40*time.Second), tm); len(ev) != 1 || ins["a"].State != StateFiring || !ins["a"].ActiveAt.Equal(t0.Add(40*time.Second)) {
		t.Fatalf("a new alert after resolving: %v %+v", ev, ins["a"])
	}
	tm.For = time.Minute
	ins = map[string]*Instance{}
	advance(ins, on, t0, tm)
	if ins["a"].State != StatePending {
		t.Fatalf("pending: %+v", ins["a"])
	}
	if ev := advance(ins, nil, t0.Add(time.Second), tm); len(ev) != 0 || len(ins) != 0 {
		t.Fatalf("a pending alert that stops: %v %v", ev, ins)
	}
	if d := due(ins, t0, time.Minute); len(d) != 0 {
		t.Fatalf("due: %v", d)
	}
}

// TestNotifierFailures: a receiver that fails is retried with backoff and
// counted, and never holds up evaluation; a full queue drops.
func TestNotifierFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQuerier{}
		q.n.Store(10)
		rec := &recorder{}
		rec.status.Store(http.StatusServiceUnavailable)
		m := newTestManager(t, t.TempDir(), q, rec)
		ctx := context.Background()
		rules := testRules(t, strings.Replace(spikeRule, "for: 20s", "for: 0s", 1))
		if err := m.SetRules(ctx, rules); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		before := q.queries.Load()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := q.queries.Load() - before; n < 6 {
			t.Fatalf("%d evaluations in a minute of failing notifications, want 6", n)
		}
		// The first send and its five retries (after 0.5, 1, 2, 4 and
		// 8 s), then the resend a minute later.
		if n := len(rec.take("am.test")); n != 6+1 {
			t.Errorf("alertmanager attempts: %d, want 7 (a send retried five times, and the resend)", n)
		}
		// The webhook: the firing alert, retried five times, not resent.
		if n := len(rec.take("hook.test")); n != 6 {
			t.Errorf("webhook attempts: %d, want 6", n)
		}
		if got := counter(t, m.m.failed.WithLabelValues("webhook hook")); got != 1 {
			t.Errorf("failed webhook notifications: %v, want 1", got)
		}
		if got := counter(t, m.m.retries.WithLabelValues("alertmanager http://am.test")); got != 6 {
			t.Errorf("alertmanager retries: %v, want 6 (five of the first send, one of the resend)", got)
		}
		if err := m.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestEvaluationErrors: a failing query keeps the alerts' state and is
// reported on the rule.
func TestEvaluationErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := &fakeQuerier{}
		q.n.Store(10)
		m := newTestManager(t, t.TempDir(), q, &recorder{})
		ctx := context.Background()
		if err := m.SetRules(ctx, testRules(t, strings.Replace(spikeRule, "for: 20s", "for: 0s", 1))); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		q.fail.Store(true)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		r := m.Rules("default")[0]
		if r.State != "firing" || r.LastError != "no slot" {
			t.Fatalf("after a failed evaluation: state %s, error %q", r.State, r.LastError)
		}
		if err := m.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestShutdownWithoutStart is safe, and so is a second Shutdown.
func TestShutdownWithoutStart(t *testing.T) {
	m := newTestManager(t, t.TempDir(), &fakeQuerier{}, &recorder{})
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// counter reads a counter's value.
func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestQueueFull: a receiver's full queue drops new notifications and
// counts them, without waiting.
func TestQueueFull(t *testing.T) {
	met, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &notifier{name: "r", q: make(chan []Notification, 1), log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: met}
	for range 3 {
		n.enqueue([]Notification{{Status: "firing"}, {Status: "firing"}})
	}
	if got := counter(t, met.dropped.WithLabelValues("r")); got != 4 {
		t.Errorf("dropped %v, want 4", got)
	}
}

// TestDamagedStateSetAside: a state file that does not parse is moved to
// state.json.damaged and the manager starts without state; one of
// another version still refuses the start, so that a downgrade does not
// drop it.
func TestDamagedStateSetAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, stateFile)
	damaged := []byte(`{"version": 1, "rules": {"spike": {`)
	if err := os.WriteFile(path, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, dir, &fakeQuerier{}, &recorder{})
	if err := m.SetRules(context.Background(), testRules(t, spikeRule)); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path + ".damaged"); err != nil || !bytes.Equal(got, damaged) {
		t.Errorf("the damaged state was not set aside as it was: %q, %v", got, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the damaged state file is still in place: %v", err)
	}

	if err := os.WriteFile(path, []byte(`{"version": 99, "rules": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(DefaultConfig(), Deps{Querier: &fakeQuerier{}, StateDir: dir}); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("New over a state file of another version: %v", err)
	}
}

package sqs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest/internal/ingesttest"
	"github.com/weirlabs/weir/ingest/sqs"
	"github.com/weirlabs/weir/internal/brokertest"
	"github.com/weirlabs/weir/internal/record"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

func testConfig(g *brokertest.Goaws, queue string) sqs.Config {
	cfg := sqs.DefaultConfig()
	cfg.QueueURL, cfg.Endpoint, cfg.Region = g.QueueURL(queue), g.Endpoint, "us-east-1"
	cfg.AccessKeyID, cfg.SecretAccessKey = "test", "test"
	cfg.WaitTime, cfg.VisibilityTimeout = time.Second, 2*time.Second
	return cfg
}

func start(t *testing.T, cfg sqs.Config, sub sqs.Submitter) *sqs.Source {
	t.Helper()
	s, err := sqs.New(cfg, sqs.Deps{Submitter: sub})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

func waitFor(t *testing.T, patience time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", patience, what)
		}
		<-tick.C
	}
}

func missing(prefix string, n int, recs ...*ingesttest.Recorder) []string {
	seen := map[string]bool{}
	for _, r := range recs {
		for b := range r.Bodies() {
			seen[b] = true
		}
	}
	var out []string
	for i := range n {
		if b := fmt.Sprintf("%s-%d", prefix, i); !seen[b] {
			out = append(out, b)
		}
	}
	return out
}

func empty(t *testing.T, g *brokertest.Goaws, queue string) func() bool {
	return func() bool { v, f := g.Depth(t, queue); return v == 0 && f == 0 }
}

func TestSourceSQSRecords(t *testing.T) {
	g := brokertest.StartGoaws(t, "records", 30, 5)
	var rec ingesttest.Recorder
	cfg := testConfig(g, "records")
	cfg.Tenant, cfg.StreamFrom, cfg.Level = "acme", "sqs.attr.app", buffer.Committed
	s := start(t, cfg, &rec)
	g.Send(t, "records", "plain", map[string]string{"app": "Payments"})
	g.Send(t, "records", `{"message":"json","severity":"error","k":[1,2]}`, nil)
	for i := range 50 {
		g.Send(t, "records", fmt.Sprintf("m-%d", i), nil)
	}
	waitFor(t, 30*time.Second, "every message", func() bool { return len(missing("m", 50, &rec)) == 0 && rec.Len() >= 52 })
	for _, r := range rec.All() {
		if r.Tenant != "acme" || r.Level != buffer.Committed {
			t.Fatalf("%q: tenant %q level %v", r.Record.Body, r.Tenant, r.Level)
		}
		if v, _ := ingesttest.Attr(r.Record.Attributes, "sqs.queue"); v != "records" {
			t.Errorf("%q: sqs.queue = %q", r.Record.Body, v)
		}
		switch r.Record.Body {
		case "plain":
			if r.Stream != "payments" {
				t.Errorf("plain: stream %q, want payments from the attribute", r.Stream)
			}
		case "json":
			if r.Stream != "sqs" || r.Record.SeverityText != "error" {
				t.Errorf("json: %+v", r)
			}
			if v, _ := ingesttest.Attr(r.Record.Attributes, "k"); v != "[1,2]" {
				t.Errorf("json: k = %q", v)
			}
		}
	}
	waitFor(t, 10*time.Second, "the queue to empty", empty(t, g, "records"))
	if st := s.Stats(); st.Records != 52 {
		t.Errorf("stats %+v, want 52 records", st)
	}
}

// TestSourceSQSSlowBatch: a batch that waits for the pipeline longer than
// the visibility timeout keeps its messages invisible, so no one else
// receives them, and they are deleted once taken.
func TestSourceSQSSlowBatch(t *testing.T) {
	g := brokertest.StartGoaws(t, "slow", 2, 5)
	release := make(chan struct{})
	rec := &ingesttest.Recorder{}
	rec.Fail = func(string, []record.Record) error {
		select {
		case <-release:
			return nil
		default:
			return connect.NewError(connect.CodeResourceExhausted, errors.New("full"))
		}
	}
	cfg := testConfig(g, "slow")
	cfg.Receivers = 1
	s := start(t, cfg, rec)
	for i := range 5 {
		g.Send(t, "slow", fmt.Sprintf("m-%d", i), nil)
	}
	waitFor(t, 30*time.Second, "two visibility extensions", func() bool { return s.Stats().Extensions >= 2 })
	// The one receiver holds its first batch (the messages sent after
	// it wait their turn): nothing it holds is received again.
	if st := s.Stats(); st.Messages > 5 {
		t.Errorf("stats %+v: the messages were received again while held", st)
	}
	close(release)
	waitFor(t, 30*time.Second, "every message", func() bool { return len(missing("m", 5, rec)) == 0 })
	waitFor(t, 10*time.Second, "the queue to empty", empty(t, g, "slow"))
	if n := rec.Len(); n != 5 {
		t.Errorf("%d records, want 5", n)
	}
}

// TestSourceSQSPoison: a message the pipeline refuses for good stays in
// the queue until its redrive policy moves it to the dead-letter queue.
func TestSourceSQSPoison(t *testing.T) {
	g := brokertest.StartGoaws(t, "poison", 2, 1)
	rec := &ingesttest.Recorder{}
	rec.Fail = func(_ string, recs []record.Record) error {
		if recs[0].Body == "refused" {
			return connect.NewError(connect.CodeInvalidArgument, errors.New("invalid record"))
		}
		return nil
	}
	cfg := testConfig(g, "poison")
	cfg.Receivers, cfg.StreamFrom = 1, "sqs.attr.app"
	s := start(t, cfg, rec)
	g.Send(t, "poison", "refused", nil)
	g.Send(t, "poison", "m-0", map[string]string{"app": "other"})
	g.Send(t, "poison", "m-1", map[string]string{"app": "third"})
	waitFor(t, 30*time.Second, "the good messages", func() bool { return len(missing("m", 2, rec)) == 0 })
	waitFor(t, 30*time.Second, "the poison message in the dead-letter queue", func() bool { v, _ := g.Depth(t, "poison_dead"); return v == 1 })
	waitFor(t, 10*time.Second, "the queue to empty", empty(t, g, "poison"))
	if st := s.Stats(); st.Rejected < 1 {
		t.Errorf("stats %+v, want a rejected message", st)
	}
	if n := rec.Len(); n != 2 {
		t.Errorf("%d records taken, want 2, each once", n)
	}
}

// TestSourceSQSCrash: a source stopped past its deadline mid-submit
// deleted nothing it had not handed over; the messages come back after
// their visibility timeout and the next source stores them.
func TestSourceSQSCrash(t *testing.T) {
	g := brokertest.StartGoaws(t, "crash", 2, 100)
	stall := make(chan struct{})
	crashed := &ingesttest.Recorder{}
	crashed.Fail = func(string, []record.Record) error {
		if crashed.Len() >= 30 {
			<-stall
			return connect.NewError(connect.CodeUnavailable, errors.New("gone"))
		}
		return nil
	}
	cfg := testConfig(g, "crash")
	s, err := sqs.New(cfg, sqs.Deps{Submitter: crashed})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		g.Send(t, "crash", fmt.Sprintf("m-%d", i), nil)
	}
	waitFor(t, 30*time.Second, "the first source to stall", func() bool { return crashed.Len() >= 30 })
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	close(stall)
	if err := s.Shutdown(dead); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	var next ingesttest.Recorder
	start(t, cfg, &next)
	waitFor(t, 60*time.Second, "every message", func() bool { return len(missing("m", 100, crashed, &next)) == 0 })
	waitFor(t, 10*time.Second, "the queue to empty", empty(t, g, "crash"))
}

func TestSourceSQSShutdownWithoutStart(t *testing.T) {
	cfg := sqs.DefaultConfig()
	cfg.QueueURL = "https://sqs.us-east-1.amazonaws.com/1/q"
	s, err := sqs.New(cfg, sqs.Deps{Submitter: &ingesttest.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSourceSQSConfig(t *testing.T) {
	ok := sqs.DefaultConfig()
	ok.QueueURL = "https://sqs.us-east-1.amazonaws.com/1/q"
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*sqs.Config){
		"no url":     func(c *sqs.Config) { c.QueueURL = "" },
		"no queue":   func(c *sqs.Config) { c.QueueURL = "https://h/" },
		"receivers":  func(c *sqs.Config) { c.Receivers = 0 },
		"max":        func(c *sqs.Config) { c.MaxMessages = 11 },
		"wait":       func(c *sqs.Config) { c.WaitTime = time.Minute },
		"visibility": func(c *sqs.Config) { c.VisibilityTimeout = time.Second },
		"half keys":  func(c *sqs.Config) { c.AccessKeyID = "a" },
		"stream":     func(c *sqs.Config) { c.Stream = "-" },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate passed", name)
		}
	}
}

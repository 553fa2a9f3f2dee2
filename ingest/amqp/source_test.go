package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/weirlabs/weir/buffer"
	weiramqp "github.com/weirlabs/weir/ingest/amqp"
	"github.com/weirlabs/weir/ingest/internal/ingesttest"
	"github.com/weirlabs/weir/internal/brokertest"
	"github.com/weirlabs/weir/internal/record"
)

func TestMain(m *testing.M) {
	code := m.Run()
	brokertest.StopRabbit()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func testConfig(url, queue string) weiramqp.Config {
	cfg := weiramqp.DefaultConfig()
	cfg.URL, cfg.Queue, cfg.Prefetch, cfg.BatchDelay = url, queue, 50, 20*time.Millisecond
	return cfg
}

func start(t *testing.T, cfg weiramqp.Config, sub weiramqp.Submitter) *weiramqp.Source {
	t.Helper()
	s, err := weiramqp.New(cfg, weiramqp.Deps{Submitter: sub})
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
	select {
	case <-s.Consuming():
	case <-time.After(30 * time.Second):
		t.Fatal("the source did not start consuming")
	}
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

func TestSourceAMQPRecords(t *testing.T) {
	url := brokertest.Rabbit(t)
	ch := brokertest.Declare(t, url, "records")
	var rec ingesttest.Recorder
	cfg := testConfig(url, "records")
	cfg.Tenant, cfg.StreamFrom, cfg.Level = "acme", "amqp.header.app", buffer.Committed
	s := start(t, cfg, &rec)
	brokertest.Publish(t, ch, "records", amqp.Publishing{Body: []byte("plain"), MessageId: "m1", Headers: amqp.Table{"app": "Billing", "n": int32(3)}})
	brokertest.Publish(t, ch, "records", amqp.Publishing{Body: []byte(`{"msg":"json","level":"warn","a":{"b":true}}`)})
	waitFor(t, 30*time.Second, "two records", func() bool { return rec.Len() == 2 })
	for _, r := range rec.All() {
		if r.Tenant != "acme" || r.Level != buffer.Committed {
			t.Errorf("%q: tenant %q level %v", r.Record.Body, r.Tenant, r.Level)
		}
		switch r.Record.Body {
		case "plain":
			if r.Stream != "billing" {
				t.Errorf("plain: stream %q, want billing from the header", r.Stream)
			}
			for k, want := range map[string]string{"amqp.routing_key": "records", "amqp.message_id": "m1", "amqp.header.n": "3"} {
				if v, _ := ingesttest.Attr(r.Record.Attributes, k); v != want {
					t.Errorf("plain: %s = %q, want %q", k, v, want)
				}
			}
		case "json":
			if r.Stream != "amqp" || r.Record.SeverityText != "warn" {
				t.Errorf("json: %+v", r)
			}
			if v, _ := ingesttest.Attr(r.Record.Attributes, "a.b"); v != "true" {
				t.Errorf("json: a.b = %q", v)
			}
		default:
			t.Errorf("unexpected record %+v", r)
		}
	}
	waitFor(t, 10*time.Second, "the queue to empty", func() bool { return brokertest.QueueDepth(t, ch, "records") == 0 })
	if st := s.Stats(); st.Messages != 2 || st.Records != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestSourceAMQPCompeting: two sources on one queue share its messages;
// when one stops, the other takes the rest.
func TestSourceAMQPCompeting(t *testing.T) {
	url := brokertest.Rabbit(t)
	ch := brokertest.Declare(t, url, "competing")
	var a, b ingesttest.Recorder
	cfg := testConfig(url, "competing")
	cfg.Prefetch = 10
	sa := start(t, cfg, &a)
	start(t, cfg, &b)
	for i := range 500 {
		brokertest.Publish(t, ch, "competing", amqp.Publishing{Body: fmt.Appendf(nil, "one-%d", i)})
	}
	waitFor(t, 30*time.Second, "every message", func() bool { return len(missing("one", 500, &a, &b)) == 0 })
	if a.Len() == 0 || b.Len() == 0 {
		t.Errorf("one consumer took every message: %d and %d", a.Len(), b.Len())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sa.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	before := b.Len()
	for i := range 200 {
		brokertest.Publish(t, ch, "competing", amqp.Publishing{Body: fmt.Appendf(nil, "two-%d", i)})
	}
	waitFor(t, 30*time.Second, "the rest", func() bool { return len(missing("two", 200, &a, &b)) == 0 })
	if got := b.Len() - before; got != 200 {
		t.Errorf("the remaining consumer took %d, want 200", got)
	}
}

// TestSourceAMQPPoison: a message the pipeline refuses, or that is past
// the bounds, goes to the queue's dead-letter exchange; the messages
// around it are stored.
func TestSourceAMQPPoison(t *testing.T) {
	url := brokertest.Rabbit(t)
	ch := brokertest.Declare(t, url, "poison")
	rec := &ingesttest.Recorder{}
	rec.Fail = func(_ string, recs []record.Record) error {
		for _, r := range recs {
			if r.Body == "refused" {
				return connect.NewError(connect.CodeInvalidArgument, errors.New("invalid record"))
			}
		}
		return nil
	}
	cfg := testConfig(url, "poison")
	cfg.MaxMessageBytes, cfg.StreamFrom = 1024, "amqp.header.app"
	s := start(t, cfg, rec)
	bodies := [][]byte{[]byte("ok-0"), []byte("refused"), []byte("ok-1"), []byte("\xff\xfe"), make([]byte, 2000), []byte("ok-2"), []byte("ok-3")}
	for _, b := range bodies {
		var h amqp.Table
		if string(b) == "ok-3" {
			h = amqp.Table{"app": "other"} // a stream of its own, taken whatever happens to the others
		}
		brokertest.Publish(t, ch, "poison", amqp.Publishing{Body: b, Headers: h})
	}
	waitFor(t, 30*time.Second, "the good messages", func() bool { return len(missing("ok", 4, rec)) == 0 })
	waitFor(t, 30*time.Second, "three messages dead-lettered by the broker", func() bool { return brokertest.QueueDepth(t, ch, "poison_dead") == 3 })
	if n := rec.Len(); n != 4 {
		t.Errorf("%d records taken, want 4, each once", n)
	}
	if st := s.Stats(); st.Rejected != 3 {
		t.Errorf("stats %+v, want 3 rejected", st)
	}
	dead := map[string]bool{}
	for range 3 {
		d, ok, err := ch.Get("poison_dead", true)
		if err != nil || !ok {
			t.Fatalf("dead letter: %v %v", ok, err)
		}
		dead[string(d.Body)] = true
	}
	for _, b := range bodies {
		if want := !strings.HasPrefix(string(b), "ok-"); dead[string(b)] != want {
			t.Errorf("%.20q dead-lettered by the broker: %v, want %v (bytes intact)", b, dead[string(b)], want)
		}
	}
}

// TestSourceAMQPTransient: backpressure is retried; past RetryTimeout the
// messages are requeued, and taken once the pipeline recovers.
func TestSourceAMQPTransient(t *testing.T) {
	url := brokertest.Rabbit(t)
	ch := brokertest.Declare(t, url, "transient")
	refuse := make(chan struct{})
	rec := &ingesttest.Recorder{}
	rec.Fail = func(string, []record.Record) error {
		select {
		case <-refuse:
			return nil
		default:
			return connect.NewError(connect.CodeResourceExhausted, errors.New("full"))
		}
	}
	cfg := testConfig(url, "transient")
	cfg.RetryTimeout = 300 * time.Millisecond
	s := start(t, cfg, rec)
	for i := range 20 {
		brokertest.Publish(t, ch, "transient", amqp.Publishing{Body: fmt.Appendf(nil, "m-%d", i)})
	}
	waitFor(t, 30*time.Second, "a redelivery", func() bool { return s.Stats().Messages > 20 })
	close(refuse)
	waitFor(t, 30*time.Second, "every message", func() bool { return len(missing("m", 20, rec)) == 0 })
	if st := s.Stats(); st.Retries == 0 || st.Rejected != 0 {
		t.Errorf("stats %+v: want retries and nothing rejected", st)
	}
	waitFor(t, 10*time.Second, "the queue to empty", func() bool { return brokertest.QueueDepth(t, ch, "transient") == 0 })
}

// TestSourceAMQPCrash: a source that dies holding deliveries (its
// Shutdown deadline passes mid-submit) acknowledged none of them, so the
// broker hands them to the next consumer.
func TestSourceAMQPCrash(t *testing.T) {
	url := brokertest.Rabbit(t)
	ch := brokertest.Declare(t, url, "crash")
	stall := make(chan struct{})
	crashed := &ingesttest.Recorder{}
	crashed.Fail = func(string, []record.Record) error {
		if crashed.Len() >= 100 {
			<-stall
			return connect.NewError(connect.CodeUnavailable, errors.New("gone"))
		}
		return nil
	}
	cfg := testConfig(url, "crash")
	cfg.Prefetch = 20
	s, err := weiramqp.New(cfg, weiramqp.Deps{Submitter: crashed})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		brokertest.Publish(t, ch, "crash", amqp.Publishing{Body: fmt.Appendf(nil, "m-%d", i)})
	}
	waitFor(t, 30*time.Second, "the first consumer to stall", func() bool { return crashed.Len() >= 100 })
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	close(stall)
	if err := s.Shutdown(dead); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	var next ingesttest.Recorder
	start(t, cfg, &next)
	waitFor(t, 30*time.Second, "every message", func() bool { return len(missing("m", 400, crashed, &next)) == 0 })
}

// TestSourceAMQPReconnect: the source reconnects after the broker closes
// its connection.
func TestSourceAMQPReconnect(t *testing.T) {
	url := brokertest.Rabbit(t)
	ch := brokertest.Declare(t, url, "reconnect")
	var rec ingesttest.Recorder
	s := start(t, testConfig(url, "reconnect"), &rec)
	brokertest.Publish(t, ch, "reconnect", amqp.Publishing{Body: []byte("m-0")})
	waitFor(t, 30*time.Second, "the first message", func() bool { return rec.Len() == 1 })
	// Deleting the queue cancels the consumer: the source's channel
	// closes, and it reconnects until the queue is back.
	if _, err := ch.QueueDelete("reconnect", false, false, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the source to notice", func() bool { return s.Stats().Errors > 0 })
	ch = brokertest.Declare(t, url, "reconnect")
	brokertest.Publish(t, ch, "reconnect", amqp.Publishing{Body: []byte("m-1")})
	waitFor(t, 60*time.Second, "the message after the reconnect", func() bool { return len(missing("m", 2, &rec)) == 0 })
}

func TestSourceAMQPShutdownWithoutStart(t *testing.T) {
	s, err := weiramqp.New(testConfig("amqp://127.0.0.1:1/", "q"), weiramqp.Deps{Submitter: &ingesttest.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSourceAMQPConfig(t *testing.T) {
	ok := testConfig("amqp://h/", "q")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*weiramqp.Config){
		"no url":   func(c *weiramqp.Config) { c.URL = "" },
		"scheme":   func(c *weiramqp.Config) { c.URL = "http://h/" },
		"no queue": func(c *weiramqp.Config) { c.Queue = "" },
		"prefetch": func(c *weiramqp.Config) { c.Prefetch = 0 },
		"delay":    func(c *weiramqp.Config) { c.BatchDelay = 0 },
		"size":     func(c *weiramqp.Config) { c.MaxMessageBytes = 1 },
		"stream":   func(c *weiramqp.Config) { c.Stream = "" },
		"tenant":   func(c *weiramqp.Config) { c.Tenant = "A" },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate passed", name)
		}
	}
}

package forward_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/weirlabs/weir/internal/brokertest"
	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/forward"
)

func amqpConfig(url, exchange string) forward.AMQPConfig {
	cfg := forward.DefaultAMQPConfig()
	cfg.Name, cfg.Tenant, cfg.Stream, cfg.URL, cfg.Exchange = "out", "default", "app", url, exchange
	cfg.BatchRecords, cfg.MinBackoff, cfg.MaxBackoff, cfg.PublishTimeout = 50, 10*time.Millisecond, 200*time.Millisecond, 2*time.Second
	return cfg
}

func startAMQP(t *testing.T, cfg forward.AMQPConfig, m *consume.Manager) *forward.Forwarder {
	t.Helper()
	f, err := forward.NewAMQP(cfg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, f) })
	return f
}

// exchange declares topic exchange name afresh and returns a channel to
// read with.
func exchange(t *testing.T, url, name string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ch.ExchangeDelete(name, false, false)
	if err := ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	return ch
}

// bind declares queue afresh, bound to exchange for key.
func bind(t *testing.T, ch *amqp.Channel, queue, exchange, key string) {
	t.Helper()
	if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, key, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
}

// readQueue gets want messages from queue, failing after 30 s, and
// checks what every message carries besides its JSON value.
func readQueue(t *testing.T, ch *amqp.Channel, queue string, want int) []message {
	t.Helper()
	var out []message
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < want {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if time.Now().After(deadline) {
				t.Fatalf("read %d messages of %d", len(out), want)
			}
			time.Sleep(5 * time.Millisecond) // polling an empty queue
			continue
		}
		m := message{key: d.RoutingKey}
		if err := json.Unmarshal(d.Body, &m.Message); err != nil {
			t.Fatalf("message %q: %v", d.Body, err)
		}
		m.headerPart, _ = d.Headers[forward.HeaderPartition].(string)
		m.hdOff, _ = d.Headers[forward.HeaderOffset].(string)
		if d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" || d.Headers[forward.HeaderStream] != "app" || d.Headers[forward.HeaderTenant] != "default" ||
			d.MessageId != fmt.Sprintf("default/app/%d/%d", m.Partition, m.Offset) {
			t.Fatalf("message %+v: delivery mode %d, content type %q, headers %v, id %q", m.Message, d.DeliveryMode, d.ContentType, d.Headers, d.MessageId)
		}
		out = append(out, m)
	}
	return out
}

// TestForwardAMQP: every record reaches the queue bound to the exchange
// once, as JSON with its position, routed by service and in offset order
// per service; after a restart the forwarder resumes from its commit.
func TestForwardAMQP(t *testing.T) {
	url := brokertest.Rabbit(t)
	ch := exchange(t, url, "fwd")
	bind(t, ch, "fwd_all", "fwd", "#")
	l := newLake(2)
	l.add(0, "api", "a", 300)
	l.add(1, "web", "w", 200)
	dir := t.TempDir()
	m := newManager(t, dir, l)
	f := startAMQP(t, amqpConfig(url, "fwd"), m)
	msgs := readQueue(t, ch, "fwd_all", 500)
	checkOrder(t, msgs)
	waitFor(t, "the commit of every record", func() bool { return lag(m) == 0 })
	if st := f.Stats(); st.Records != 500 || st.Errors != 0 {
		t.Errorf("stats %+v, want 500 records and no errors", st)
	}

	stop(t, f)
	l.add(0, "api", "b", 100)
	m = newManager(t, dir, l)
	f = startAMQP(t, amqpConfig(url, "fwd"), m)
	checkOrder(t, append(msgs, readQueue(t, ch, "fwd_all", 100)...))
	waitFor(t, "the commit of every record", func() bool { return lag(m) == 0 })
	if st := f.Stats(); st.Records != 100 {
		t.Errorf("%d records published after the restart, want 100: nothing is published twice after a clean stop", st.Records)
	}
}

// TestForwardAMQPDown: while the broker is unreachable, or has no queue
// for the routing key, the forwarder only lags; then every record
// arrives.
func TestForwardAMQPDown(t *testing.T) {
	rabbit := brokertest.Rabbit(t)
	u, err := url.Parse(rabbit)
	if err != nil {
		t.Fatal(err)
	}
	p := brokertest.NewProxy(t, u.Host)
	ch := exchange(t, rabbit, "fwd_down")
	bind(t, ch, "fwd_down_q", "fwd_down", "logs")
	l := newLake(2)
	l.add(0, "api", "a", 100)
	m := newManager(t, t.TempDir(), l)
	cfg := amqpConfig(p.URL(rabbit), "fwd_down")
	cfg.RoutingKey = "logs"
	f := startAMQP(t, cfg, m)
	readQueue(t, ch, "fwd_down_q", 100)
	waitFor(t, "the first commit", func() bool { return lag(m) == 0 })

	p.Cut()
	l.add(1, "web", "w", 200)
	waitFor(t, "a failed publish", func() bool { return f.Stats().Errors > 0 })
	if got := lag(m); got != 200 {
		t.Errorf("lag %d while the broker is unreachable, want 200", got)
	}
	p.Restore(t)
	msgs := readQueue(t, ch, "fwd_down_q", 200)
	waitFor(t, "the commit of every record", func() bool { return lag(m) == 0 })
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Body] = true
	}
	if len(seen) != 200 {
		t.Errorf("%d distinct records in the queue, want 200", len(seen))
	}

	// Unroutable: the broker returns every message until a queue is bound.
	if err := ch.QueueUnbind("fwd_down_q", "logs", "fwd_down", nil); err != nil {
		t.Fatal(err)
	}
	errs := f.Stats().Errors
	l.add(0, "api", "c", 10)
	waitFor(t, "a returned publish", func() bool { return f.Stats().Errors > errs })
	if got := lag(m); got != 10 {
		t.Errorf("lag %d while no queue is bound, want 10", got)
	}
	if err := ch.QueueBind("fwd_down_q", "logs", "fwd_down", false, nil); err != nil {
		t.Fatal(err)
	}
	readQueue(t, ch, "fwd_down_q", 10)
	waitFor(t, "the commit of every record", func() bool { return lag(m) == 0 })
}

func TestAMQPConfigValidate(t *testing.T) {
	ok := amqpConfig("amqp://r:5672/", "x")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*forward.AMQPConfig){
		"name":    func(c *forward.AMQPConfig) { c.Name = "" },
		"url":     func(c *forward.AMQPConfig) { c.URL = "" },
		"scheme":  func(c *forward.AMQPConfig) { c.URL = "http://r/" },
		"key":     func(c *forward.AMQPConfig) { c.RoutingKey = string(make([]byte, 256)) },
		"batch":   func(c *forward.AMQPConfig) { c.BatchRecords = 0 },
		"timeout": func(c *forward.AMQPConfig) { c.PublishTimeout = 0 },
		"backoff": func(c *forward.AMQPConfig) { c.MaxBackoff = c.MinBackoff / 2 },
	} {
		c := ok
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
}

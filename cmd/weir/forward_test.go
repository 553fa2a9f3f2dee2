package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirlabs/weir/internal/brokertest"
	"github.com/weirlabs/weir/internal/forward"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// forwardCluster starts an in-process Kafka with topic "out" of three
// partitions, on port (0: any) with its data in dir ("": in memory).
func forwardCluster(t *testing.T, port int, dir string) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, "out"), kfake.Ports(port)}
	if dir != "" {
		opts = append(opts, kfake.DataDir(dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// withForwarder configures forwarder "orders" of stream app to topic out.
func withForwarder(brokers []string) func(*config) {
	return func(cfg *config) {
		fastCommit(cfg)
		cfg.Consume.PollInterval = 10 * time.Millisecond
		cfg.Forward.Kafka = []kafkaForwardConfig{{Name: "orders", Stream: "app", Brokers: brokers, Topic: "out",
			BatchRecords: 100, ProduceTimeout: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}}
	}
}

// pushServices pushes n records "PREFIX-i" to stream app, of services
// svc0..svc2 in turn, acknowledged once durable.
func pushServices(t *testing.T, url, prefix string, n int) {
	t.Helper()
	ingest, _ := newClients(url)
	for lo := 0; lo < n; lo += 50 {
		var recs []*weirv1.LogRecord
		for i := lo; i < min(n, lo+50); i++ {
			r := tailRecord(fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("svc%d", i%3), "INFO", weirv1.SeverityNumber_SEVERITY_NUMBER_INFO)
			r.Attributes = []*weirv1.KeyValue{{Key: "i", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: strconv.Itoa(i)}}}}
			recs = append(recs, r)
		}
		push(t, context.Background(), ingest, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, recs...)
	}
}

// forwarded is a message of topic out.
type forwarded struct {
	forward.Message
	key       string
	kafkaPart int32
	headers   map[string]string
}

// readForwarded reads topic out from the start until it holds want
// messages.
func readForwarded(t *testing.T, brokers []string, want int) []forwarded {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []forwarded
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d messages of topic out, want %d", len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			m := forwarded{key: string(r.Key), kafkaPart: r.Partition, headers: map[string]string{}}
			if err := json.Unmarshal(r.Value, &m.Message); err != nil {
				t.Fatalf("message %q: %v", r.Value, err)
			}
			for _, h := range r.Headers {
				m.headers[h.Key] = string(h.Value)
			}
			out = append(out, m)
		})
	}
	return out
}

// checkForwarded checks msgs against what stream app stores: every
// stored record arrived, as stored, keyed by service with its position
// in the headers, and the records of one key follow their offsets within
// a Kafka partition. It returns the duplicates.
func checkForwarded(t *testing.T, url string, msgs []forwarded) int {
	t.Helper()
	res := mustSQL(t, url, "SELECT body, service_name, severity_text, attributes['i'] AS i, _partition, _offset FROM app")
	type pos struct {
		part int32
		off  int64
	}
	stored := map[string]pos{}
	for _, r := range res.Rows {
		part, err1 := strconv.Atoi(fmt.Sprint(r["_partition"]))
		off, err2 := strconv.ParseInt(fmt.Sprint(r["_offset"]), 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("stored %v: position: %v %v", r, err1, err2)
		}
		stored[r["body"].(string)] = pos{int32(part), off}
		if want := "svc" + strconv.Itoa(mustAtoi(t, r["i"].(string))%3); r["service_name"] != want {
			t.Fatalf("stored %v: service %v, want %s", r, r["service_name"], want)
		}
	}
	type key struct {
		kafka int32
		svc   string
	}
	last := map[key]pos{}
	seen := map[string]bool{}
	dups := 0
	for _, m := range msgs {
		p, ok := stored[m.Body]
		if !ok {
			t.Fatalf("message %+v: not stored", m.Message)
		}
		i := strings.SplitN(m.Body, "-", 2)[1]
		if m.Partition != p.part || m.Offset != p.off || m.Stream != "app" || m.Tenant != "default" || m.SeverityText != "INFO" ||
			m.Attributes["i"] != i || m.ServiceName != "svc"+strconv.Itoa(mustAtoi(t, i)%3) || m.Resource["service.name"] != m.ServiceName {
			t.Fatalf("message %+v: stored at %d:%d", m.Message, p.part, p.off)
		}
		if _, err := time.Parse(time.RFC3339Nano, m.Timestamp); err != nil {
			t.Fatalf("message %+v: timestamp: %v", m.Message, err)
		}
		if m.key != m.ServiceName || m.headers[forward.HeaderPartition] != strconv.Itoa(int(p.part)) ||
			m.headers[forward.HeaderOffset] != strconv.FormatInt(p.off, 10) || m.headers[forward.HeaderStream] != "app" {
			t.Fatalf("message %+v: key %q headers %v", m.Message, m.key, m.headers)
		}
		if seen[m.Body] {
			dups++
			continue
		}
		seen[m.Body] = true
		k := key{m.kafkaPart, m.key}
		if l, ok := last[k]; ok && l.part == p.part && l.off >= p.off {
			t.Fatalf("key %s in Kafka partition %d: offset %d:%d after %d:%d", k.svc, k.kafka, p.part, p.off, l.part, l.off)
		}
		last[k] = p
	}
	if len(seen) != len(stored) {
		t.Fatalf("%d of %d stored records forwarded", len(seen), len(stored))
	}
	return dups
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// metricValue returns the value of the /metrics series that starts
// with series, or -1 without one.
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	return metricValueAs(t, url, "", series)
}

// metricValueAs is metricValue with a key (none if token is "").
func metricValueAs(t *testing.T, url, token, series string) float64 {
	t.Helper()
	resp, err := keyClient(token).Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	v := -1.0
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			v = max(v, 0) + f
		}
	}
	return v
}

// forwardLag sums the forwarder's group lag over the partitions.
func forwardLag(t *testing.T, url string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lag, found := 0.0, false
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "weir_consumer_group_lag_records{") && strings.Contains(line, `group="forward.orders"`) {
			f, _ := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]), 64)
			lag += f
			found = true
		}
	}
	if !found {
		return -1
	}
	return lag
}

func waitForward(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForwardKafka: records pushed to stream app arrive in topic out as
// stored; after a restart of weir the forwarder resumes from its commit,
// forwarding nothing twice after a clean stop.
func TestForwardKafka(t *testing.T) {
	c := forwardCluster(t, 0, "")
	brokers := c.ListenAddrs()
	data := t.TempDir()
	s := startServer(t, data, withForwarder(brokers))
	pushServices(t, s.url, "a", 300)
	waitCount(t, s.url, "SELECT count(*) FROM app", 300)
	if dups := checkForwarded(t, s.url, readForwarded(t, brokers, 300)); dups != 0 {
		t.Errorf("%d duplicates without a failure", dups)
	}
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, s.url) == 0 })
	if got := metricValue(t, s.url, `weir_forwarder_records_total{name="orders"}`); got != 300 {
		t.Errorf("weir_forwarder_records_total %v, want 300", got)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, data, withForwarder(brokers))
	pushServices(t, s.url, "b", 200)
	waitCount(t, s.url, "SELECT count(*) FROM app", 500)
	msgs := readForwarded(t, brokers, 500)
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, s.url) == 0 })
	if dups := checkForwarded(t, s.url, msgs); dups != 0 {
		t.Errorf("%d duplicates after a clean restart, want none: everything was committed", dups)
	}
}

// TestForwardKafkaDown: with Kafka down, pushes are still acknowledged
// and the forwarder lags; once Kafka is back everything arrives. Then
// weir stops while Kafka is down and starts again once it is back: the
// forwarder resumes from its commit, and only the uncommitted tail may
// be forwarded twice.
func TestForwardKafkaDown(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := forwardCluster(t, port, dir)
	brokers := c.ListenAddrs()
	s := startServer(t, data, withForwarder(brokers))
	pushServices(t, s.url, "a", 100)
	readForwarded(t, brokers, 100)
	waitForward(t, "the forwarder's commit", func() bool { return forwardLag(t, s.url) == 0 })

	c.Close()
	pushServices(t, s.url, "b", 300) // acknowledged while Kafka is down
	waitCount(t, s.url, "SELECT count(*) FROM app", 400)
	waitForward(t, "a forwarder error", func() bool { return metricValue(t, s.url, `weir_forwarder_errors_total{name="orders"}`) > 0 })
	if lag := forwardLag(t, s.url); lag <= 0 {
		t.Errorf("forwarder lag %v while Kafka is down, want above 0", lag)
	}

	c = forwardCluster(t, port, dir)
	msgs := readForwarded(t, c.ListenAddrs(), 400)
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, s.url) == 0 })
	msgs = readForwarded(t, c.ListenAddrs(), len(msgs)) // everything produced before the commit
	dups := checkForwarded(t, s.url, msgs)
	t.Logf("%d records forwarded again after Kafka came back (batches retried)", dups)

	c.Close()
	pushServices(t, s.url, "c", 100)
	waitCount(t, s.url, "SELECT count(*) FROM app", 500)
	tail := forwardLag(t, s.url)
	if err := s.stop(); err != nil { // does not wait for Kafka
		t.Fatal(err)
	}
	c = forwardCluster(t, port, dir)
	s = startServer(t, data, withForwarder(c.ListenAddrs()))
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, s.url) == 0 })
	msgs = readForwarded(t, c.ListenAddrs(), 500)
	msgs = readForwarded(t, c.ListenAddrs(), len(msgs))
	again := checkForwarded(t, s.url, msgs) - dups
	t.Logf("%d records forwarded again after the restart, of an uncommitted tail of %v", again, tail)
	if float64(again) > tail {
		t.Errorf("%d records forwarded again after the restart, more than the uncommitted tail of %v", again, tail)
	}
}

func TestForwardConfig(t *testing.T) {
	ok := kafkaForwardConfig{Name: "orders", Stream: "app", Brokers: []string{"k:9092"}, Topic: "out"}
	if _, err := ok.config(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*kafkaForwardConfig){
		"no topic":      func(c *kafkaForwardConfig) { c.Topic = "" },
		"bad name":      func(c *kafkaForwardConfig) { c.Name = "Orders.x" },
		"bad stream":    func(c *kafkaForwardConfig) { c.Stream = "App" },
		"bad tenant":    func(c *kafkaForwardConfig) { c.Tenant = "A-B" },
		"no brokers":    func(c *kafkaForwardConfig) { c.Brokers = nil },
		"short backoff": func(c *kafkaForwardConfig) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond },
	} {
		c := ok
		mut(&c)
		if _, err := c.config(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	twice := forwardConfig{Kafka: []kafkaForwardConfig{ok, ok}}
	if err := twice.validate(); err == nil {
		t.Error("two forwarders of one name accepted")
	}

	a := amqpForwardConfig{Name: "orders", Stream: "app", URL: "amqp://r:5672/", Exchange: "logs"}
	if c, err := a.config(); err != nil || c.RoutingKey != "" || c.PublishTimeout != forward.DefaultAMQPConfig().PublishTimeout {
		t.Fatalf("%+v %v", c, err)
	}
	for name, mut := range map[string]func(*amqpForwardConfig){
		"no url":     func(c *amqpForwardConfig) { c.URL = "" },
		"http url":   func(c *amqpForwardConfig) { c.URL = "http://r/" },
		"bad name":   func(c *amqpForwardConfig) { c.Name = "Orders.x" },
		"bad stream": func(c *amqpForwardConfig) { c.Stream = "App" },
		"no timeout": func(c *amqpForwardConfig) { c.PublishTimeout = -time.Second },
	} {
		c := a
		mut(&c)
		if _, err := c.config(); err == nil {
			t.Errorf("amqp %s: accepted", name)
		}
	}
	across := forwardConfig{Kafka: []kafkaForwardConfig{ok}, AMQP: []amqpForwardConfig{a}}
	if err := across.validate(); err == nil {
		t.Error("a Kafka and a RabbitMQ forwarder of one name accepted")
	}
}

// readExchange gets want messages from queue, which is bound to the
// forwarder's exchange, as forwarded messages: the routing key is the
// key, and the single queue is one partition.
func readExchange(t *testing.T, ch *amqp091.Channel, queue string, want int) []forwarded {
	t.Helper()
	var out []forwarded
	deadline := time.Now().Add(60 * time.Second)
	for len(out) < want {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if time.Now().After(deadline) {
				t.Fatalf("read %d messages of queue %s, want %d", len(out), queue, want)
			}
			time.Sleep(10 * time.Millisecond) // polling an empty queue
			continue
		}
		if d.DeliveryMode != amqp091.Persistent {
			t.Fatalf("message %s: delivery mode %d, want persistent", d.Body, d.DeliveryMode)
		}
		m := forwarded{key: d.RoutingKey, headers: map[string]string{}}
		if err := json.Unmarshal(d.Body, &m.Message); err != nil {
			t.Fatalf("message %q: %v", d.Body, err)
		}
		for k, v := range d.Headers {
			m.headers[k] = fmt.Sprint(v)
		}
		out = append(out, m)
	}
	return out
}

// TestForwardAMQP: records pushed to stream app arrive in a queue bound
// to the forwarder's exchange as stored; after a restart of weir the
// forwarder resumes from its commit; while the broker is unreachable
// pushes are still acknowledged and the forwarder lags, and once it is
// back everything arrives.
func TestForwardAMQP(t *testing.T) {
	rabbit := brokertest.StartRabbit(t)
	u, err := url.Parse(rabbit)
	if err != nil {
		t.Fatal(err)
	}
	proxy := brokertest.NewProxy(t, u.Host)
	conn, err := amqp091.Dial(rabbit)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("logs", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("all", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("all", "#", "logs", false, nil); err != nil {
		t.Fatal(err)
	}
	withAMQP := func(cfg *config) {
		fastCommit(cfg)
		cfg.Consume.PollInterval = 10 * time.Millisecond
		cfg.Forward.AMQP = []amqpForwardConfig{{Name: "orders", Stream: "app", URL: proxy.URL(rabbit), Exchange: "logs",
			BatchRecords: 100, PublishTimeout: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}}
	}
	data := t.TempDir()
	s := startServer(t, data, withAMQP)
	pushServices(t, s.url, "a", 300)
	waitCount(t, s.url, "SELECT count(*) FROM app", 300)
	msgs := readExchange(t, ch, "all", 300)
	if dups := checkForwarded(t, s.url, msgs); dups != 0 {
		t.Errorf("%d duplicates without a failure", dups)
	}
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, s.url) == 0 })
	if got := metricValue(t, s.url, `weir_forwarder_records_total{name="orders"}`); got != 300 {
		t.Errorf("weir_forwarder_records_total %v, want 300", got)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, data, withAMQP)
	pushServices(t, s.url, "b", 200)
	waitCount(t, s.url, "SELECT count(*) FROM app", 500)
	msgs = append(msgs, readExchange(t, ch, "all", 200)...)
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, s.url) == 0 })
	if dups := checkForwarded(t, s.url, msgs); dups != 0 {
		t.Errorf("%d duplicates after a clean restart, want none: everything was committed", dups)
	}

	proxy.Cut()
	pushServices(t, s.url, "c", 300) // acknowledged while the broker is unreachable
	waitCount(t, s.url, "SELECT count(*) FROM app", 800)
	waitForward(t, "a forwarder error", func() bool { return metricValue(t, s.url, `weir_forwarder_errors_total{name="orders"}`) > 0 })
	if lag := forwardLag(t, s.url); lag <= 0 {
		t.Errorf("forwarder lag %v while the broker is unreachable, want above 0", lag)
	}
	proxy.Restore(t)
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, s.url) == 0 })
	q, err := ch.QueueDeclarePassive("all", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, readExchange(t, ch, "all", q.Messages)...) // everything published before the commit
	dups := checkForwarded(t, s.url, msgs)
	t.Logf("%d records published again after the broker came back (batches retried)", dups)
}

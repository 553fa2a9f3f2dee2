package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirlabs/weir/internal/brokertest"
)

// kafkaCluster starts an in-process Kafka on loopback with topic "logs"
// of four partitions.
func kafkaCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "logs"), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// produceKafka writes n messages "PREFIX-i" to topic logs and returns
// how many went to each partition.
func produceKafka(t *testing.T, brokers []string, prefix string, n int) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("logs"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s-%d", prefix, i),
			Headers: []kgo.RecordHeader{{Key: "app", Value: []byte("Checkout")}}}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	per := map[int32]int64{}
	for _, r := range recs {
		per[r.Partition]++
	}
	return per
}

// TestSourceKafka: a Kafka source configured in sources.kafka stores a
// topic's messages in the stream the header names, with the broker's
// attributes, and counts them on /metrics.
func TestSourceKafka(t *testing.T) {
	c := kafkaCluster(t)
	s := startServer(t, "", func(cfg *config) {
		fastCommit(cfg)
		cfg.Sources.Kafka = []kafkaSourceConfig{{Name: "orders", Brokers: c.ListenAddrs(), Topics: []string{"logs"}, Group: "weir",
			Stream: "kafka", StreamFrom: "kafka.header.app", SessionTimeout: 2 * time.Second, RebalanceTimeout: 4 * time.Second}}
	})
	produceKafka(t, c.ListenAddrs(), "m", 300)
	waitCountFor(t, s.url, "SELECT count(DISTINCT body) FROM checkout", 300, 30*time.Second)
	waitCount(t, s.url, "SELECT count(*) FROM checkout WHERE attributes['kafka.topic'] = 'logs' AND attributes['kafka.key'] LIKE 'k%' AND attributes['kafka.offset'] IS NOT NULL", 300)
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`weir_source_records_total{name="orders",source="kafka"} 300`, `weir_source_lag{name="orders",source="kafka"} 0`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// kafkaSourceYAML is a weir config consuming topic logs of brokers.
func kafkaSourceYAML(brokers []string) string {
	return crashConfig + fmt.Sprintf(`
log_level: debug
sources:
  kafka:
    - brokers: [%s]
      topics: [logs]
      group: weir
      stream: kafka
      batch_records: 50
      session_timeout: 2s
      rebalance_timeout: 4s
`, strings.Join(brokers, ", "))
}

// TestSourceKafkaCrash kills weir with SIGKILL while it consumes a topic.
// Every message whose offset the group had committed must be stored when
// weir comes back (checked before the source runs again), and once it
// runs again every message is stored: a crash loses nothing.
func TestSourceKafkaCrash(t *testing.T) {
	c := kafkaCluster(t)
	brokers := c.ListenAddrs()
	const n = 4000
	perPartition := produceKafka(t, brokers, "m", n)
	data := t.TempDir()
	dir := t.TempDir()
	withSource := filepath.Join(dir, "source.yaml")
	without := filepath.Join(dir, "plain.yaml")
	if err := os.WriteFile(withSource, []byte(kafkaSourceYAML(brokers)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(without, []byte(crashConfig), 0o644); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		p := startWeir(t, data, withSource)
		// Kill it once this process has stored some (it is in the group
		// then, not joining), with most still to read.
		deadline := time.Now().Add(30 * time.Second)
		for sourceRecords(t, p.url) < 400 {
			if time.Now().After(deadline) {
				t.Fatalf("weir stored too little before the kill:\n%s", p.logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited

		committed := committedOffsets(t, brokers, "weir")
		var total int64
		for _, o := range committed {
			total += o
		}
		t.Logf("%d of %d messages committed at the kill", total, n)
		// Without the source: what the group committed is stored.
		p = startWeir(t, data, without)
		for part, o := range committed {
			waitCountFor(t, p.url, fmt.Sprintf(`SELECT count(DISTINCT attributes['kafka.offset']) FROM kafka
				WHERE attributes['kafka.partition'] = '%d' AND CAST(attributes['kafka.offset'] AS BIGINT) < %d`, part, o), o, 30*time.Second)
		}
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.exited
	}
	p := startWeir(t, data, withSource)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("weir's log:\n%s", p.logs.String())
		}
	})
	waitCountFor(t, p.url, "SELECT count(DISTINCT body) FROM kafka", n, 60*time.Second)
	for part, want := range perPartition {
		waitCount(t, p.url, fmt.Sprintf("SELECT count(DISTINCT attributes['kafka.offset']) FROM kafka WHERE attributes['kafka.partition'] = '%d'", part), want)
	}
	t.Logf("%d records stored for %d messages (redelivered after the kills: the uncommitted batches)", sqlCount(t, p.url, "SELECT count(*) FROM kafka"), n)
}

// committedOffsets returns the group's committed offset of each
// partition of topic logs.
func committedOffsets(t *testing.T, brokers []string, group string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resps, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	resps.Each(func(r kadm.OffsetResponse) {
		if r.Err != nil {
			t.Fatalf("committed offset of %s/%d: %v", r.Topic, r.Partition, r.Err)
		}
		if r.Topic == "logs" {
			out[r.Partition] = r.At
		}
	})
	return out
}

// sqlCount runs a single-count query; a stream without records yet
// counts 0.
func sqlCount(t *testing.T, url, sql string) int64 {
	t.Helper()
	status, _, _ := postSQL(t, url, sql, "")
	if status != http.StatusOK {
		return 0
	}
	res := mustSQL(t, url, sql)
	if len(res.Rows) != 1 || len(res.Columns) != 1 {
		t.Fatalf("%s: %+v", sql, res)
	}
	var v int64
	fmt.Sscan(fmt.Sprint(res.Rows[0][res.Columns[0].Name]), &v)
	return v
}

// TestSourceAMQP: a RabbitMQ source configured in sources.amqp stores a
// queue's messages in the tenant's stream; a message no record can hold
// goes to the queue's dead-letter exchange.
func TestSourceAMQP(t *testing.T) {
	url := brokertest.StartRabbit(t)
	ch := brokertest.Declare(t, url, "logs")
	s := startServer(t, "", func(cfg *config) {
		fastCommit(cfg)
		cfg.Sources.AMQP = []amqpSourceConfig{{URL: url, Queue: "logs", Stream: "rabbit", BatchDelay: 20 * time.Millisecond}}
	})
	for i := range 300 {
		brokertest.Publish(t, ch, "logs", amqp091.Publishing{Body: fmt.Appendf(nil, `{"msg":"m-%d","level":"info"}`, i)})
	}
	brokertest.Publish(t, ch, "logs", amqp091.Publishing{Body: []byte("\xff not text")})
	waitCountFor(t, s.url, "SELECT count(DISTINCT body) FROM rabbit WHERE attributes['amqp.routing_key'] = 'logs'", 300, 30*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for brokertest.QueueDepth(t, ch, "logs_dead") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the poison message did not reach the dead-letter queue")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSourceAMQPCrash kills weir with SIGKILL while it consumes a queue:
// every message it had acknowledged is stored when it comes back (checked
// before the source runs again, against the messages still in the
// queue), and once it runs again every message is.
func TestSourceAMQPCrash(t *testing.T) {
	url := brokertest.StartRabbit(t)
	ch := brokertest.Declare(t, url, "logs")
	const n = 3000
	for i := range n {
		brokertest.Publish(t, ch, "logs", amqp091.Publishing{Body: fmt.Appendf(nil, "m-%d", i)})
	}
	dir := t.TempDir()
	withSource := filepath.Join(dir, "source.yaml")
	without := filepath.Join(dir, "plain.yaml")
	conf := crashConfig + fmt.Sprintf("sources:\n  amqp:\n    - url: %q\n      queue: logs\n      stream: rabbit\n      prefetch: 100\n      batch_delay: 10ms\n", url)
	if err := os.WriteFile(withSource, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(without, []byte(crashConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startWeir(t, data, withSource)
	deadline := time.Now().Add(30 * time.Second)
	for sqlCount(t, p.url, "SELECT count(*) FROM rabbit") < 600 {
		if time.Now().After(deadline) {
			t.Fatalf("weir stored too little before the kill:\n%s", p.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	// The broker requeues what weir had not acknowledged once it sees
	// the connection gone; every other message was acknowledged.
	ready := map[string]bool{}
	deadline = time.Now().Add(30 * time.Second)
	for {
		d, ok, err := ch.Get("logs", false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			ready[string(d.Body)] = true
			continue
		}
		if len(ready) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := ch.Nack(0, true, true); err != nil {
		t.Fatal(err)
	}
	acked := n - len(ready)
	t.Logf("%d of %d messages acknowledged at the kill", acked, n)
	p = startWeir(t, data, without)
	// Records acknowledged durable are in the write-ahead log: they are
	// visible once it is replayed.
	var lost []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		stored := map[string]bool{}
		for _, row := range mustSQL(t, p.url, "SELECT DISTINCT body FROM rabbit").Rows {
			stored[fmt.Sprint(row["body"])] = true
		}
		lost = lost[:0]
		for i := range n {
			if b := fmt.Sprintf("m-%d", i); !ready[b] && !stored[b] {
				lost = append(lost, b)
			}
		}
		if len(lost) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost, such as %v", len(lost), lost[:min(len(lost), 10)])
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p = startWeir(t, data, withSource)
	waitCountFor(t, p.url, "SELECT count(DISTINCT body) FROM rabbit", n, 60*time.Second)
}

// TestSourceSQS: an SQS source configured in sources.sqs stores a
// queue's messages and deletes them.
func TestSourceSQS(t *testing.T) {
	g := brokertest.StartGoaws(t, "logs", 30, 5)
	s := startServer(t, "", func(cfg *config) {
		fastCommit(cfg)
		cfg.Sources.SQS = []sqsSourceConfig{{QueueURL: g.QueueURL("logs"), Endpoint: g.Endpoint, Region: "us-east-1",
			AccessKeyID: "test", SecretAccessKey: "test", WaitTime: time.Second, Stream: "queue"}}
	})
	for i := range 200 {
		g.Send(t, "logs", fmt.Sprintf("m-%d", i), map[string]string{"team": "core"})
	}
	waitCountFor(t, s.url, "SELECT count(DISTINCT body) FROM queue WHERE attributes['sqs.attr.team'] = 'core'", 200, 30*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, f := g.Depth(t, "logs"); v == 0 && f == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the messages were not deleted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSourceSQSCrash kills weir with SIGKILL while it consumes a queue:
// every message it had deleted is stored when it comes back (checked
// before the source runs again, against the messages left in the
// queue), and once it runs again every message is.
func TestSourceSQSCrash(t *testing.T) {
	g := brokertest.StartGoaws(t, "logs", 3, 100)
	const n = 2000
	for i := range n {
		g.Send(t, "logs", fmt.Sprintf("m-%d", i), nil)
	}
	dir := t.TempDir()
	withSource := filepath.Join(dir, "source.yaml")
	without := filepath.Join(dir, "plain.yaml")
	conf := crashConfig + fmt.Sprintf(`sources:
  sqs:
    - queue_url: %q
      endpoint: %q
      region: us-east-1
      access_key_id: test
      secret_access_key: test
      wait_time: 1s
      visibility_timeout: 3s
      receivers: 4
      stream: queue
`, g.QueueURL("logs"), g.Endpoint)
	if err := os.WriteFile(withSource, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(without, []byte(crashConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startWeir(t, data, withSource)
	deadline := time.Now().Add(30 * time.Second)
	for sqlCount(t, p.url, "SELECT count(*) FROM queue") < 300 {
		if time.Now().After(deadline) {
			t.Fatalf("weir stored too little before the kill:\n%s", p.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	// What weir received but had not deleted becomes visible again
	// after the visibility timeout; everything else was deleted.
	deadline = time.Now().Add(30 * time.Second)
	visible := 0
	for {
		v, f := g.Depth(t, "logs")
		if f == 0 {
			visible = v
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still in flight", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
	left := map[string]bool{}
	for len(left) < visible {
		for _, b := range g.Receive(t, "logs") {
			left[b] = true
		}
	}
	t.Logf("%d of %d messages deleted at the kill", n-visible, n)
	p = startWeir(t, data, without)
	var lost []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		stored := map[string]bool{}
		for _, row := range mustSQL(t, p.url, "SELECT DISTINCT body FROM queue").Rows {
			stored[fmt.Sprint(row["body"])] = true
		}
		lost = lost[:0]
		for i := range n {
			if b := fmt.Sprintf("m-%d", i); !left[b] && !stored[b] {
				lost = append(lost, b)
			}
		}
		if len(lost) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(lost) > 0 {
		t.Fatalf("%d deleted messages lost, such as %v", len(lost), lost[:min(len(lost), 10)])
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p = startWeir(t, data, withSource)
	waitCountFor(t, p.url, "SELECT count(DISTINCT body) FROM queue", n, 60*time.Second)
}

// TestSourcesConfig: sources read from the file keep the packages'
// defaults for keys left out, and a bad value fails at start-up with the
// source named.
func TestSourcesConfig(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, `
sources:
  kafka:
    - brokers: [k:9092]
      topics: [t]
      group: g
      ack_level: committed
  amqp:
    - url: amqp://guest:guest@r:5672/
      queue: q
  sqs:
    - queue_url: https://sqs.eu-west-1.amazonaws.com/1/q
      tenant: acme
`)
	c := defaultConfig()
	if err := loadConfigFile(&c, path); err != nil {
		t.Fatal(err)
	}
	if err := c.Sources.validate(); err != nil {
		t.Fatal(err)
	}
	k, _ := c.Sources.Kafka[0].config()
	a, _ := c.Sources.AMQP[0].config()
	q, _ := c.Sources.SQS[0].config()
	if k.Level != levels["committed"] || k.Stream != "kafka" || k.BatchRecords != 1000 || k.Name != "" {
		t.Errorf("kafka: %+v", k)
	}
	if a.Prefetch != 500 || a.Stream != "amqp" || a.Level != levels["durable"] {
		t.Errorf("amqp: %+v", a)
	}
	if q.Tenant != "acme" || q.Receivers != 2 || q.WaitTime != 20*time.Second {
		t.Errorf("sqs: %+v", q)
	}
	for bad, want := range map[string]string{
		"sources:\n  kafka:\n    - brokers: [k:9092]\n      topics: [t]\n      group: g\n      start: middle\n": "sources.kafka[0]",
		"sources:\n  amqp:\n    - url: http://r/\n      queue: q\n":                                             "sources.amqp[0]",
		"sources:\n  sqs:\n    - queue_url: https://h/1/q\n      ack_level: sometimes\n":                        "sources.sqs[0]",
	} {
		c := defaultConfig()
		if err := loadConfigFile(&c, writeConfig(t, dir, bad)); err != nil {
			t.Fatal(err)
		}
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: validate = %v, want an error naming %s", bad, err, want)
		}
	}
}

// sourceRecords returns the records weir's sources handed over, from
// its /metrics.
func sourceRecords(t *testing.T, url string) int64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var sum int64
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "weir_source_records_total{"); ok {
			var v int64
			fmt.Sscan(rest[strings.Index(rest, "}")+1:], &v)
			sum += v
		}
	}
	return sum
}

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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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

	for cycle := range 2 {
		p := startWeir(t, data, withSource)
		// Kill it once it has stored some, with most still to read.
		deadline := time.Now().Add(30 * time.Second)
		for sqlCount(t, p.url, "SELECT count(*) FROM kafka") < int64(400*(cycle+1)) {
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
		if total == 0 || total >= n {
			t.Logf("cycle %d: %d of %d messages committed at the kill", cycle, total, n)
		}
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

package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest/internal/ingesttest"
	"github.com/weirlabs/weir/ingest/kafka"
	"github.com/weirlabs/weir/internal/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cluster starts an in-process Kafka on loopback with topic "logs" of
// four partitions; opts are added to the test's own.
func cluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, "logs"),
		kfake.GroupMinSessionTimeout(500 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testConfig is a source on brokers with short group timeouts.
func testConfig(brokers []string, group string) kafka.Config {
	cfg := kafka.DefaultConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = brokers, []string{"logs"}, group
	cfg.SessionTimeout, cfg.RebalanceTimeout = 2*time.Second, 5*time.Second
	cfg.BatchRecords = 100
	return cfg
}

func start(t *testing.T, cfg kafka.Config, sub kafka.Submitter) *kafka.Source {
	t.Helper()
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("source %s log:\n%s", cfg.Group, logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := kafka.New(cfg, kafka.Deps{Submitter: sub, Log: log, Opts: []kgo.Opt{kgo.HeartbeatInterval(200 * time.Millisecond),
		kgo.WithLogger(kgo.BasicLogger(&logs, kgo.LogLevelInfo, nil)),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// produce writes n messages "PREFIX-i" to topic logs, spread over its
// partitions by key.
func produce(t *testing.T, brokers []string, prefix string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("logs"),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after patience.
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

// missing returns the bodies PREFIX-0..n-1 that no recorder took.
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

func waitAll(t *testing.T, prefix string, n int, recs ...*ingesttest.Recorder) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("all %d %s messages", n, prefix), func() bool { return len(missing(prefix, n, recs...)) == 0 })
}

func TestSourceKafkaRecords(t *testing.T) {
	c := cluster(t)
	brokers := c.ListenAddrs()
	var rec ingesttest.Recorder
	cfg := testConfig(brokers, "g")
	cfg.Tenant, cfg.StreamFrom, cfg.Level = "acme", "kafka.header.stream", buffer.Committed
	cfg.MaxMessageBytes = 64 << 10
	s := start(t, cfg, &rec)

	// One partition and one produce batch: a poll whose every record is
	// refused would be skipped (Kafka cannot take it back), so the bad
	// values travel with good ones.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("logs"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	msgs := []*kgo.Record{
		{Key: []byte("user-1"), Value: []byte("plain text"), Headers: []kgo.RecordHeader{{Key: "stream", Value: []byte("Checkout-API")}}},
		{Value: []byte(`{"msg":"json body","level":"error","user":{"id":7},"time":"2026-01-02T03:04:05Z"}`)},
		{Value: []byte(`{"msg":` + strings.Repeat("[", 40) + `}`)},
		{Value: []byte(strings.Repeat("x", 100<<10))},
	}
	if err := cl.ProduceSync(context.Background(), msgs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "four records", func() bool { return rec.Len() == 4 })
	byBody := map[string]ingesttest.Submitted{}
	for _, r := range rec.All() {
		if r.Tenant != "acme" || r.Level != buffer.Committed {
			t.Errorf("record %q: tenant %q level %v; want acme, Committed", r.Record.Body, r.Tenant, r.Level)
		}
		byBody[r.Record.Body[:min(len(r.Record.Body), 10)]] = r
	}
	plain := byBody["plain text"]
	if plain.Stream != "checkout_api" || plain.Reject != nil {
		t.Errorf("plain: stream %q reject %v; want checkout_api from the header", plain.Stream, plain.Reject)
	}
	for k, want := range map[string]string{"kafka.key": "user-1", "kafka.topic": "logs", "kafka.header.stream": "Checkout-API"} {
		if v, _ := ingesttest.Attr(plain.Record.Attributes, k); v != want {
			t.Errorf("plain: %s = %q, want %q", k, v, want)
		}
	}
	for _, k := range []string{"kafka.partition", "kafka.offset"} {
		if _, ok := ingesttest.Attr(plain.Record.Attributes, k); !ok {
			t.Errorf("plain: no %s", k)
		}
	}
	js := byBody["json body"]
	if js.Stream != "kafka" || js.Record.SeverityNumber != record.ParseSeverity("error") || js.Record.Timestamp != time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano() {
		t.Errorf("json: %+v", js)
	}
	if v, _ := ingesttest.Attr(js.Record.Attributes, "user.id"); v != "7" {
		t.Errorf("json: user.id = %q, want 7", v)
	}
	if deep := byBody[`{"msg":[[[`]; deep.Reject == nil {
		t.Errorf("a value nested 41 deep was not dead-lettered: %+v", deep)
	}
	if big := byBody["xxxxxxxxxx"]; big.Reject == nil || len(big.Record.Body) != cfg.MaxMessageBytes {
		t.Errorf("an oversized value: reject %v, body of %d bytes", big.Reject, len(big.Record.Body))
	}
	waitFor(t, 10*time.Second, "lag 0", func() bool { return s.Stats().Lag == 0 })
	if st := s.Stats(); st.Messages != 4 || st.Records != 4 || st.DeadLettered != 2 {
		t.Errorf("stats %+v; want 4 messages and records, 2 dead-lettered", st)
	}
}

// TestSourceKafkaRebalance runs two sources in one group, then stops one:
// the other takes its partitions and nothing is lost.
func TestSourceKafkaRebalance(t *testing.T) {
	c := cluster(t)
	brokers := c.ListenAddrs()
	var a, b ingesttest.Recorder
	sa := start(t, testConfig(brokers, "g"), &a)
	sb := start(t, testConfig(brokers, "g"), &b)
	waitFor(t, 30*time.Second, "the group to share the partitions", func() bool {
		return sa.Stats().Partitions == 2 && sb.Stats().Partitions == 2
	})
	produce(t, brokers, "one", 400)
	waitAll(t, "one", 400, &a, &b)
	if a.Len() == 0 || b.Len() == 0 {
		t.Fatalf("the group did not share the partitions: %d and %d records", a.Len(), b.Len())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sa.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	before := b.Len()
	produce(t, brokers, "two", 400)
	waitFor(t, 30*time.Second, "the remaining member to take every partition", func() bool { return sb.Stats().Partitions == 4 })
	waitAll(t, "two", 400, &a, &b)
	if got := b.Len() - before; got != 400 {
		t.Errorf("after the rebalance the remaining member took %d records, want all 400", got)
	}
}

// TestSourceKafkaBrokerRestart stops the broker mid-stream and starts it
// again on the same port and data: the source reconnects and resumes.
func TestSourceKafkaBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	c := cluster(t, kfake.Ports(port), kfake.DataDir(dir))
	brokers := c.ListenAddrs()
	var rec ingesttest.Recorder
	s := start(t, testConfig(brokers, "g"), &rec)
	produce(t, brokers, "before", 300)
	waitAll(t, "before", 300, &rec)
	c.Close()
	c = cluster(t, kfake.Ports(port), kfake.DataDir(dir))
	produce(t, c.ListenAddrs(), "after", 300)
	waitAll(t, "after", 300, &rec)
	if st := s.Stats(); st.Dropped != 0 {
		t.Errorf("stats %+v: records dropped", st)
	}
}

// TestSourceKafkaCrash stops a source abruptly while a batch is being
// submitted: nothing it had not committed is lost, since the next member
// of the group reads it again.
func TestSourceKafkaCrash(t *testing.T) {
	c := cluster(t)
	brokers := c.ListenAddrs()
	stall := make(chan struct{})
	crashed := &ingesttest.Recorder{}
	crashed.Fail = func(string, []record.Record) error {
		if crashed.Len() >= 250 {
			<-stall // the submit hangs until the source "dies"
			return connect.NewError(connect.CodeUnavailable, errors.New("gone"))
		}
		return nil
	}
	cfg := testConfig(brokers, "g")
	cfg.BatchRecords = 50
	s1 := start(t, cfg, crashed)
	produce(t, brokers, "m", 1000)
	waitFor(t, 30*time.Second, "the first member to stall", func() bool { return crashed.Len() >= 250 })
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	close(stall)
	if err := s1.Shutdown(dead); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended context = %v, want context.Canceled", err)
	}
	var next ingesttest.Recorder
	start(t, cfg, &next)
	waitAll(t, "m", 1000, crashed, &next)
	if dup := crashed.Len() + next.Len() - 1000; dup > cfg.BatchRecords*4 {
		t.Errorf("%d records read twice; at most the uncommitted batches should be", dup)
	}
}

// TestSourceKafkaBackpressure: refusals for backpressure are retried
// until the pipeline takes the batch; a permanent refusal skips it.
func TestSourceKafkaBackpressure(t *testing.T) {
	c := cluster(t)
	brokers := c.ListenAddrs()
	refusals := 0
	rec := &ingesttest.Recorder{}
	rec.Fail = func(_ string, recs []record.Record) error {
		for _, r := range recs {
			if r.Body == "poison" {
				return connect.NewError(connect.CodeInvalidArgument, errors.New("bad"))
			}
		}
		if refusals < 3 {
			refusals++
			return connect.NewError(connect.CodeResourceExhausted, errors.New("full"))
		}
		return nil
	}
	cfg := testConfig(brokers, "g")
	s := start(t, cfg, rec)
	produce(t, brokers, "m", 100)
	waitAll(t, "m", 100, rec)
	if st := s.Stats(); st.Retries < 3 {
		t.Errorf("stats %+v: want at least 3 retries", st)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("logs"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("poison")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the poison batch to be dropped", func() bool { return s.Stats().Dropped == 1 })
	produce(t, brokers, "after", 50)
	waitAll(t, "after", 50, rec)
}

func TestSourceKafkaShutdownWithoutStart(t *testing.T) {
	s, err := kafka.New(testConfig([]string{"127.0.0.1:1"}, "g"), kafka.Deps{Submitter: &ingesttest.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSourceKafkaConfig(t *testing.T) {
	ok := testConfig([]string{"h:9092"}, "g")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*kafka.Config){
		"no brokers": func(c *kafka.Config) { c.Brokers = nil },
		"no topics":  func(c *kafka.Config) { c.Topics = nil },
		"no group":   func(c *kafka.Config) { c.Group = "" },
		"start":      func(c *kafka.Config) { c.Start = "middle" },
		"batch":      func(c *kafka.Config) { c.BatchRecords = 0 },
		"size":       func(c *kafka.Config) { c.MaxMessageBytes = 10 },
		"stream":     func(c *kafka.Config) { c.Stream = "Bad-Name" },
		"tenant":     func(c *kafka.Config) { c.Tenant = "9" },
		"session":    func(c *kafka.Config) { c.SessionTimeout = 0 },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate passed", name)
		}
	}
}

// TestSourceKafkaReal runs against the Kafka (or Redpanda) at
// WEIR_KAFKA_BROKERS, whose broker must allow topic auto-creation or
// have topic weir_test_logs.
func TestSourceKafkaReal(t *testing.T) {
	env := os.Getenv("WEIR_KAFKA_BROKERS")
	if env == "" {
		t.Skip("WEIR_KAFKA_BROKERS is not set: no real Kafka to test against")
	}
	brokers := strings.Split(env, ",")
	topic := "weir_test_logs"
	prefix := fmt.Sprintf("real%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 200 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", prefix, i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var rec ingesttest.Recorder
	cfg := testConfig(brokers, prefix)
	cfg.Topics, cfg.SessionTimeout = []string{topic}, 10*time.Second
	start(t, cfg, &rec)
	waitAll(t, prefix, 200, &rec)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSourceKafkaFaults: failed fetches and offset commits (kfake's
// fault injection) cost retries, not records.
func TestSourceKafkaFaults(t *testing.T) {
	c := cluster(t)
	brokers := c.ListenAddrs()
	fetches := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: "logs", Err: kerr.NotLeaderForPartition, Count: 5})
	commits := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.CoordinatorLoadInProgress, Count: 3})
	var rec ingesttest.Recorder
	cfg := testConfig(brokers, "g")
	cfg.BatchRecords = 20
	s := start(t, cfg, &rec)
	produce(t, brokers, "m", 300)
	waitAll(t, "m", 300, &rec)
	if fetches.Hits() == 0 || commits.Hits() == 0 {
		t.Errorf("faults answered %d fetches and %d commits; want some of each", fetches.Hits(), commits.Hits())
	}
	if st := s.Stats(); st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

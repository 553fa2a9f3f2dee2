package forward_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/weirlabs/weir/internal/brokertest"
	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/forward"
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

// lake is an append-only stream: every record appended is visible at
// once, so the marks' Committed and Next are both its length.
type lake struct {
	mu    sync.Mutex
	parts [][]record.Record
}

func newLake(parts int) *lake { return &lake{parts: make([][]record.Record, parts)} }

// add appends n records to partition p of service svc, with bodies
// "PREFIX-i".
func (l *lake) add(p int32, svc, prefix string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range n {
		l.parts[p] = append(l.parts[p], record.Record{
			Timestamp: time.Date(2026, 12, 4, 10, 0, 0, i+1, time.UTC).UnixNano(), SeverityNumber: 9, SeverityText: "INFO",
			Body:       fmt.Sprintf("%s-%d", prefix, i),
			Attributes: []record.KV{{Key: "i", Value: strconv.Itoa(i)}},
			Resource:   []record.KV{{Key: "service.name", Value: svc}},
			TraceID:    [16]byte{1, 2}, SpanID: [8]byte{3},
		})
	}
}

func (l *lake) Marks(string, string) []consume.Mark {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]consume.Mark, len(l.parts))
	for i, p := range l.parts {
		out[i] = consume.Mark{Committed: int64(len(p)), Next: int64(len(p))}
	}
	return out
}

func (l *lake) Sync(context.Context) error { return nil }

func (l *lake) ScanPartition(_ context.Context, _, _ string, part int32, after int64, limit int, fn func(consume.Position, record.Record) error) (int, error) {
	l.mu.Lock()
	recs := slices.Clone(l.parts[part][min(after+1, int64(len(l.parts[part]))):])
	l.mu.Unlock()
	recs = recs[:min(len(recs), limit)]
	for i, r := range recs {
		if err := fn(consume.Position{Partition: part, Offset: after + 1 + int64(i)}, r); err != nil {
			return i, err
		}
	}
	return len(recs), nil
}

func (l *lake) OffsetsSince(context.Context, string, string, time.Time) (map[int32]int64, error) {
	return nil, nil
}

func newManager(t *testing.T, dir string, l *lake) *consume.Manager {
	t.Helper()
	cfg := consume.DefaultConfig()
	cfg.Dir, cfg.PollInterval, cfg.MaxBatchRecords = dir, 5*time.Millisecond, 100
	m, err := consume.New(cfg, l, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func cluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, "out")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func testConfig(brokers []string) forward.Config {
	cfg := forward.DefaultConfig()
	cfg.Name, cfg.Tenant, cfg.Stream, cfg.Brokers, cfg.Topic = "out", "default", "app", brokers, "out"
	cfg.BatchRecords, cfg.MinBackoff, cfg.MaxBackoff, cfg.ProduceTimeout = 50, 10*time.Millisecond, 200*time.Millisecond, 2*time.Second
	return cfg
}

func start(t *testing.T, cfg forward.Config, m *consume.Manager) *forward.Forwarder {
	t.Helper()
	f, err := forward.New(cfg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, f) })
	return f
}

func stop(t *testing.T, f *forward.Forwarder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// message is a forwarded record as a Kafka consumer sees it.
type message struct {
	forward.Message
	key               string
	kafkaPart         int32
	headerPart, hdOff string
}

// readTopic reads topic out from the start until it holds want messages
// or patience runs out.
func readTopic(t *testing.T, brokers []string, want int, patience time.Duration) []message {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var out []message
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d messages of %d", len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			m := message{key: string(r.Key), kafkaPart: r.Partition}
			if err := json.Unmarshal(r.Value, &m.Message); err != nil {
				t.Fatalf("message %q: %v", r.Value, err)
			}
			for _, h := range r.Headers {
				switch h.Key {
				case forward.HeaderPartition:
					m.headerPart = string(h.Value)
				case forward.HeaderOffset:
					m.hdOff = string(h.Value)
				}
			}
			out = append(out, m)
		})
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lag returns the group's lag over every partition.
func lag(m *consume.Manager) int64 {
	var n int64
	for _, l := range m.Lags() {
		if l.Group == "forward.out" {
			n += l.Records
		}
	}
	return n
}

// TestForward: every record reaches the topic once, as JSON with its
// position, keyed by service and in offset order per key; after a
// restart over the same offsets directory the forwarder resumes from its
// commit.
func TestForward(t *testing.T) {
	c := cluster(t)
	brokers := c.ListenAddrs()
	l := newLake(2)
	l.add(0, "api", "a", 300)
	l.add(1, "web", "w", 200)
	dir := t.TempDir()
	m := newManager(t, dir, l)
	f := start(t, testConfig(brokers), m)
	msgs := readTopic(t, brokers, 500, 30*time.Second)
	checkOrder(t, msgs)
	waitFor(t, "the commit of every record", func() bool { return lag(m) == 0 })
	if st := f.Stats(); st.Records != 500 || st.Errors != 0 {
		t.Errorf("stats %+v, want 500 records and no errors", st)
	}
	first := msgs[slices.IndexFunc(msgs, func(m message) bool { return m.Body == "a-0" })]
	want := forward.Message{Timestamp: "2026-12-04T10:00:00.000000001Z", SeverityText: "INFO", SeverityNumber: 9, Body: "a-0", ServiceName: "api",
		Attributes: map[string]string{"i": "0"}, Resource: map[string]string{"service.name": "api"},
		TraceID: "01020000000000000000000000000000", SpanID: "0300000000000000", Tenant: "default", Stream: "app"}
	if fmt.Sprint(first.Message) != fmt.Sprint(want) || first.key != "api" || first.headerPart != "0" || first.hdOff != "0" {
		t.Errorf("first message %+v key %q headers %s:%s, want %+v key api headers 0:0", first.Message, first.key, first.headerPart, first.hdOff, want)
	}

	stop(t, f)
	l.add(0, "api", "b", 100)
	m = newManager(t, dir, l) // the commits are read back from the files
	start(t, testConfig(brokers), m)
	msgs = readTopic(t, brokers, 600, 30*time.Second)
	checkOrder(t, msgs)
	if len(msgs) != 600 {
		t.Errorf("%d messages after the restart, want 600: nothing is forwarded twice after a clean stop", len(msgs))
	}
}

// checkOrder checks that every record is in msgs, and that within a
// Kafka partition the records of a key follow their offsets.
func checkOrder(t *testing.T, msgs []message) {
	t.Helper()
	type key struct {
		kafka int32
		svc   string
	}
	last := map[key]int64{}
	for _, m := range msgs {
		k := key{m.kafkaPart, m.key}
		if o, ok := last[k]; ok && m.Offset <= o {
			t.Fatalf("key %q in kafka partition %d: offset %d after %d", m.key, m.kafkaPart, m.Offset, o)
		}
		last[k] = m.Offset
		if m.key != m.ServiceName || m.headerPart != strconv.Itoa(int(m.Partition)) || m.hdOff != strconv.FormatInt(m.Offset, 10) {
			t.Fatalf("message %+v: key %q, headers %s:%s disagree with the value", m.Message, m.key, m.headerPart, m.hdOff)
		}
	}
}

// TestForwardKafkaDown: while Kafka is down the forwarder only lags;
// once it is back every record arrives.
func TestForwardKafkaDown(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	c := cluster(t, kfake.Ports(port), kfake.DataDir(dir))
	brokers := c.ListenAddrs()
	l := newLake(2)
	l.add(0, "api", "a", 100)
	m := newManager(t, t.TempDir(), l)
	f := start(t, testConfig(brokers), m)
	readTopic(t, brokers, 100, 30*time.Second)
	waitFor(t, "the first commit", func() bool { return lag(m) == 0 })

	c.Close()
	l.add(1, "web", "w", 200)
	waitFor(t, "a failed produce", func() bool { return f.Stats().Errors > 0 })
	if got := lag(m); got != 200 {
		t.Errorf("lag %d while Kafka is down, want 200", got)
	}
	c = cluster(t, kfake.Ports(port), kfake.DataDir(dir))
	msgs := readTopic(t, c.ListenAddrs(), 300, 60*time.Second)
	waitFor(t, "the commit of every record", func() bool { return lag(m) == 0 })
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Body] = true
	}
	if len(seen) != 300 {
		t.Errorf("%d distinct records in the topic, want 300", len(seen))
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	f, err := forward.New(testConfig([]string{"127.0.0.1:1"}), newManager(t, t.TempDir(), newLake(1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := testConfig([]string{"k:9092"})
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*forward.Config){
		"name":    func(c *forward.Config) { c.Name = "" },
		"tenant":  func(c *forward.Config) { c.Tenant = "" },
		"stream":  func(c *forward.Config) { c.Stream = "" },
		"brokers": func(c *forward.Config) { c.Brokers = nil },
		"topic":   func(c *forward.Config) { c.Topic = "" },
		"batch":   func(c *forward.Config) { c.BatchRecords = 0 },
		"timeout": func(c *forward.Config) { c.ProduceTimeout = 0 },
		"backoff": func(c *forward.Config) { c.MaxBackoff = c.MinBackoff / 2 },
	} {
		c := ok
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
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

package buffer

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirlabs/weir/internal/record"
)

// The tests are not parallel: several check for leaked goroutines, which
// other tests' goroutines would confuse.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func yield() { runtime.Gosched() }

// rec returns a record of service svc whose body is its id, "svc/seq".
func rec(svc string, seq int) record.Record {
	return record.Record{
		Body:     svc + "/" + strconv.Itoa(seq),
		Resource: []record.KV{{Key: "service.name", Value: svc}},
	}
}

func batchOf(stream string, recs ...record.Record) *record.Batch {
	return record.NewBatch("acme", stream, recs)
}

// recsOf returns n records of svc numbered from seq.
func recsOf(svc string, seq, n int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		out[i] = rec(svc, seq+i)
	}
	return out
}

// servicesOnDistinctPartitions returns k service names that hash to k
// different partitions of n.
func servicesOnDistinctPartitions(t *testing.T, k, n int) []string {
	t.Helper()
	used := map[int32]bool{}
	var out []string
	for i := 0; len(out) < k; i++ {
		if i > 10000 {
			t.Fatalf("no %d services on distinct partitions of %d", k, n)
		}
		name := fmt.Sprintf("svc%d", i)
		if p := partitionOf(name, n); !used[p] {
			used[p] = true
			out = append(out, name)
		}
	}
	return out
}

// harness records what the buffer hands its consumers.
type harness struct {
	mu         sync.Mutex
	got        map[Key][]*record.Batch
	closed     map[Key]int
	ticks      map[Key][]time.Time
	created    map[Key]int
	violations []string
	gates      map[int32]chan struct{} // Consume on partition p waits for gates[p] to close
	consumeErr error
	tickErr    error
	delay      time.Duration // Consume sleeps this long
	onConsume  func(*record.Batch)
}

func newHarness() *harness {
	return &harness{
		got:     map[Key][]*record.Batch{},
		closed:  map[Key]int{},
		ticks:   map[Key][]time.Time{},
		created: map[Key]int{},
		gates:   map[int32]chan struct{}{},
	}
}

// gate makes Consume on partition p block until open(p) (or until the
// consumer's ctx is canceled). Call it before pushing.
func (h *harness) gate(p int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gates[p] = make(chan struct{})
}

func (h *harness) open(p int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.gates[p])
}

func (h *harness) deps() Deps {
	return Deps{NewConsumer: func(k Key) Consumer {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.created[k]++
		return &testConsumer{key: k, h: h}
	}}
}

type testConsumer struct {
	key Key
	h   *harness
}

func (c *testConsumer) Consume(ctx context.Context, b *record.Batch) error {
	h := c.h
	h.mu.Lock()
	gate := h.gates[c.key.Partition]
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	if h.delay > 0 {
		time.Sleep(h.delay)
	}
	if h.onConsume != nil {
		h.onConsume(b)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed[c.key] > 0 {
		h.violations = append(h.violations, fmt.Sprintf("%v: Consume after Close", c.key))
	}
	if b.Tenant != c.key.Tenant || b.Stream != c.key.Stream || b.Partition != c.key.Partition {
		h.violations = append(h.violations, fmt.Sprintf("%v: got batch of %s/%s partition %d", c.key, b.Tenant, b.Stream, b.Partition))
	}
	h.got[c.key] = append(h.got[c.key], b)
	return h.consumeErr
}

func (c *testConsumer) Tick(ctx context.Context, now time.Time) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed[c.key] > 0 {
		h.violations = append(h.violations, fmt.Sprintf("%v: Tick after Close", c.key))
	}
	h.ticks[c.key] = append(h.ticks[c.key], now)
	return h.tickErr
}

func (c *testConsumer) Close(ctx context.Context) error {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed[c.key]++
	return nil
}

// bodies returns the ids of every consumed record, sorted.
func (h *harness) bodies() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, bs := range h.got {
		for _, b := range bs {
			for i := range b.Records {
				out = append(out, b.Records[i].Body)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (h *harness) batches(k Key) []*record.Batch {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*record.Batch(nil), h.got[k]...)
}

// check fails t on any contract violation seen by the consumers and on
// any consumer not closed exactly once.
func (h *harness) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.violations {
		t.Error(v)
	}
	for k, n := range h.created {
		if n != 1 {
			t.Errorf("%v: %d consumers created", k, n)
		}
		if c := h.closed[k]; c != 1 {
			t.Errorf("%v: Close called %d times, want 1", k, c)
		}
	}
}

// ids returns the sorted ids of recs.
func ids(recs ...[]record.Record) []string {
	var out []string
	for _, rs := range recs {
		for i := range rs {
			out = append(out, rs[i].Body)
		}
	}
	sort.Strings(out)
	return out
}

func mustNew(t *testing.T, cfg Config, deps Deps) *Buffer {
	t.Helper()
	b, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustShutdown(t *testing.T, b *Buffer) {
	t.Helper()
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// waitUntil polls cond until it holds, failing t if it does not within
// ten seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		<-tick.C
	}
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.TickInterval = time.Second
	return cfg
}

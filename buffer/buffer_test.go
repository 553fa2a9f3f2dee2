package buffer

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/weirlabs/weir/internal/record"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative tenant streams", func(c *Config) { c.MaxTenantStreams = -1 }, "max tenant streams -1"},
		{"zero partitions", func(c *Config) { c.Partitions = 0 }, "partitions 0"},
		{"too many partitions", func(c *Config) { c.Partitions = maxPartitions + 1 }, "partitions"},
		{"zero slots", func(c *Config) { c.RingSlots = 0 }, "ring slots 0"},
		{"zero records", func(c *Config) { c.MaxRecords = 0 }, "max records 0"},
		{"negative bytes", func(c *Config) { c.MaxBytes = -1 }, "max bytes -1"},
		{"zero tick", func(c *Config) { c.TickInterval = 0 }, "tick interval 0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error mentioning %q", err, tc.want)
			}
			if _, err := New(cfg, newHarness().deps()); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	if _, err := New(DefaultConfig(), Deps{}); err == nil {
		t.Fatal("New accepted Deps without NewConsumer")
	}
}

func TestPartitionOfStable(t *testing.T) {
	// The partition of a key must never change across releases: offsets
	// stored downstream depend on it.
	for _, name := range []string{"", "checkout", "payments-api", "ü"} {
		h := fnv.New32a()
		h.Write([]byte(name))
		for _, n := range []int{1, 3, 4, 16} {
			if got, want := partitionOf(name, n), int32(h.Sum32()%uint32(n)); got != want {
				t.Errorf("partitionOf(%q, %d) = %d, want FNV-1a %d", name, n, got, want)
			}
		}
	}
	if got := partitionOf("checkout", 16); got != 9 {
		t.Errorf("partitionOf(checkout, 16) = %d, want 9", got)
	}
}

func TestPlanArrange(t *testing.T) {
	svcs := servicesOnDistinctPartitions(t, 3, 4)
	a, b, c := svcs[0], svcs[1], svcs[2]
	for _, tc := range []struct {
		name    string
		recs    []record.Record
		scratch int
	}{
		{"interleaved", []record.Record{rec(a, 0), rec(b, 0), rec(a, 1), rec(c, 0), rec(b, 1), rec(a, 2)}, 64},
		{"runs", append(append(recsOf(c, 0, 5), recsOf(a, 0, 7)...), recsOf(c, 5, 3)...), 64},
		{"scratch too small", []record.Record{rec(c, 0), rec(b, 0), rec(a, 0), rec(c, 1), rec(b, 1)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := batchOf("s", slices.Clone(tc.recs)...)
			orig := batchOf("s", slices.Clone(tc.recs)...)
			subs, dest := plan(in, 4, nil, make([]int32, 0, tc.scratch))
			if dest == nil {
				t.Fatal("mixed batch planned as one part")
			}
			if !slices.EqualFunc(in.Records, orig.Records, func(x, y record.Record) bool { return x.Body == y.Body }) || in.Bytes != orig.Bytes {
				t.Fatal("plan changed the batch")
			}
			arrange(in, subs, dest)
			if subs[0].batch != in {
				t.Error("first sub-batch is not the pushed batch")
			}
			total, nrec := 0, 0
			for i, s := range subs {
				if i > 0 && s.part <= subs[i-1].part {
					t.Errorf("sub-batches not in partition order: %d after %d", s.part, subs[i-1].part)
				}
				var want []string
				for j := range tc.recs {
					if partitionOf(tc.recs[j].ServiceName(), 4) == s.part {
						want = append(want, tc.recs[j].Body)
					}
				}
				var got []string
				for j := range s.batch.Records {
					got = append(got, s.batch.Records[j].Body)
				}
				if !slices.Equal(got, want) {
					t.Errorf("partition %d: records %v, want %v", s.part, got, want)
				}
				if s.batch.Bytes != s.bytes || s.bytes != record.NewBatch("", "", s.batch.Records).Bytes {
					t.Errorf("partition %d: Bytes %d not the size of its records", s.part, s.batch.Bytes)
				}
				if s.batch.Tenant != "acme" || s.batch.Stream != "s" {
					t.Errorf("partition %d: tenant/stream %s/%s", s.part, s.batch.Tenant, s.batch.Stream)
				}
				if cap(s.batch.Records) != len(s.batch.Records) {
					t.Errorf("partition %d: sub-batch could append into its neighbour", s.part)
				}
				total += s.bytes
				nrec += s.count
			}
			if total != orig.Bytes || nrec != len(tc.recs) {
				t.Errorf("sub-batches hold %d records and %d bytes, want %d and %d", nrec, total, len(tc.recs), orig.Bytes)
			}
		})
	}

	// One service, or one partition: the batch itself, untouched.
	one := batchOf("s", rec(a, 0), rec(a, 1))
	if subs, dest := plan(one, 4, nil, nil); len(subs) != 1 || dest != nil || subs[0].batch != one || subs[0].part != partitionOf(a, 4) {
		t.Errorf("single-service batch planned as %v", subs)
	}
	mixed := batchOf("s", rec(a, 0), rec(b, 0))
	if subs, dest := plan(mixed, 1, nil, nil); len(subs) != 1 || dest != nil || subs[0].batch != mixed || subs[0].part != 0 {
		t.Errorf("one-partition plan = %v", subs)
	}
}

// TestPushOrderPerKey pushes batches mixing services from two goroutines
// onto four partitions and checks that each service's records arrive in
// push order on its own partition, that offsets are contiguous from
// FirstOffset, and that nothing is lost or duplicated.
func TestPushOrderPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		deps := h.deps()
		deps.FirstOffset = func(k Key) int64 { return 1000*int64(k.Partition) + 7 }
		cfg := testConfig()
		cfg.Partitions = 4
		cfg.RingSlots = 4 // small, so pushes wait for consumers
		b := mustNew(t, cfg, deps)

		const pushers, svcsPer, batches = 2, 4, 200
		var want []record.Record
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range pushers {
			wg.Go(func() {
				seq := make([]int, svcsPer)
				for i := range batches {
					var recs []record.Record
					for j := range 1 + i%5 {
						s := (i + j) % svcsPer
						recs = append(recs, rec("g"+strconv.Itoa(g)+"s"+strconv.Itoa(s), seq[s]))
						seq[s]++
					}
					if err := b.Push(context.Background(), batchOf("logs", recs...), Accepted); err != nil {
						t.Errorf("Push: %v", err)
						return
					}
					mu.Lock()
					want = append(want, recs...)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		mustShutdown(t, b)
		h.check(t)

		if got := h.bodies(); !slices.Equal(got, ids(want)) {
			t.Fatalf("consumed %d records, want the %d pushed exactly once", len(got), len(want))
		}
		next := map[string]int{}
		for p := range int32(4) {
			k := Key{Tenant: "acme", Stream: "logs", Partition: p}
			off := 1000*int64(p) + 7
			for _, bt := range h.batches(k) {
				if bt.Offset != off {
					t.Fatalf("%v: batch at offset %d, want %d", k, bt.Offset, off)
				}
				off += int64(len(bt.Records))
				for i := range bt.Records {
					r := &bt.Records[i]
					svc := r.ServiceName()
					if got := partitionOf(svc, 4); got != p {
						t.Fatalf("record of %s on partition %d, want %d", svc, p, got)
					}
					if want := svc + "/" + strconv.Itoa(next[svc]); r.Body != want {
						t.Fatalf("%s: got %s, want %s", svc, r.Body, want)
					}
					next[svc]++
				}
			}
		}
		st := b.Stats()
		if st.PushedBatches != pushers*batches || st.PushedRecords != int64(len(want)) || st.Streams != 1 {
			t.Errorf("Stats = %+v", st)
		}
		if st.QueuedRecords != 0 || st.QueuedBytes != 0 {
			t.Errorf("after drain, Stats = %+v", st)
		}
	})
}

// TestPushAllOrNothing fills one partition's ring and checks that a batch
// that also has records for another partition is not queued there either.
func TestPushAllOrNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		cfg := testConfig()
		cfg.Partitions = 4
		cfg.RingSlots = 2
		svcs := servicesOnDistinctPartitions(t, 2, 4)
		a, c := svcs[0], svcs[1]
		pa, pc := partitionOf(a, 4), partitionOf(c, 4)
		h.gate(pa)
		b := mustNew(t, cfg, h.deps())
		ctx := context.Background()

		// One batch in the blocked consumer, two filling the ring.
		var first []record.Record
		for i := range 3 {
			rs := recsOf(a, 10*i, 2)
			first = append(first, rs...)
			if err := b.Push(ctx, batchOf("s", rs...), Accepted); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		mixed := batchOf("s", rec(c, 0), rec(a, 100), rec(c, 1))
		before := *mixed
		ctx1, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		err := b.Push(ctx1, mixed, Accepted)
		if !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Push into a full partition = %v, want ErrFull and DeadlineExceeded", err)
		}
		if time.Since(start) != time.Second {
			t.Errorf("Push gave up after %s, want the 1s deadline", time.Since(start))
		}
		if mixed.Bytes != before.Bytes || len(mixed.Records) != 3 || mixed.Records[0].Body != c+"/0" {
			t.Error("failed Push changed the batch")
		}
		synctest.Wait()
		kc := Key{Tenant: "acme", Stream: "s", Partition: pc}
		if got := h.batches(kc); len(got) != 0 {
			t.Fatalf("partition %d consumed %d batches of a push that failed", pc, len(got))
		}
		st := b.Stats()
		if st.QueuedRecords != 4 || st.RejectedFull != 1 || st.PushedBatches != 3 {
			t.Errorf("Stats = %+v, want 4 queued records, 1 rejected, 3 pushed", st)
		}
		// The same batch goes through once there is room.
		h.open(pa)
		want := ids(first, mixed.Records)
		if err := b.Push(ctx, mixed, Accepted); err != nil {
			t.Fatal(err)
		}
		mustShutdown(t, b)
		h.check(t)
		if got := h.bodies(); !slices.Equal(got, want) {
			t.Fatalf("consumed %v, want %v", got, want)
		}
	})
}

func TestPushWaitsForRecordsAndBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config, int64)
	}{
		{"records", func(c *Config, _ int64) { c.MaxRecords = 10 }},
		{"bytes", func(c *Config, recBytes int64) { c.MaxBytes = 10 * recBytes }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness()
				h.gate(0)
				cfg := testConfig()
				r := rec("x", 0)
				tc.mod(&cfg, int64(r.Size()))
				b := mustNew(t, cfg, h.deps())
				ctx := context.Background()

				// 5 records held by the consumer (released), 5 queued.
				for i := range 2 {
					if err := b.Push(ctx, batchOf("s", recsOf("x", 5*i, 5)...), Accepted); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
				}
				done := make(chan error, 1)
				go func() { done <- b.Push(ctx, batchOf("s", recsOf("x", 10, 6)...), Accepted) }()
				synctest.Wait()
				select {
				case err := <-done:
					t.Fatalf("Push into a full buffer returned %v, want it to wait", err)
				default:
				}
				h.open(0) // the consumer drains; room frees up
				synctest.Wait()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("waiting Push = %v", err)
					}
				default:
					t.Fatal("Push still waiting after the consumer drained")
				}
				mustShutdown(t, b)
				h.check(t)
				if got := len(h.bodies()); got != 16 {
					t.Fatalf("consumed %d records, want 16", got)
				}
			})
		})
	}
}

// TestReserveGivesBack drives reserve, the part of tryReserve that runs
// after the look-first, into each way of losing a race, and checks that it
// gives everything back and wakes waiters.
func TestReserveGivesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.Partitions = 3
		cfg.RingSlots = 2
		cfg.MaxRecords = 10
		cfg.MaxBytes = 1000
		h := newHarness()
		b := mustNew(t, cfg, h.deps())
		defer mustShutdown(t, b)
		s, err := b.stream("acme", "s")
		if err != nil {
			t.Fatal(err)
		}
		subs := []sub{{part: 0}, {part: 1}, {part: 2}}
		for _, tc := range []struct {
			name                  string
			records, bytes, slot2 int64
		}{
			{"records", 8, 0, 0},
			{"bytes", 0, 950, 0},
			{"last slot", 0, 0, 2},
		} {
			b.hot.records.Store(tc.records)
			b.hot.bytes.Store(tc.bytes)
			s.parts[2].lanes[0].slots.Store(tc.slot2)
			wake := b.room.arm()
			if b.reserve(s, subs, 3, 100, 0, 0) {
				t.Fatalf("%s: reserve succeeded", tc.name)
			}
			if r, by := b.hot.records.Load(), b.hot.bytes.Load(); r != tc.records || by != tc.bytes {
				t.Errorf("%s: left %d records and %d bytes, want %d and %d", tc.name, r, by, tc.records, tc.bytes)
			}
			for i, p := range s.parts {
				want := int64(0)
				if i == 2 {
					want = tc.slot2
				}
				if got := p.lanes[0].slots.Load(); got != want {
					t.Errorf("%s: partition %d holds %d slots, want %d", tc.name, i, got, want)
				}
			}
			select {
			case <-wake:
				if tc.name == "records" {
					t.Errorf("%s: woke waiters with nothing given back", tc.name)
				}
			default:
				if tc.name != "records" {
					t.Errorf("%s: gave back without waking waiters", tc.name)
				}
			}
		}
		b.hot.records.Store(0)
		b.hot.bytes.Store(0)
		s.parts[2].lanes[0].slots.Store(0)
		if !b.reserve(s, subs, 3, 100, 0, 0) {
			t.Fatal("reserve failed with room")
		}
		b.hot.records.Store(0)
		b.hot.bytes.Store(0)
		for _, p := range s.parts {
			p.lanes[0].slots.Store(0)
		}
	})
}

func TestPushOversize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		cfg := testConfig()
		cfg.MaxRecords = 4
		cfg.MaxBytes = 1000
		b := mustNew(t, cfg, h.deps())
		start := time.Now()
		for _, bt := range []*record.Batch{
			batchOf("s", recsOf("x", 0, 5)...),
			{Tenant: "acme", Stream: "s", Records: recsOf("x", 0, 1), Bytes: 1001},
		} {
			err := b.Push(context.Background(), bt, Accepted)
			if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "never fit") {
				t.Errorf("Push of an oversize batch = %v, want ErrFull saying it can never fit", err)
			}
		}
		if time.Since(start) != 0 {
			t.Error("oversize Push waited")
		}
		if st := b.Stats(); st.RejectedFull != 2 || st.Streams != 0 || st.QueuedRecords != 0 {
			t.Errorf("Stats = %+v", st)
		}
		mustShutdown(t, b)
	})
}

func TestPushInvalid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, testConfig(), newHarness().deps())
		defer mustShutdown(t, b)
		for _, bt := range []*record.Batch{nil, batchOf("s")} {
			if err := b.Push(context.Background(), bt, Accepted); !errors.Is(err, record.ErrEmptyBatch) {
				t.Errorf("Push(%v) = %v, want ErrEmptyBatch", bt, err)
			}
		}
		bad := batchOf("s", rec("x", 0))
		bad.Bytes = -1
		if err := b.Push(context.Background(), bad, Accepted); err == nil {
			t.Error("Push accepted negative Bytes")
		}
	})
}

func TestNewConsumerNil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		deps := h.deps()
		deps.NewConsumer = func(k Key) Consumer {
			if k.Partition == 1 {
				return nil
			}
			return h.deps().NewConsumer(k)
		}
		cfg := testConfig()
		cfg.Partitions = 2
		b := mustNew(t, cfg, deps)
		if err := b.Push(context.Background(), batchOf("s", rec("x", 0)), Accepted); err == nil {
			t.Fatal("Push succeeded with a nil consumer")
		}
		mustShutdown(t, b)
		h.check(t) // partition 0's consumer was closed
		if len(h.created) != 1 {
			t.Fatalf("created %v", h.created)
		}
	})
}

// TestBoundsRespected runs pushers against a slow consumer and checks that
// the queued records and bytes never exceed the bounds.
func TestBoundsRespected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		h.delay = time.Millisecond
		cfg := testConfig()
		cfg.Partitions = 2
		cfg.MaxRecords = 50
		r := rec("svc0", 0)
		cfg.MaxBytes = 30 * int64(r.Size())
		var over atomic.Int64
		var b *Buffer
		checkBounds := func() {
			st := b.Stats()
			if st.QueuedRecords > int64(cfg.MaxRecords) || st.QueuedBytes > cfg.MaxBytes ||
				st.QueuedRecords < 0 || st.QueuedBytes < 0 {
				over.Add(1)
			}
		}
		h.onConsume = func(*record.Batch) { checkBounds() }
		b = mustNew(t, cfg, h.deps())

		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					checkBounds()
					time.Sleep(50 * time.Microsecond)
				}
			}
		})
		var want []record.Record
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					rs := []record.Record{rec("svc"+strconv.Itoa(i%3), 1000*g+i), rec("svc3", 1000*g+i)}
					if err := b.Push(context.Background(), batchOf("s", rs...), Accepted); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					want = append(want, rs...)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(stop)
		sampler.Wait()
		mustShutdown(t, b)
		h.check(t)
		if n := over.Load(); n > 0 {
			t.Fatalf("bounds exceeded in %d samples", n)
		}
		if got := h.bodies(); !slices.Equal(got, ids(want)) {
			t.Fatalf("consumed %d records, want the %d pushed", len(got), len(want))
		}
	})
}

// TestShutdownDrains queues batches behind blocked consumers, shuts down,
// and checks that Shutdown waits for every batch to be consumed and closes
// every consumer once.
func TestShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		cfg := testConfig()
		cfg.Partitions = 3
		for p := range int32(3) {
			h.gate(p)
		}
		b := mustNew(t, cfg, h.deps())
		var want []record.Record
		for i := range 100 {
			rs := []record.Record{rec("svc"+strconv.Itoa(i%7), i), rec("other", i)}
			want = append(want, rs...)
			if err := b.Push(context.Background(), batchOf("s"+strconv.Itoa(i%2), rs...), Accepted); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- b.Shutdown(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v before consumers drained", err)
		default:
		}
		if err := b.Push(context.Background(), batchOf("s0", rec("late", 0)), Accepted); !errors.Is(err, ErrClosed) {
			t.Fatalf("Push during Shutdown = %v, want ErrClosed", err)
		}
		for p := range int32(3) {
			h.open(p)
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		h.check(t)
		if len(h.created) != 6 {
			t.Errorf("%d consumers, want 2 streams x 3 partitions", len(h.created))
		}
		if got := h.bodies(); !slices.Equal(got, ids(want)) {
			t.Fatalf("consumed %d records, want the %d pushed exactly once", len(got), len(want))
		}
		if err := b.Push(context.Background(), batchOf("s0", rec("late", 1)), Accepted); !errors.Is(err, ErrClosed) {
			t.Fatalf("Push after Shutdown = %v, want ErrClosed", err)
		}
		mustShutdown(t, b) // again
	})
}

// TestShutdownRacesPush shuts down while pushers are busy: every push that
// succeeded must be consumed, and none that failed.
func TestShutdownRacesPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		cfg := testConfig()
		cfg.Partitions = 2
		cfg.RingSlots = 8
		b := mustNew(t, cfg, h.deps())
		var mu sync.Mutex
		var want []record.Record
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					rs := []record.Record{rec("a", 1e6*g+i), rec("b", 1e6*g+i)}
					err := b.Push(context.Background(), batchOf("s"+strconv.Itoa(g%2), rs...), Accepted)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					want = append(want, rs...)
					mu.Unlock()
					yield()
				}
			})
		}
		for b.Stats().PushedBatches < 200 {
			yield()
		}
		mustShutdown(t, b)
		wg.Wait()
		h.check(t)
		if got := h.bodies(); !slices.Equal(got, ids(want)) {
			t.Fatalf("consumed %d records, want the %d pushed exactly once", len(got), len(want))
		}
	})
}

func TestShutdownFailsWaitingPush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		h.gate(0)
		cfg := testConfig()
		cfg.RingSlots = 2
		b := mustNew(t, cfg, h.deps())
		for i := range 3 {
			if err := b.Push(context.Background(), batchOf("s", rec("x", i)), Accepted); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		pushed := make(chan error, 1)
		go func() { pushed <- b.Push(context.Background(), batchOf("s", rec("x", 3)), Accepted) }()
		synctest.Wait()
		shut := make(chan error, 1)
		go func() { shut <- b.Shutdown(context.Background()) }()
		if err := <-pushed; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting Push = %v, want ErrClosed", err)
		}
		h.open(0)
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
		h.check(t)
		if got := len(h.bodies()); got != 3 {
			t.Fatalf("consumed %d records, want 3", got)
		}
	})
}

// TestShutdownDeadline has a consumer that blocks until its context is
// canceled; Shutdown must give up at its deadline, cancel the consumers'
// context, and a second Shutdown must then finish.
func TestShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		h.gate(0) // never opened
		b := mustNew(t, testConfig(), h.deps())
		for i := range 3 {
			if err := b.Push(context.Background(), batchOf("s", rec("x", i)), Accepted); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
		}
		mustShutdown(t, b)
		h.check(t)
		if got := len(h.bodies()); got != 3 {
			t.Fatalf("consumed %d records, want 3 (with a canceled context)", got)
		}
	})
}

func TestShutdownUnused(t *testing.T) {
	b := mustNew(t, DefaultConfig(), newHarness().deps())
	mustShutdown(t, b)
	mustShutdown(t, b)
	if err := b.Push(context.Background(), batchOf("s", rec("x", 0)), Accepted); !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Shutdown = %v, want ErrClosed", err)
	}
	goleak.VerifyNone(t)
}

func TestShutdownJoinsGoroutines(t *testing.T) {
	h := newHarness()
	cfg := DefaultConfig()
	cfg.Partitions = 4
	cfg.TickInterval = time.Millisecond
	b := mustNew(t, cfg, h.deps())
	for i := range 10 {
		if err := b.Push(context.Background(), batchOf("s"+strconv.Itoa(i%3), rec("svc"+strconv.Itoa(i), i)), Accepted); err != nil {
			t.Fatal(err)
		}
	}
	mustShutdown(t, b)
	goleak.VerifyNone(t)
	h.check(t)
	if len(h.created) != 12 {
		t.Fatalf("%d consumers, want 12", len(h.created))
	}
}

func TestTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		cfg := testConfig()
		cfg.TickInterval = 100 * time.Millisecond
		b := mustNew(t, cfg, h.deps())
		k := Key{Tenant: "acme", Stream: "s"}
		if err := b.Push(context.Background(), batchOf("s", rec("x", 0)), Accepted); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		time.Sleep(time.Second + time.Millisecond) // idle
		h.mu.Lock()
		idle := len(h.ticks[k])
		h.mu.Unlock()
		if idle != 10 {
			t.Errorf("%d ticks in 1s idle, want 10", idle)
		}

		// Busy: each Consume takes 30ms, 50 of them back to back.
		h.delay = 30 * time.Millisecond
		var lastConsume time.Time
		h.onConsume = func(*record.Batch) { lastConsume = time.Now() }
		busyStart := time.Now()
		for i := range 50 {
			if err := b.Push(context.Background(), batchOf("s", rec("x", i+1)), Accepted); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Second)
		mustShutdown(t, b)
		h.check(t)
		h.mu.Lock()
		defer h.mu.Unlock()
		ticks := h.ticks[k]
		busy := 0
		for _, tt := range ticks {
			if tt.After(busyStart) && !tt.After(lastConsume) {
				busy++
			}
		}
		if want := int(lastConsume.Sub(busyStart) / cfg.TickInterval); busy < want-1 {
			t.Errorf("%d ticks in %s of busy consuming, want about %d", busy, lastConsume.Sub(busyStart), want)
		}
		for i, tt := range ticks {
			if i > 0 && !tt.After(ticks[i-1]) {
				t.Fatalf("tick times not increasing: %v", ticks)
			}
		}
		if !ticks[0].Equal(start.Add(100 * time.Millisecond)) {
			t.Errorf("first tick at %v, want %v", ticks[0], start.Add(100*time.Millisecond))
		}
	})
}

func TestConsumerErrorsCountedAndThrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		h.consumeErr = errors.New("sink down")
		h.tickErr = errors.New("flush failed")
		var logs bytes.Buffer
		deps := h.deps()
		deps.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		cfg := testConfig()
		cfg.TickInterval = 100 * time.Millisecond
		b := mustNew(t, cfg, deps)
		for i := range 100 {
			if err := b.Push(context.Background(), batchOf("s", rec("x", i)), Accepted); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second + time.Millisecond)
		mustShutdown(t, b)
		h.check(t)
		st := b.Stats()
		if st.ConsumeErrors != 100 || st.TickErrors != 10 {
			t.Errorf("Stats = %+v, want 100 consume and 10 tick errors", st)
		}
		if got := len(h.bodies()); got != 100 {
			t.Errorf("consumed %d records after errors, want 100", got)
		}
		out := logs.String()
		if n := strings.Count(out, "consume failed"); n != 1 {
			t.Errorf("%d consume error lines in 1s, want 1:\n%s", n, out)
		}
		if n := strings.Count(out, "tick failed"); n != 1 {
			t.Errorf("%d tick error lines in 1s, want 1:\n%s", n, out)
		}
		if !strings.Contains(out, "sink down") || !strings.Contains(out, "stream=s") {
			t.Errorf("log lacks the error or the key:\n%s", out)
		}
	})
}

func TestMaxStreams(t *testing.T) {
	h := newHarness()
	cfg := DefaultConfig()
	cfg.MaxStreams = 2
	b, err := New(cfg, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	for _, s := range []string{"a", "b", "a"} {
		if err := b.Push(context.Background(), batchOf(s, recsOf("svc", 0, 1)...), Accepted); err != nil {
			t.Fatalf("push to %s: %v", s, err)
		}
	}
	err = b.Push(context.Background(), batchOf("c", recsOf("svc", 0, 1)...), Accepted)
	if !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("third stream: %v, want ErrTooManyStreams", err)
	}
}

// TestMaxTenantStreams checks that one tenant cannot take every stream
// the buffer allows, neither by pushing nor, after a restart, through the
// streams its write-ahead logs bring back (here written under looser
// limits): another tenant can still create its own.
func TestMaxTenantStreams(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WALDir = t.TempDir()
	cfg.MaxStreams = 6
	cfg.MaxTenantStreams = 3
	ctx := context.Background()
	push := func(b *Buffer, tenant, stream string) error {
		bt := batchOf(stream, recsOf("svc", 0, 1)...)
		bt.Tenant = tenant
		return b.Push(ctx, bt, Durable)
	}
	h := newHarness()
	b := mustNew(t, cfg, h.deps())
	for i := range 3 {
		if err := push(b, "acme", "s"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := push(b, "acme", "s3"); !errors.Is(err, ErrTooManyStreams) || !strings.Contains(err.Error(), "tenant") {
		t.Fatalf("tenant's fourth stream: %v, want ErrTooManyStreams naming the tenant's limit", err)
	}
	for i := range 3 {
		if err := push(b, "globex", "s"+strconv.Itoa(i)); err != nil {
			t.Fatalf("other tenant's stream %d: %v", i, err)
		}
	}
	if err := push(b, "initech", "s"); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("stream past max_streams: %v, want ErrTooManyStreams", err)
	}
	mustShutdown(t, b)

	// Restart with limits that acme's logs exceed: its streams all come
	// back, but count for no more than its limit.
	cfg.MaxStreams = 4
	cfg.MaxTenantStreams = 2
	h = newHarness()
	b = mustNew(t, cfg, h.deps())
	if st := b.Stats(); st.Streams != 6 || st.RecoveryFailures != 0 {
		t.Fatalf("after restart: %d streams and %d recovery failures, want 6 recovered", st.Streams, st.RecoveryFailures)
	}
	if err := push(b, "acme", "s0"); err != nil {
		t.Errorf("push to a recovered stream: %v", err)
	}
	if err := push(b, "acme", "new"); !errors.Is(err, ErrTooManyStreams) {
		t.Errorf("new stream of a tenant over its limit: %v, want ErrTooManyStreams", err)
	}
	// acme and globex count 2 each of the 4: nobody else fits now, and
	// that is the global bound, not acme's streams.
	if err := push(b, "initech", "s"); !errors.Is(err, ErrTooManyStreams) || strings.Contains(err.Error(), "tenant \"initech\" has") {
		t.Errorf("third tenant with the global bound reached: %v", err)
	}
	cfg.MaxStreams = 5
	mustShutdown(t, b)
	h = newHarness()
	b = mustNew(t, cfg, h.deps())
	if err := push(b, "initech", "s"); err != nil {
		t.Errorf("third tenant's stream with room under max_streams beside the recovered ones: %v", err)
	}
	mustShutdown(t, b)
}

// TestNewStream: Deps.NewStream is called once per stream, outside the
// buffer's locks (another new stream's call runs while a's is held),
// and no push to the stream returns before it has returned, whether the
// push created the stream or found it; a restart calls it for the
// streams it recovers.
func TestNewStream(t *testing.T) {
	cfg := walConfig(t)
	h := newHarness()
	var (
		mu       sync.Mutex
		calls    = map[string]int{}
		finished = map[string]bool{}
	)
	entered, release := make(chan struct{}), make(chan struct{})
	deps := h.deps()
	deps.NewStream = func(tenant, stream string) {
		mu.Lock()
		calls[tenant+"/"+stream]++
		mu.Unlock()
		if stream == "a" {
			close(entered)
			<-release
		}
		mu.Lock()
		finished[stream] = true
		mu.Unlock()
	}
	b := mustNew(t, cfg, deps)
	push := func(stream string, seq int) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := b.Push(context.Background(), batchOf(stream, rec("svc", seq)), Durable); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if !finished[stream] {
				t.Errorf("a push to %s returned before its NewStream did", stream)
			}
		}()
		return done
	}
	first := push("a", 0)
	<-entered // a exists and its NewStream is held
	second := push("a", 1)
	select {
	case <-push("b", 2):
	case <-time.After(30 * time.Second):
		t.Fatal("a new stream's push waited 30 s for another stream's NewStream")
	}
	close(release)
	<-first
	<-second
	mustShutdown(t, b)
	if calls["acme/a"] != 1 || calls["acme/b"] != 1 || len(calls) != 2 {
		t.Errorf("NewStream calls %v, want one per stream", calls)
	}

	// A restart recovers both streams from their logs (nothing was
	// published) and announces them before Start returns.
	clear(calls)
	deps.NewStream = func(tenant, stream string) {
		mu.Lock()
		defer mu.Unlock()
		calls[tenant+"/"+stream]++
	}
	b = mustNew(t, cfg, deps)
	mu.Lock()
	got := maps.Clone(calls)
	mu.Unlock()
	if got["acme/a"] != 1 || got["acme/b"] != 1 || len(got) != 2 {
		t.Errorf("NewStream calls at recovery %v, want one per stream", got)
	}
	mustShutdown(t, b)
}

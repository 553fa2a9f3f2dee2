package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/weirlabs/weir/internal/record"
)

func producerBatch(id string, seq uint64, svc string) *record.Batch {
	b := batchOf("s", rec(svc, int(seq)))
	b.ProducerID, b.Sequence = id, seq
	return b
}

// TestIdempotentProducers checks the sequence rules and that the table of
// producers survives a restart, also after the log segments that carried
// it were deleted.
func TestIdempotentProducers(t *testing.T) {
	cfg, c, b := producerLog(t)
	ctx := context.Background()
	for seq := uint64(1); seq <= 20; seq++ {
		if err := pushSeq(b, "alpha", seq); err != nil {
			t.Fatalf("alpha %d: %v", seq, err)
		}
	}
	if err := pushSeq(b, "alpha", 20); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of the last batch: %v, want ErrDuplicate", err)
	}
	if err := pushSeq(b, "alpha", 3); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of an older batch: %v, want ErrDuplicate", err)
	}
	if err := pushSeq(b, "alpha", 22); !errors.Is(err, ErrSequence) {
		t.Errorf("gap: %v, want ErrSequence", err)
	}
	// Batches derived by transforms may skip numbers, and retries of
	// them are still recognised.
	gappy := producerBatch("alpha", 25, "g")
	gappy.SequenceGaps = true
	if err := b.Push(ctx, gappy, Durable); err != nil {
		t.Errorf("gap allowed: %v", err)
	}
	gappy = producerBatch("alpha", 25, "g")
	gappy.SequenceGaps = true
	if err := b.Push(ctx, gappy, Durable); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of a gappy batch: %v, want ErrDuplicate", err)
	}
	if err := pushSeq(b, "beta", 0); !errors.Is(err, ErrSequence) {
		t.Errorf("sequence 0: %v, want ErrSequence", err)
	}
	if err := pushSeq(b, "beta", 7); err != nil {
		t.Errorf("a new producer may start anywhere: %v", err)
	}
	if n := len(c.offsets()); n != 22 {
		t.Fatalf("%d records consumed, want 22 (duplicates written once)", n)
	}
	// Publish all but beta's batch so that old segments are deleted; the
	// table must be saved first.
	s, _ := b.stream("acme", "s")
	before := s.parts[0].wal.Segments()
	if len(before) < 3 {
		t.Fatalf("%d log segments; want several", len(before))
	}
	c.publish(21)
	waitUntil(t, "a log segment is deleted after publishing", func() bool {
		return s.parts[0].wal.Segments()[0].Index != before[0].Index
	})
	if _, err := os.Stat(filepath.Join(cfg.WALDir, "tenant=acme", "stream=s", "producers.json")); err != nil {
		t.Fatalf("producers not saved before segments were deleted: %v", err)
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	b2 := restartPublished(t, cfg, 21)
	defer b2.Shutdown(ctx)
	if err := pushSeq(b2, "alpha", 20); !errors.Is(err, ErrDuplicate) {
		t.Errorf("after restart, retry of alpha 20: %v, want ErrDuplicate", err)
	}
	if err := pushSeq(b2, "beta", 7); !errors.Is(err, ErrDuplicate) {
		t.Errorf("after restart, retry of beta 7: %v, want ErrDuplicate", err)
	}
	if err := pushSeq(b2, "alpha", 25); !errors.Is(err, ErrDuplicate) {
		t.Errorf("after restart, retry of alpha 25: %v, want ErrDuplicate", err)
	}
	if err := pushSeq(b2, "alpha", 26); err != nil {
		t.Errorf("after restart, alpha 26: %v", err)
	}
}

// producerLog starts a buffer whose logs cut segments at 1 KiB, over a
// consumer that holds what it takes until told to publish it.
func producerLog(t *testing.T) (Config, *holdingConsumer, *Buffer) {
	t.Helper()
	cfg := walConfig(t)
	cfg.WAL.SegmentBytes = 1024
	c := &holdingConsumer{oldest: -1}
	return cfg, c, mustNew(t, cfg, Deps{NewConsumer: func(Key) Consumer { return c }})
}

// pushSeq pushes batch seq of producer id (about 300 bytes) to stream s
// at the durable level.
func pushSeq(b *Buffer, id string, seq uint64) error {
	return b.Push(context.Background(), producerBatch(id, seq, strings.Repeat("x", 300)), Durable)
}

// restartPublished starts a buffer on cfg's logs whose offsets below
// published count as published.
func restartPublished(t *testing.T, cfg Config, published int64) *Buffer {
	t.Helper()
	return mustNew(t, cfg, Deps{
		NewConsumer: func(Key) Consumer { return &holdingConsumer{oldest: -1} },
		Published: func(context.Context, Key, int64) (func(int64) bool, error) {
			return func(o int64) bool { return o < published }, nil
		},
	})
}

// TestProducersNotEvictedByOthers has a real producer push, then more
// other producer ids than the tenant may have push once each: none of
// them may take the real producer's place, so its retry is still a
// duplicate. The ones past the bound are refused with ErrTooManyProducers
// (and ErrFull), also on another stream of the tenant, while another
// tenant is not affected.
func TestProducersNotEvictedByOthers(t *testing.T) {
	cfg := DefaultConfig()
	b, err := New(cfg, newHarness().deps())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	ctx := context.Background()
	if err := b.Push(ctx, producerBatch("real", 1, "svc"), Accepted); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := range cfg.MaxProducers + 1 {
		err := b.Push(ctx, producerBatch("other-"+strconv.Itoa(i), 1, "svc"), Accepted)
		switch {
		case err == nil:
		case errors.Is(err, ErrTooManyProducers) && errors.Is(err, ErrFull):
			refused++
		default:
			t.Fatalf("producer %d: %v", i, err)
		}
	}
	if refused != 2 {
		t.Errorf("%d new producers refused, want 2 (the tenant's bound is %d and the real one holds a place)", refused, cfg.MaxProducers)
	}
	if err := b.Push(ctx, producerBatch("real", 1, "svc"), Accepted); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of the real producer's last batch: %v, want ErrDuplicate", err)
	}
	if err := b.Push(ctx, producerBatch("real", 2, "svc"), Accepted); err != nil {
		t.Errorf("the real producer's next batch: %v", err)
	}
	other := batchOf("t", rec("svc", 0))
	other.ProducerID, other.Sequence = "on-another-stream", 1
	if err := b.Push(ctx, other, Accepted); !errors.Is(err, ErrTooManyProducers) {
		t.Errorf("new producer on another stream of the tenant: %v, want ErrTooManyProducers", err)
	}
	tenant2 := producerBatch("real", 1, "svc")
	tenant2.Tenant = "globex"
	if err := b.Push(ctx, tenant2, Accepted); err != nil {
		t.Errorf("new producer of another tenant: %v", err)
	}
}

// TestProducersIdleExpire checks that a tenant full of producers admits a
// new one once some have been idle longer than ProducerTTL, and only then,
// and that producers that keep pushing are never forgotten.
func TestProducersIdleExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxProducers = 3
		cfg.ProducerTTL = time.Hour
		b, err := New(cfg, newHarness().deps())
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(context.Background())
		ctx := context.Background()
		push := func(id string, seq uint64) error { return b.Push(ctx, producerBatch(id, seq, "svc"), Accepted) }
		for _, id := range []string{"a", "b", "c"} {
			if err := push(id, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := push("d", 1); !errors.Is(err, ErrTooManyProducers) {
			t.Fatalf("fourth producer: %v, want ErrTooManyProducers", err)
		}
		time.Sleep(40 * time.Minute)
		if err := push("a", 2); err != nil { // a stays live
			t.Fatal(err)
		}
		time.Sleep(30 * time.Minute) // b and c idle for 70 minutes
		if err := push("d", 1); err != nil {
			t.Fatalf("new producer once others are idle past the TTL: %v", err)
		}
		if err := push("a", 2); !errors.Is(err, ErrDuplicate) {
			t.Errorf("retry of the live producer: %v, want ErrDuplicate", err)
		}
		if err := push("e", 1); err != nil {
			t.Errorf("a second new producer in the room of the expired ones: %v", err)
		}
		if err := push("f", 1); !errors.Is(err, ErrTooManyProducers) {
			t.Errorf("new producer with the tenant full again: %v, want ErrTooManyProducers", err)
		}
	})
}

// TestLogTrimAfterFailedSave blocks the save of the producers table (a
// directory stands where the file is renamed to, as a full disk would
// make the write fail) and checks that the log segments below the commit
// watermark are removed all the same: at once when the table is
// unchanged, since nothing needs writing, and once the save succeeds
// otherwise, without waiting for new records.
func TestLogTrimAfterFailedSave(t *testing.T) {
	for _, producer := range []bool{false, true} {
		t.Run(fmt.Sprintf("producer=%v", producer), func(t *testing.T) {
			cfg := walConfig(t)
			cfg.WAL.SegmentBytes = 1024
			c := &holdingConsumer{oldest: -1}
			failed := make(chan struct{})
			log := slog.New(&signalHandler{want: "save idempotent producers", seen: failed})
			b, err := New(cfg, Deps{Logger: log, NewConsumer: func(Key) Consumer { return c }})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer b.Shutdown(context.Background())
			for seq := range 30 {
				batch := batchOf("s", rec(strings.Repeat("x", 100), seq))
				if producer {
					batch.ProducerID, batch.Sequence = "alpha", uint64(seq+1)
				}
				if err := b.Push(context.Background(), batch, Durable); err != nil {
					t.Fatal(err)
				}
			}
			s, _ := b.stream("acme", "s")
			p := s.parts[0]
			if n := len(p.wal.Segments()); n < 3 {
				t.Fatalf("%d segments; want several for the test", n)
			}
			blocker := filepath.Join(cfg.WALDir, "tenant=acme", "stream=s", "producers.json")
			if err := os.MkdirAll(filepath.Join(blocker, "in-the-way"), 0o755); err != nil {
				t.Fatal(err)
			}
			c.publish(30)
			if producer {
				select {
				case <-failed:
				case <-time.After(10 * time.Second):
					t.Fatal("no save of the producers table failed")
				}
				if n := len(p.wal.Segments()); n < 3 {
					t.Fatalf("%d segments left although the producers table could not be saved", n)
				}
				if err := os.RemoveAll(blocker); err != nil {
					t.Fatal(err)
				}
			}
			waitUntil(t, "log segments below the watermark are deleted", func() bool { return len(p.wal.Segments()) == 1 })
		})
	}
}

// signalHandler is a slog.Handler that closes seen at the first record
// whose message contains want.
type signalHandler struct {
	want string
	seen chan struct{}
	once sync.Once
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *signalHandler) WithGroup(string) slog.Handler            { return h }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.want) {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}

// TestDamagedProducersTable: a saved producers table that does not parse
// no longer makes its stream unavailable. It is set aside beside the log
// (producers.json.damaged) and counted, and the stream recovers with the
// producers its log still shows: a retry of a batch the log holds is
// still a duplicate; a producer whose only batch was in a deleted
// segment is forgotten, as after producer_ttl.
func TestDamagedProducersTable(t *testing.T) {
	cfg, c, b := producerLog(t)
	ctx := context.Background()
	if err := pushSeq(b, "beta", 1); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 20; seq++ {
		if err := pushSeq(b, "alpha", seq); err != nil {
			t.Fatalf("alpha %d: %v", seq, err)
		}
	}
	s, _ := b.stream("acme", "s")
	first := s.parts[0].wal.Segments()[0].Index
	c.publish(21)
	waitUntil(t, "a log segment is deleted after publishing", func() bool {
		return s.parts[0].wal.Segments()[0].Index != first
	})
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	table := filepath.Join(cfg.WALDir, "tenant=acme", "stream=s", "producers.json")
	damaged := []byte(`{"alpha": {"last": 2`)
	if err := os.WriteFile(table, damaged, 0o644); err != nil {
		t.Fatal(err)
	}

	b2 := restartPublished(t, cfg, 21)
	defer b2.Shutdown(ctx)
	if err := pushSeq(b2, "alpha", 20); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of alpha 20, in the log: %v, want ErrDuplicate", err)
	}
	if err := pushSeq(b2, "alpha", 21); err != nil {
		t.Errorf("alpha 21: %v", err)
	}
	if err := pushSeq(b2, "beta", 1); err != nil {
		t.Errorf("retry of beta 1, forgotten: %v, want it written again", err)
	}
	if st := b2.Stats(); st.ProducerTablesDamaged != 1 || st.RecoveryFailures != 0 {
		t.Errorf("stats: %d damaged tables, %d recovery failures; want 1 and 0", st.ProducerTablesDamaged, st.RecoveryFailures)
	}
	if got, err := os.ReadFile(table + ".damaged"); err != nil || string(got) != string(damaged) {
		t.Errorf("the damaged table was not set aside as it was: %q, %v", got, err)
	}
}

package buffer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	cfg := walConfig(t)
	cfg.WAL.SegmentBytes = 1024
	c := &holdingConsumer{oldest: -1}
	b, err := New(cfg, Deps{NewConsumer: func(Key) Consumer { return c }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	push := func(b *Buffer, id string, seq uint64) error {
		return b.Push(ctx, producerBatch(id, seq, strings.Repeat("x", 300)), Durable)
	}
	for seq := uint64(1); seq <= 20; seq++ {
		if err := push(b, "alpha", seq); err != nil {
			t.Fatalf("alpha %d: %v", seq, err)
		}
	}
	if err := push(b, "alpha", 20); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of the last batch: %v, want ErrDuplicate", err)
	}
	if err := push(b, "alpha", 3); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of an older batch: %v, want ErrDuplicate", err)
	}
	if err := push(b, "alpha", 22); !errors.Is(err, ErrSequence) {
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
	if err := push(b, "beta", 0); !errors.Is(err, ErrSequence) {
		t.Errorf("sequence 0: %v, want ErrSequence", err)
	}
	if err := push(b, "beta", 7); err != nil {
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

	b2, err := New(cfg, Deps{
		NewConsumer: func(Key) Consumer { return &holdingConsumer{oldest: -1} },
		Published: func(context.Context, Key, int64) (func(int64) bool, error) {
			return func(o int64) bool { return o < 21 }, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Shutdown(ctx)
	if err := push(b2, "alpha", 20); !errors.Is(err, ErrDuplicate) {
		t.Errorf("after restart, retry of alpha 20: %v, want ErrDuplicate", err)
	}
	if err := push(b2, "beta", 7); !errors.Is(err, ErrDuplicate) {
		t.Errorf("after restart, retry of beta 7: %v, want ErrDuplicate", err)
	}
	if err := push(b2, "alpha", 25); !errors.Is(err, ErrDuplicate) {
		t.Errorf("after restart, retry of alpha 25: %v, want ErrDuplicate", err)
	}
	if err := push(b2, "alpha", 26); err != nil {
		t.Errorf("after restart, alpha 26: %v", err)
	}
}

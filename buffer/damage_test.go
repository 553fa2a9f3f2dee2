package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/wal"
)

// consumers hands out one holdingConsumer per partition and keeps them.
type consumers struct {
	mu sync.Mutex
	m  map[Key]*holdingConsumer
}

func (c *consumers) deps(log *slog.Logger) Deps {
	c.m = map[Key]*holdingConsumer{}
	return Deps{Logger: log, NewConsumer: func(k Key) Consumer {
		c.mu.Lock()
		defer c.mu.Unlock()
		h := &holdingConsumer{oldest: -1}
		c.m[k] = h
		return h
	}}
}

// records returns what the consumer of k got, in delivery order.
func (c *consumers) records(k Key) []record.Record {
	c.mu.Lock()
	h := c.m[k]
	c.mu.Unlock()
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []record.Record
	for _, b := range h.got {
		out = append(out, b.Records...)
	}
	return out
}

// stream returns what the consumers of every partition of a stream got.
func (c *consumers) stream(tenant, name string) []record.Record {
	var out []record.Record
	for p := int32(0); p < 8; p++ {
		out = append(out, c.records(Key{Tenant: tenant, Stream: name, Partition: p})...)
	}
	return out
}

// offsetsOf returns the offsets the consumer of k got, in delivery order.
func (c *consumers) offsetsOf(k Key) []int64 {
	c.mu.Lock()
	h := c.m[k]
	c.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.offsets()
}

// frames returns the start and end of every frame in a segment file.
func frames(t *testing.T, path string) [][2]int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]int64
	for off := int64(16); off+8 <= int64(len(b)); {
		end := off + 8 + int64(binary.LittleEndian.Uint32(b[off:]))
		out = append(out, [2]int64{off, end})
		off = end
	}
	return out
}

func editFile(t *testing.T, path string, f func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWALDamageRecovery writes several segments of records to two
// partitions of a stream and to another stream, damages one log record in
// the middle of a segment of partition 0, and restarts: every intact
// record must be replayed exactly once, in offset order, the damage
// logged at error level with its segment and offset and counted, what can
// be decoded of it dead-lettered (once, also over another restart), and
// the other partition and stream must be unaffected.
func TestWALDamageRecovery(t *testing.T) {
	cases := []struct {
		name string
		// damage damages the frames of seg (a middle segment) around frame
		// i and returns how many frames it destroyed (i and those after).
		damage func(t *testing.T, seg string, fr [][2]int64, i int) int
		// salvageable: the damaged frame still decodes.
		salvageable bool
	}{
		{"flipped payload bytes", func(t *testing.T, seg string, fr [][2]int64, i int) int {
			editFile(t, seg, func(b []byte) {
				// Change a letter of a body ("svc0/123"): the checksum fails,
				// the batch still decodes.
				frame := b[fr[i][0]:fr[i][1]]
				j := bytes.Index(frame, []byte("svc0/"))
				if j < 0 {
					t.Fatal("no body in the frame")
				}
				frame[j+1] ^= 0x01
			})
			return 1
		}, true},
		{"damaged length field", func(t *testing.T, seg string, fr [][2]int64, i int) int {
			editFile(t, seg, func(b []byte) { b[fr[i][0]+1] ^= 0x40 })
			return 1
		}, false},
		{"zeroed region", func(t *testing.T, seg string, fr [][2]int64, i int) int {
			editFile(t, seg, func(b []byte) { clear(b[fr[i][0]+20 : fr[i+1][0]+30]) })
			return 2
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := walConfig(t)
			cfg.Partitions = 2
			cfg.WAL.SegmentBytes = 1 << 10
			svcs := servicesOnDistinctPartitions(t, 2, 2)
			var first consumers
			b := mustNew(t, cfg, first.deps(nil))
			ctx := context.Background()
			const batches, size = 40, 10
			for i := range batches {
				for _, svc := range svcs {
					if err := b.Push(ctx, batchOf("s", recsOf(svc, i*size, size)...), Durable); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.Push(ctx, batchOf("other", recsOf("svc9", i*size, size)...), Durable); err != nil {
					t.Fatal(err)
				}
			}
			mustShutdown(t, b)

			p0 := Key{Tenant: "acme", Stream: "s", Partition: partitionOf(svcs[0], 2)}
			p1 := Key{Tenant: "acme", Stream: "s", Partition: partitionOf(svcs[1], 2)}
			other := Key{Tenant: "acme", Stream: "other"}
			dir := walDir(cfg.WALDir, p0)
			seg := filepath.Join(dir, segmentFile(2))
			fr := frames(t, seg)
			if len(fr) < 6 {
				t.Fatalf("segment 2 has %d records; want several", len(fr))
			}
			if _, err := os.Stat(filepath.Join(dir, segmentFile(4))); err != nil {
				t.Fatalf("want at least 4 segments: %v", err)
			}
			i := len(fr) / 2
			n := tc.damage(t, seg, fr, i)
			// The records of the frames before segment 2 and before frame i.
			skipped := len(frames(t, filepath.Join(dir, segmentFile(1))))
			lostFrom := int64((skipped + i) * size)
			lostTo := lostFrom + int64(n*size)

			var logs bytes.Buffer
			var second consumers
			b2 := mustNew(t, cfg, second.deps(slog.New(slog.NewTextHandler(&logs, nil))))
			st := b2.Stats()
			mustShutdown(t, b2)

			// Partition 0: every record but the damaged ones, once, in order.
			var want []int64
			for o := int64(0); o < batches*size; o++ {
				if o < lostFrom || o >= lostTo {
					want = append(want, o)
				}
			}
			if got := second.offsetsOf(p0); !equalInt64s(got, want) {
				t.Errorf("damaged partition replayed offsets %v, want %v", got, want)
			}
			for _, r := range second.records(p0) {
				if !strings.HasPrefix(r.Body, svcs[0]+"/") {
					t.Errorf("damaged partition replayed %q", r.Body)
				}
			}
			// The other partition and the other stream: everything.
			if got := second.offsetsOf(p1); len(got) != batches*size {
				t.Errorf("other partition replayed %d records, want %d", len(got), batches*size)
			}
			if got := second.offsetsOf(other); len(got) != batches*size {
				t.Errorf("other stream replayed %d records, want %d", len(got), batches*size)
			}
			// Reported and counted.
			if st.WALDamage != 1 {
				t.Errorf("Stats.WALDamage = %d, want 1", st.WALDamage)
			}
			if st.WALLostRecords+st.WALSalvagedRecords != int64(n*size) {
				t.Errorf("%d records lost and %d salvaged, want %d in all", st.WALLostRecords, st.WALSalvagedRecords, n*size)
			}
			if tc.salvageable && st.WALSalvagedRecords != size {
				t.Errorf("%d records salvaged, want the %d of the damaged batch", st.WALSalvagedRecords, size)
			}
			out := logs.String()
			for _, w := range []string{"level=ERROR", "write-ahead log damaged", "segment=" + strconv.Quote(seg), "offset=" + strconv.FormatInt(fr[i][0], 10), "stream=s"} {
				if !strings.Contains(out, w) {
					t.Errorf("log does not contain %q:\n%s", w, out)
				}
			}
			deadRecs := second.stream("acme", logschema.DeadLetterStream)
			if int64(len(deadRecs)) != st.WALSalvagedRecords {
				t.Errorf("%d dead letters, want %d", len(deadRecs), st.WALSalvagedRecords)
			}
			for _, r := range deadRecs {
				attrs := map[string]string{}
				for _, kv := range r.Attributes {
					attrs[kv.Key] = kv.Value
				}
				if attrs[logschema.AttrDeadStream] != "s" || attrs[logschema.AttrDeadStage] != salvageStage || !strings.Contains(attrs[logschema.AttrDeadError], "damaged write-ahead log record in segment "+seg) {
					t.Errorf("dead letter with attributes %v", attrs)
				}
			}

			// A third start finds the same damage (nothing was published)
			// and dead-letters nothing twice.
			var third consumers
			b3 := mustNew(t, cfg, third.deps(nil))
			st3 := b3.Stats()
			// Pushes go on after the damage, with offsets after it.
			if err := b3.Push(ctx, batchOf("s", recsOf(svcs[0], 1000, 1)...), Durable); err != nil {
				t.Fatal(err)
			}
			mustShutdown(t, b3)
			if st3.WALDamage != 1 {
				t.Errorf("third start: Stats.WALDamage = %d, want 1", st3.WALDamage)
			}
			if got := len(third.stream("acme", logschema.DeadLetterStream)); got != len(deadRecs) {
				t.Errorf("third start: %d dead letters, want the %d of before, once", got, len(deadRecs))
			}
			if got := third.offsetsOf(p0); got[len(got)-1] != batches*size {
				t.Errorf("push after recovery got offset %d, want %d", got[len(got)-1], batches*size)
			}
		})
	}
}

// TestWALUnrecoverableStream gives one stream a log segment of another
// format version: the buffer must start, recover the other stream, count
// and log the failure, and fail pushes to the broken stream with
// ErrStreamUnavailable (the corruption error as its cause, the server's
// paths not in its message), leaving its log as it was.
func TestWALUnrecoverableStream(t *testing.T) {
	cfg := walConfig(t)
	var first consumers
	b := mustNew(t, cfg, first.deps(nil))
	ctx := context.Background()
	for _, s := range []string{"broken", "fine"} {
		if err := b.Push(ctx, batchOf(s, recsOf("svc", 0, 5)...), Durable); err != nil {
			t.Fatal(err)
		}
	}
	mustShutdown(t, b)
	seg := filepath.Join(walDir(cfg.WALDir, Key{Tenant: "acme", Stream: "broken"}), segmentFile(1))
	editFile(t, seg, func(b []byte) { b[8] = 9 }) // format version 9
	before, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	var second consumers
	b2 := mustNew(t, cfg, second.deps(slog.New(slog.NewTextHandler(&logs, nil))))
	if st := b2.Stats(); st.RecoveryFailures != 1 || st.Streams != 1 {
		t.Errorf("Stats = %+v, want 1 recovery failure and 1 stream", st)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "stream=broken") {
		t.Errorf("log does not report the broken stream:\n%s", logs.String())
	}
	err = b2.Push(ctx, batchOf("broken", recsOf("svc", 5, 1)...), Durable)
	if !errors.Is(err, ErrStreamUnavailable) || !errors.As(err, new(*wal.CorruptionError)) {
		t.Errorf("push to the broken stream: %v, want ErrStreamUnavailable caused by a *wal.CorruptionError", err)
	}
	if err != nil && strings.Contains(err.Error(), cfg.WALDir) {
		t.Errorf("the push's error names the server's files: %v", err)
	}
	mustShutdown(t, b2)
	if got := second.offsetsOf(Key{Tenant: "acme", Stream: "fine"}); len(got) != 5 {
		t.Errorf("intact stream replayed %d records, want 5", len(got))
	}
	if after, err := os.ReadFile(seg); err != nil || !bytes.Equal(before, after) {
		t.Errorf("the broken log was modified (%v)", err)
	}
}

// segmentFile is the name of log segment i (docs/wal.md).
func segmentFile(i int) string { return fmt.Sprintf("%020d.wal", i) }

func equalInt64s(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestWALDamageProducers loses an idempotent producer's last batch to
// damage that leaves nothing decodable: after the restart the producer's
// next batch must be accepted despite the gap, and retries of its earlier
// batches must still be recognised.
func TestWALDamageProducers(t *testing.T) {
	cfg := walConfig(t)
	var first consumers
	b := mustNew(t, cfg, first.deps(nil))
	ctx := context.Background()
	for seq := uint64(1); seq <= 5; seq++ {
		if err := b.Push(ctx, producerBatch("alpha", seq, "svc"), Durable); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Push(ctx, producerBatch("beta", 1, "svc"), Durable); err != nil {
		t.Fatal(err)
	}
	mustShutdown(t, b)
	seg := filepath.Join(walDir(cfg.WALDir, Key{Tenant: "acme", Stream: "s"}), segmentFile(1))
	fr := frames(t, seg)
	if len(fr) != 6 {
		t.Fatalf("%d log records, want 6", len(fr))
	}
	// Zero alpha 5's payload: its checksum fails and nothing decodes.
	editFile(t, seg, func(b []byte) { clear(b[fr[4][0]+8 : fr[4][1]]) })

	var second consumers
	b2 := mustNew(t, cfg, second.deps(nil))
	if st := b2.Stats(); st.WALDamage != 1 || st.WALLostRecords != 1 || st.WALSalvagedRecords != 0 {
		t.Errorf("Stats = %+v, want 1 damaged span and 1 record lost", st)
	}
	if err := b2.Push(ctx, producerBatch("alpha", 4, "svc"), Durable); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of alpha 4: %v, want ErrDuplicate", err)
	}
	if err := b2.Push(ctx, producerBatch("alpha", 6, "svc"), Durable); err != nil {
		t.Errorf("alpha 6 after its 5 was lost: %v", err)
	}
	if err := b2.Push(ctx, producerBatch("alpha", 8, "svc"), Durable); !errors.Is(err, ErrSequence) {
		t.Errorf("alpha 8 after 6: %v, want ErrSequence (the gap is allowed once)", err)
	}
	if err := b2.Push(ctx, producerBatch("beta", 1, "svc"), Durable); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of beta 1: %v, want ErrDuplicate", err)
	}
	mustShutdown(t, b2)
}

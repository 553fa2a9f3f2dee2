package buffer

import (
	"context"
	"testing"
)

// TestMarks: a stream's marks give each partition's next offset and a
// commit watermark that reaches it once the consumer took every record
// (the test consumer holds nothing unpublished).
func TestMarks(t *testing.T) {
	t.Parallel()
	h := newHarness()
	cfg := testConfig()
	cfg.Partitions = 2
	b := mustNew(t, cfg, h.deps())
	defer mustShutdown(t, b)
	if m := b.Marks("acme", "app"); m != nil {
		t.Fatalf("marks of an unknown stream: %v", m)
	}
	svcs := servicesOnDistinctPartitions(t, 2, 2)
	p0, p1 := partitionOf(svcs[0], 2), partitionOf(svcs[1], 2)
	if err := b.Push(context.Background(), batchOf("app", append(recsOf(svcs[0], 0, 3), recsOf(svcs[1], 0, 5)...)...), Accepted); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the watermark passes every record", func() bool {
		m := b.Marks("acme", "app")
		return len(m) == 2 && m[p0] == Mark{Committed: 3, Next: 3} && m[p1] == Mark{Committed: 5, Next: 5}
	})
}

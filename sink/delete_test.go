package sink_test

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// TestDeleteRows deletes some rows of one file, all rows of another and
// none of a third: the first is rewritten without them (the observer
// swaps it), the second removed, the third untouched; a restart after a
// crash that left the replaced file on disk shows the same lake, and
// the deleted offsets count as published.
func TestDeleteRows(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.CompactAge = 0
	l := newLake(t, cfg, &crashObserver{})
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 3000, BatchRows: 1000, Start: hour0})
	defer ReleaseAll(recs)
	p := part("app", 0)
	for _, r := range recs {
		write(t, l, p, []arrow.RecordBatch{r})
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	before := l.Files()
	if len(before) != 3 {
		t.Fatalf("%d files", len(before))
	}
	del := map[int32]sink.OffsetSet{0: {{From: 10, To: 20}, {From: 500, To: 501}, {From: 1000, To: 2000}}, 1: {{From: 2000, To: 3000}}}
	res, err := l.DeleteRows(context.Background(), "acme", "app", hour0, del)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1011 || res.Rewritten != 1 || res.Removed != 1 {
		t.Errorf("DeleteRows = %+v; want 1011 rows, 1 file rewritten, 1 removed", res)
	}
	check := func(l *sink.Lake) {
		t.Helper()
		files := l.Files()
		if len(files) != 2 {
			t.Fatalf("files after delete: %+v", files)
		}
		seen := offsetsIn(t, files)
		if len(seen) != 1989 {
			t.Errorf("%d offsets left, want 1989", len(seen))
		}
		for o := range seen {
			if del[0].Contains(o) {
				t.Errorf("deleted offset %d still there", o)
			}
		}
		set, err := l.PublishedOffsets(context.Background(), "acme", "app", 0, 0)
		if err != nil || len(set) != 1 || set[0] != (sink.OffsetRange{From: 0, To: 3000}) {
			t.Errorf("PublishedOffsets = %v, %v; deleted offsets must count as published", set, err)
		}
	}
	check(l)
	shutdown(t, l) // "crash": the observer kept the replaced and removed files
	for _, f := range before[:2] {
		if !exists(f.Path) {
			t.Fatalf("%s should still be on disk", f.Path)
		}
	}
	l2 := newLake(t, cfg, nil)
	defer shutdown(t, l2)
	check(l2)
	for _, f := range before[:2] {
		if exists(f.Path) {
			t.Errorf("%s not deleted at start-up", f.Path)
		}
	}
	if got := l2.LastOffset("acme", "app", 0); got != 3000 {
		t.Errorf("LastOffset = %d, want 3000", got)
	}
	assertNoTemp(t, cfg.Dir)
}

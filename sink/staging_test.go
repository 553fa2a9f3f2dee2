package sink_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/sink"
)

// TestParallelStagingKeepsOrder: with several encoders, the batches of
// one partition are encoded at once but land in their files in Write
// order, files full by size are published by whoever commits their last
// segment, and every row is published once.
func TestParallelStagingKeepsOrder(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Encoders = 4
	cfg.TargetFileBytes = 24 << 10
	rec := &recorder{}
	l := newLake(t, cfg, rec)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const rows = 12000
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: rows, BatchRows: 100})
	defer ReleaseAll(recs)
	write(t, l, part("app", 0), recs)
	shutdown(t, l)

	files := l.Files()
	if len(files) < 3 {
		t.Fatalf("%d files, want several (published by size)", len(files))
	}
	if !slices.IsSortedFunc(files, func(a, b sink.FileInfo) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatal("Files not sorted by ID")
	}
	next := int64(0)
	for _, f := range files {
		tbl := readTable(t, f.Path, memory.DefaultAllocator)
		col := tbl.Column(int(tbl.Schema().FieldIndices("_offset")[0]))
		for _, c := range col.Data().Chunks() {
			for _, v := range c.(*array.Int64).Int64Values() {
				if v != next {
					tbl.Release()
					t.Fatalf("file %s: offset %d where %d was due: rows out of Write order", f.ID, v, next)
				}
				next++
			}
		}
		tbl.Release()
		if f.MinOffset > f.MaxOffset || f.Rows != f.MaxOffset-f.MinOffset+1 {
			t.Errorf("file %s: %d rows, offsets %d..%d", f.ID, f.Rows, f.MinOffset, f.MaxOffset)
		}
	}
	if next != rows {
		t.Errorf("%d rows published, want %d", next, rows)
	}
	// Staged reports a file's rows growing batch by batch, once per Write.
	staged := make(map[string]int64)
	n := 0
	for _, e := range rec.snapshot() {
		if e.published || e.abandoned {
			continue
		}
		n++
		if e.rows != 100 {
			t.Fatalf("Staged a segment of %d rows, want 100", e.rows)
		}
		staged[e.file.ID] += e.rows
		if e.file.Rows != staged[e.file.ID] {
			t.Fatalf("Staged(%s) reports %d rows after %d staged", e.file.ID, e.file.Rows, staged[e.file.ID])
		}
	}
	if n != len(recs) {
		t.Errorf("Staged called %d times, want %d", n, len(recs))
	}
	assertNoTemp(t, cfg.Dir)
}

// TestParallelStagingEncodeFailure: a batch that cannot be encoded
// abandons its file once the batches queued behind it are done, whoever
// finishes them; the FileError reaches Flush and the next Write, the
// rows count as unpublished, and no segment is left behind.
func TestParallelStagingEncodeFailure(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Encoders = 2
	rec := &recorder{staged: make(chan struct{}, 1)}
	l := newLake(t, cfg, rec)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 800, BatchRows: 100})
	defer ReleaseAll(recs)
	p := part("app", 0)
	write(t, l, p, recs[:1])
	select {
	case <-rec.staged:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch was not staged within 10s")
	}
	// The file's directory goes away: the segments of the next batches
	// cannot be created.
	if err := os.RemoveAll(filepath.Join(cfg.Dir, "tenant=acme", "stream=app")); err != nil {
		t.Fatal(err)
	}
	// The FileError reaches the caller once: from this Write if the
	// file was abandoned before it returned (then its rows are not in
	// the lake and are sent again), else from the next one.
	var fe *sink.FileError
	resend := 2
	if err := l.Write(context.Background(), p, recs[1]); err != nil {
		if !errors.As(err, &fe) || fe.File.MinOffset != 0 {
			t.Fatalf("Write = %v, want nil or the FileError of the file from offset 0", err)
		}
		resend = 1
	}
	if err := l.Flush(context.Background()); err != nil && !errors.As(err, &fe) {
		t.Fatalf("Flush = %v, want nil or a FileError", err)
	}
	if off, ok := l.OldestUnpublished("acme", "app", 0); !ok || off != 0 {
		t.Errorf("OldestUnpublished = %d, %v; want 0, true: the abandoned rows are not published", off, ok)
	}
	if resend == 2 {
		if err := l.Write(context.Background(), p, recs[2]); !errors.As(err, &fe) || fe.File.Partition != p || fe.File.MinOffset != 0 {
			t.Fatalf("next Write = %v, want the FileError of the file from offset 0", err)
		}
	}
	write(t, l, p, recs[resend:])
	shutdown(t, l)
	files := l.Files()
	if want := int64(len(recs)-resend) * 100; len(files) != 1 || files[0].Rows != want || files[0].MinOffset != int64(resend)*100 {
		t.Errorf("Files = %+v, want one file of the %d rows written after the failure", files, want)
	}
	abandoned := 0
	for _, e := range rec.snapshot() {
		if e.abandoned {
			abandoned++
		}
	}
	if abandoned != 1 {
		t.Errorf("Abandoned called %d times, want once", abandoned)
	}
	assertNoTemp(t, cfg.Dir)
}

// TestWaitStaged: once WaitStaged returns, the Observer has been told of
// every row of the Writes that returned before it, though the encoders
// stage them after Write returns.
func TestWaitStaged(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Encoders = 4
	rec := &recorder{}
	l := newLake(t, cfg, rec)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, l)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 4000, BatchRows: 500})
	defer ReleaseAll(recs)
	for i := range 4 {
		write(t, l, part("app", int32(i)), recs[2*i:2*i+2])
		if err := l.WaitStaged(context.Background()); err != nil {
			t.Fatal(err)
		}
		var staged int64
		for _, e := range rec.snapshot() {
			if !e.published && !e.abandoned {
				staged += e.rows
			}
		}
		if want := int64(1000 * (i + 1)); staged != want {
			t.Fatalf("after WaitStaged, %d rows staged, want %d", staged, want)
		}
	}
}

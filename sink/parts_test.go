package sink_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/weirlabs/weir/sink"
)

// TestWriteParts writes batches given in parts, large parts (encoded as
// the chunks of one table), small ones (runs of them concatenated first)
// and both mixed, and checks that each Write is one segment whose rows
// are the parts' in order, in row groups no larger than RowGroupRows.
func TestWriteParts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sizes []int // part sizes, repeated
	}{
		{"large parts", []int{1000}},
		{"small parts", []int{7}},
		{"mixed parts", []int{950, 3, 3, 44, 200, 1}},
		{"one part", []int{2600}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			wmem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer wmem.AssertSize(t, 0)

			cfg := testConfig(t)
			cfg.RowGroupRows = 1024 // the second Write spans row groups
			obs := &recorder{}
			l, err := sink.NewWithAllocator(cfg, obs, nil, wmem)
			if err != nil {
				t.Fatal(err)
			}
			first := cut(SynthBatches(mem, SynthOptions{Rows: 700, FirstOffset: 0, Start: hour0}), tc.sizes)
			defer ReleaseAll(first)
			second := cut(SynthBatches(mem, SynthOptions{Rows: 2600, FirstOffset: 700, Start: hour0, Seed: 7}), tc.sizes)
			defer ReleaseAll(second)
			p := part("app", 0)
			for _, recs := range [][]arrow.RecordBatch{first, second} {
				if err := l.Write(context.Background(), p, recs...); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			shutdown(t, l)

			var staged []int64
			for _, e := range obs.snapshot() {
				if !e.published && e.rows != 0 {
					staged = append(staged, e.rows)
				}
			}
			if fmt.Sprint(staged) != "[700 2600]" {
				t.Errorf("staged segments of %v rows, want one per Write: [700 2600]", staged)
			}
			files := l.Files()
			if len(files) != 1 || files[0].Rows != 3300 || files[0].MinOffset != 0 || files[0].MaxOffset != 3299 {
				t.Fatalf("files = %+v, want one of 3300 rows, offsets 0 to 3299", files)
			}
			pf, err := file.OpenParquetFile(files[0].Path, false)
			if err != nil {
				t.Fatal(err)
			}
			for i := range pf.NumRowGroups() {
				if n := pf.MetaData().RowGroup(i).NumRows(); n > int64(cfg.RowGroupRows) {
					t.Errorf("row group %d has %d rows, more than RowGroupRows %d", i, n, cfg.RowGroupRows)
				}
			}
			pf.Close()
			rmem := memory.NewGoAllocator()
			tbl := readTable(t, files[0].Path, rmem)
			defer tbl.Release()
			assertColumns(t, tbl, append(append([]arrow.RecordBatch(nil), first...), second...), mem, rmem)
		})
	}
}

// cut releases recs and returns their rows as parts of the given sizes,
// repeated (the last part may be shorter).
func cut(recs []arrow.RecordBatch, sizes []int) []arrow.RecordBatch {
	one := sink.ConcatRecords(recs)
	defer one.Release()
	ReleaseAll(recs)
	var parts []arrow.RecordBatch
	for lo, i := int64(0), 0; lo < one.NumRows(); i++ {
		hi := min(lo+int64(sizes[i%len(sizes)]), one.NumRows())
		parts = append(parts, one.NewSlice(lo, hi))
		lo = hi
	}
	return parts
}

// TestWritePartsOfTwoSchemas checks that a Write whose parts disagree
// on their schema is refused and writes nothing.
func TestWritePartsOfTwoSchemas(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	l := newLake(t, cfg, nil)
	defer shutdown(t, l)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 10, Start: hour0})
	defer ReleaseAll(recs)
	other := recs[0].NewSlice(0, 5)
	defer other.Release()
	cols := other.Columns()[:other.NumCols()-1]
	narrow := array.NewRecordBatch(arrow.NewSchema(other.Schema().Fields()[:len(cols)], nil), cols, other.NumRows())
	defer narrow.Release()
	err := l.Write(context.Background(), part("app", 0), recs[0], narrow)
	if err == nil || !strings.Contains(err.Error(), "different schemas") {
		t.Fatalf("Write of two schemas: err = %v, want one naming the different schemas", err)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if files := l.Files(); len(files) != 0 {
		t.Errorf("files = %+v after a refused Write, want none", files)
	}
}

// BenchmarkSegmentParts measures Write of one batch of 64 Ki rows built
// from parts of a given size (the Batcher's columnar pushes), against
// Write of the same rows concatenated by the caller first: the cost the
// stream's goroutine paid before the lake took parts. Without Start, the
// encoding runs inside Write.
//
//	go test -run '^$' -bench BenchmarkSegmentParts -benchtime 20x -count 3 ./sink/
func BenchmarkSegmentParts(b *testing.B) {
	bodies := LoadLoghub(b)
	const rows = 64 << 10
	for _, sizes := range [][]int{{4000}, {1000}, {950, 50}, {100}, {10}} {
		recs := cut(SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: rows, Start: hour0, Bodies: bodies}), sizes)
		name := strings.Trim(strings.ReplaceAll(fmt.Sprint(sizes), " ", "+"), "[]")
		for _, mode := range []string{"parts", "concatenated"} {
			b.Run(fmt.Sprintf("part=%s/%s", name, mode), func(b *testing.B) {
				cfg := sink.DefaultConfig()
				cfg.Dir = b.TempDir()
				cfg.DayFilesAfter = 0
				l, err := sink.New(cfg, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				p := part("bench", 0)
				for b.Loop() {
					if mode == "parts" {
						err = l.Write(context.Background(), p, recs...)
					} else {
						one := sink.ConcatRecords(recs)
						err = l.Write(context.Background(), p, one)
						one.Release()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				b.StopTimer()
				if err := l.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
			})
		}
		ReleaseAll(recs)
	}
}

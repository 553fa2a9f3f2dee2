package sink_test

import (
	"os"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	pq "github.com/parquet-go/parquet-go"

	"github.com/weirlabs/weir/sink"
)

// TestSegmentsConcatenated writes batches of mixed sizes: segments of at
// least RowGroupRows/8 rows become row groups of the published file as
// they are, runs of smaller ones are merged into one row group each, and
// every row comes back in order through both Parquet readers.
func TestSegmentsConcatenated(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	wmem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer wmem.AssertSize(t, 0)
	rmem := memory.NewGoAllocator()

	cfg := testConfig(t)
	cfg.RowGroupRows = 2048 // segments under 256 rows are small
	l, err := sink.NewWithAllocator(cfg, nil, nil, wmem)
	if err != nil {
		t.Fatal(err)
	}
	all := SynthBatches(mem, SynthOptions{Rows: 3000, BatchRows: 3000, FirstOffset: 7, Start: hour0, Bodies: LoadLoghub(t)})
	defer ReleaseAll(all)
	sizes := []int64{50, 60, 300, 10, 20, 30, 1000, 2500 - 1470 - 5, 5}
	var recs []arrow.RecordBatch
	var at int64
	for _, n := range sizes {
		recs = append(recs, all[0].NewSlice(at, at+n))
		at += n
	}
	defer ReleaseAll(recs)
	p := part("app", 0)
	write(t, l, p, recs)
	shutdown(t, l)

	files := l.Files()
	if len(files) != 1 || files[0].Rows != at || files[0].MinOffset != 7 || files[0].MaxOffset != 7+at-1 {
		t.Fatalf("files %+v, want one of %d rows", files, at)
	}
	assertNoTemp(t, cfg.Dir)

	rdr, err := file.OpenParquetFile(files[0].Path, false)
	if err != nil {
		t.Fatal(err)
	}
	var groups []int64
	for i := range rdr.NumRowGroups() {
		groups = append(groups, rdr.MetaData().RowGroup(i).NumRows())
	}
	rdr.Close()
	want := []int64{110, 300, 60, 1000, 1025, 5} // [50 60] [300] [10 20 30] [1000] [1025] [5]
	if !slices.Equal(groups, want) {
		t.Errorf("row groups %v, want %v", groups, want)
	}

	tbl := readTable(t, files[0].Path, rmem)
	defer tbl.Release()
	assertColumns(t, tbl, recs, mem, rmem)

	// parquet-go reads every row of the concatenated footer.
	f, err := os.Open(files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := pq.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	r := pq.NewGenericReader[logRow](pf)
	defer r.Close()
	rows := make([]logRow, at+1)
	n, _ := r.Read(rows)
	if int64(n) != at {
		t.Fatalf("parquet-go read %d rows, want %d", n, at)
	}
	for i := range n {
		if rows[i].Offset != 7+int64(i) {
			t.Fatalf("row %d has _offset %d, want %d", i, rows[i].Offset, 7+i)
		}
	}
}

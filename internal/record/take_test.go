package record

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/logschema"
)

// TestTakeParts gathers rows from several parts of a batch (of the log's
// columns, with nulls, maps and ids) in a shuffled order, with a row
// taken twice, and checks them against the same rows taken from the
// whole batch; and the types promoted attribute columns have.
func TestTakeParts(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs := realisticBatch(t, 500).Records
	recs[7].Attributes, recs[8].Resource = nil, nil
	whole := Columns(recs, mem)
	defer whole.Release()
	cuts := []int64{0, 1, 120, 121, 400, 500}
	var locs []Loc
	var idx []int
	for p := range len(cuts) - 1 {
		for r := cuts[p]; r < cuts[p+1]; r++ {
			locs = append(locs, Loc{Part: int32(p), Row: int32(r - cuts[p])})
			idx = append(idx, int(r))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i]; locs[i], locs[j] = locs[j], locs[i] })
	idx, locs = append(idx, idx[3]), append(locs, locs[3])
	want := Take(whole, idx, mem)
	defer want.Release()
	for c := range int(whole.NumCols()) {
		if !CanTake(whole.Column(c).DataType()) {
			t.Fatalf("CanTake(%s) = false", whole.Column(c).DataType())
		}
		// Each part in buffers of its own, as compaction's window holds
		// them (a slice would share its children with the others).
		parts := make([]arrow.Array, len(cuts)-1)
		for p := range parts {
			s := array.NewSlice(whole.Column(c), cuts[p], cuts[p+1])
			cp, err := array.Concatenate([]arrow.Array{s}, mem)
			if err != nil {
				t.Fatal(err)
			}
			s.Release()
			parts[p] = cp
		}
		got, err := TakeParts(parts, locs, mem)
		if err != nil {
			t.Fatal(err)
		}
		if !array.Equal(got, want.Column(c)) {
			t.Errorf("column %s: TakeParts differs from Take", whole.Schema().Field(c).Name)
		}
		got.Release()
		for _, p := range parts {
			p.Release()
		}
	}
	var rows []Record
	for _, i := range idx {
		rows = append(rows, recs[i])
	}
	if !reflect.DeepEqual(Rows(want), rowsWant(rows)) {
		t.Fatal("Take differs from the records")
	}

	// Promoted attribute columns.
	i64 := array.NewInt64Builder(mem)
	f64 := array.NewFloat64Builder(mem)
	bo := array.NewBooleanBuilder(mem)
	for i := range 6 {
		if i == 2 {
			i64.AppendNull()
			f64.AppendNull()
			bo.AppendNull()
			continue
		}
		i64.Append(int64(i))
		f64.Append(float64(i) / 2)
		bo.Append(i%2 == 0)
	}
	// Rows 5, 2 (null), 0 and 3 of each.
	wantI := array.NewInt64Builder(mem)
	wantI.AppendValues([]int64{5, 0, 0, 3}, []bool{true, false, true, true})
	wantF := array.NewFloat64Builder(mem)
	wantF.AppendValues([]float64{2.5, 0, 0, 1.5}, []bool{true, false, true, true})
	wantB := array.NewBooleanBuilder(mem)
	wantB.AppendValues([]bool{false, false, true, false}, []bool{true, false, true, true})
	for i, bld := range []array.Builder{i64, f64, bo} {
		a := bld.NewArray()
		bld.Release()
		exp := []array.Builder{wantI, wantF, wantB}[i].NewArray()
		parts := []arrow.Array{array.NewSlice(a, 0, 3), array.NewSlice(a, 3, 6)}
		got, err := TakeParts(parts, []Loc{{1, 2}, {0, 2}, {0, 0}, {1, 0}}, mem)
		if err != nil {
			t.Fatal(err)
		}
		if !array.Equal(got, exp) {
			t.Errorf("%s: got %v, want %v", a.DataType(), got, exp)
		}
		for _, x := range append(parts, a, got, exp) {
			x.Release()
		}
	}
	wantI.Release()
	wantF.Release()
	wantB.Release()
	if CanTake(arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64)) || CanTake(arrow.BinaryTypes.LargeString) {
		t.Error("CanTake accepts a type it cannot copy")
	}
	if !CanTake(logschema.Arrow().Field(0).Type) {
		t.Error("CanTake refuses the lake's timestamp")
	}
}

// TestTakeRuns takes a slice of a batch (its offsets not at zero) in
// the buffer's lane order, runs of following rows with every 13th row
// moved to the end, and checks the rows against the records.
func TestTakeRuns(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs := realisticBatch(t, 300).Records
	whole := Columns(recs, mem)
	defer whole.Release()
	const from = 7
	slice := whole.NewSlice(from, int64(len(recs)))
	defer slice.Release()
	var idx, moved []int
	for r := range len(recs) - from {
		if r%13 == 0 {
			moved = append(moved, r)
		} else {
			idx = append(idx, r)
		}
	}
	idx = append(idx, moved...)
	got := Take(slice, idx, mem)
	defer got.Release()
	var rows []Record
	for _, i := range idx {
		rows = append(rows, recs[from+i])
	}
	if !reflect.DeepEqual(Rows(got), rowsWant(rows)) {
		t.Fatal("rows taken in runs differ from the records")
	}
}

// TestTakeMapsWithNulls gathers map rows that are null, empty, or hold
// null values, from slices of one array (whose offsets do not start at
// zero), and checks them against maps built row by row.
func TestTakeMapsWithNulls(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	type entry struct {
		k, v string
		null bool
	}
	build := func(rows [][]entry) arrow.Array {
		b := array.NewMapBuilderWithType(mem, arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String))
		defer b.Release()
		kb, vb := b.KeyBuilder().(*array.StringBuilder), b.ItemBuilder().(*array.StringBuilder)
		for _, r := range rows {
			if r == nil {
				b.AppendNull()
				continue
			}
			b.Append(true)
			for _, e := range r {
				kb.Append(e.k)
				if e.null {
					vb.AppendNull()
				} else {
					vb.Append(e.v)
				}
			}
		}
		return b.NewArray()
	}
	rows := [][]entry{
		{{k: "a", v: "1"}},
		nil,
		{},
		{{k: "b", v: "2"}, {k: "c", null: true}},
		{{k: "d", v: "4"}, {k: "e", v: "5"}},
		nil,
	}
	whole := build(rows)
	defer whole.Release()
	parts := []arrow.Array{array.NewSlice(whole, 0, 2), array.NewSlice(whole, 2, 6)}
	defer parts[0].Release()
	defer parts[1].Release()
	// Rows 4, 1 (null), 3, 0, 2 (empty), 5 (null) and 3 again.
	locs := []Loc{{1, 2}, {0, 1}, {1, 1}, {0, 0}, {1, 0}, {1, 3}, {1, 1}}
	got, err := TakeParts(parts, locs, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := build([][]entry{rows[4], nil, rows[3], rows[0], {}, nil, rows[3]})
	defer want.Release()
	if !array.Equal(got, want) || got.NullN() != 2 {
		t.Errorf("got %v (%d nulls), want %v", got, got.NullN(), want)
	}
}

func BenchmarkTake(b *testing.B) {
	batch := realisticBatch(b, 1000)
	cols := Columns(batch.Records, memory.DefaultAllocator)
	defer cols.Release()
	shuffled := rand.New(rand.NewPCG(3, 4)).Perm(1000)
	// The buffer's lane order: one record in 20 (a priority record)
	// moved behind the others.
	var lanes, moved []int
	for r := range 1000 {
		if r%20 == 0 {
			moved = append(moved, r)
		} else {
			lanes = append(lanes, r)
		}
	}
	lanes = append(lanes, moved...)
	for _, c := range []struct {
		name string
		idx  []int
	}{{"order=shuffled", shuffled}, {"order=lanes", lanes}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Take(cols, c.idx, memory.DefaultAllocator).Release()
			}
			b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "records/s")
		})
	}
}

package sink_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/sink"
)

// footerRollup is the weir.rollup footer value, version 2 (docs/format.md,
// "Rollups").
type footerRollup struct {
	Version       int      `json:"v"`
	Rows          int64    `json:"rows"`
	M0            int64    `json:"m0"`
	M             []int64  `json:"m"`
	S             []int    `json:"s"`
	SN            []int32  `json:"sn"`
	ST            []int    `json:"st"`
	P             []*int   `json:"p"`
	N             []int64  `json:"n"`
	Services      []string `json:"services"`
	SeverityTexts []string `json:"severity_texts"`
	Patterns      []string `json:"patterns"`
	Bodies        []struct {
		B string `json:"b"`
		N int64  `json:"n"`
	} `json:"bodies"`
	BodiesExact bool `json:"bodies_exact"`
}

// TestCompactionRollupAndBloom compacts rows of several minutes and
// reads the compacted file back with arrow-go's Parquet reader: its
// footer's rollup counts the file's rows by minute, service and
// severity exactly, keeps its 100 most frequent bodies with their exact
// counts, and every row group has a bloom filter on trace_id that holds
// each of its trace ids and few others.
func TestCompactionRollupAndBloom(t *testing.T) {
	t.Parallel()
	cfg := compactConfig(t)
	cfg.CompactAge = 0 // Compact compacts every file
	cfg.RowGroupRows = 2048
	l := newLake(t, cfg, nil)
	defer shutdown(t, l)
	p := part("app", 0)
	bodies := make([]string, 150)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("line %d", i*i%97)
	}
	for i, start := range []time.Duration{0, 7 * time.Minute, 23*time.Minute + 59*time.Second} {
		recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 3000, BatchRows: 1000, FirstOffset: int64(i) * 3000,
			Start: hour0.Add(start), Bodies: bodies, Seed: uint64(i)})
		write(t, l, p, recs)
		ReleaseAll(recs)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Compact(context.Background()); err != nil || n != 1 {
		t.Fatalf("Compact = %d, %v; want 1 file replaced", n, err)
	}
	files := l.Files()
	if len(files) != 1 || !files[0].Compacted || !files[0].Rollup {
		t.Fatalf("files after compaction: %+v; want one, compacted, with a rollup", files)
	}

	rdr, err := file.OpenParquetFile(files[0].Path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	v := rdr.MetaData().KeyValueMetadata().FindValue("weir.rollup")
	if v == nil {
		t.Fatal("no weir.rollup in the footer")
	}
	var got footerRollup
	if err := json.Unmarshal([]byte(*v), &got); err != nil {
		t.Fatal(err)
	}

	// The same counts, from the rows.
	tbl := readTable(t, files[0].Path, memory.DefaultAllocator)
	defer tbl.Release()
	want := map[string]int64{}
	bodyCounts := map[string]int64{}
	tr := array.NewTableReader(tbl, 0)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
		ts := col(logschema.Timestamp).(*array.Timestamp)
		svc := col(logschema.ServiceName).(*array.String)
		sn := col(logschema.SeverityNumber).(*array.Int32)
		st := col(logschema.SeverityText).(*array.String)
		body := col(logschema.Body).(*array.String)
		for i := range int(rec.NumRows()) {
			m := time.Unix(0, int64(ts.Value(i))).Truncate(time.Minute).UnixMilli()
			want[fmt.Sprintf("%d %s %d %s <nil>", m, svc.Value(i), sn.Value(i), st.Value(i))]++
			bodyCounts[body.Value(i)]++
		}
	}
	gotCounts := map[string]int64{}
	var sum int64
	for i, n := range got.N {
		var p *string
		if got.P != nil && got.P[i] != nil {
			p = &got.Patterns[*got.P[i]]
		}
		gotCounts[fmt.Sprintf("%d %s %d %s %v", (got.M0+got.M[i])*60000, got.Services[got.S[i]], got.SN[i], got.SeverityTexts[got.ST[i]], p)] += n
		sum += n
	}
	if got.Version != 2 || got.Rows != 9000 || sum != 9000 {
		t.Errorf("rollup version %d, rows %d, counts summing to %d; want 2, 9000, 9000", got.Version, got.Rows, sum)
	}
	if fmt.Sprint(gotCounts) != fmt.Sprint(want) {
		t.Errorf("rollup counts\n%v\nwant\n%v", gotCounts, want)
	}
	if files[0].RollupCounts != len(got.N) {
		t.Errorf("FileInfo.RollupCounts = %d, the rollup holds %d", files[0].RollupCounts, len(got.N))
	}
	type bc struct {
		b string
		n int64
	}
	var top []bc
	for b, n := range bodyCounts {
		top = append(top, bc{b, n})
	}
	slices.SortFunc(top, func(a, b bc) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.b, b.b)) })
	top = top[:min(len(top), sink.RollupTopBodies)]
	if !got.BodiesExact || len(got.Bodies) != len(top) {
		t.Fatalf("rollup has %d bodies (exact %v), want %d exact", len(got.Bodies), got.BodiesExact, len(top))
	}
	for i, b := range got.Bodies {
		if b.B != top[i].b || b.N != top[i].n {
			t.Errorf("top body %d = %q × %d, want %q × %d", i, b.B, b.N, top[i].b, top[i].n)
		}
	}

	// Bloom filters on trace_id, row group by row group.
	traceCol := rdr.MetaData().Schema.ColumnIndexByName(logschema.TraceID)
	bf := rdr.GetBloomFilterReader()
	r := rand.New(rand.NewPCG(1, 1))
	var probes, falsePos int
	row := 0
	traces := tbl.Column(tbl.Schema().FieldIndices(logschema.TraceID)[0]).Data()
	ids := make([]string, 0, tbl.NumRows())
	for _, ch := range traces.Chunks() {
		s := ch.(*array.String)
		for i := range s.Len() {
			ids = append(ids, map[bool]string{true: "", false: s.Value(i)}[s.IsNull(i)])
		}
	}
	if rdr.NumRowGroups() < 4 {
		t.Fatalf("%d row groups, want at least 4", rdr.NumRowGroups())
	}
	for g := range rdr.NumRowGroups() {
		rg, err := bf.RowGroup(g)
		if err != nil {
			t.Fatal(err)
		}
		filter, err := rg.GetColumnBloomFilter(traceCol)
		if err != nil || filter == nil {
			t.Fatalf("row group %d: no bloom filter on trace_id: %v", g, err)
		}
		n := int(rdr.MetaData().RowGroup(g).NumRows())
		for _, id := range ids[row : row+n] {
			if id != "" && !filter.CheckHash(filter.Hasher().Sum64([]byte(id))) {
				t.Errorf("row group %d: the bloom filter lacks trace id %s", g, id)
			}
		}
		row += n
		for range 1000 {
			probes++
			if filter.CheckHash(filter.Hasher().Sum64([]byte(fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())))) {
				falsePos++
			}
		}
	}
	if falsePos*100 > probes*3 {
		t.Errorf("bloom filters answered yes to %d of %d absent trace ids, want about 1%%", falsePos, probes)
	}
}

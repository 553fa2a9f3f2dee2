package sink_test

import (
	"errors"
	"io"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	pq "github.com/parquet-go/parquet-go"
)

// TestReadWithParquetGo proves the files open in a reader other than the
// writer: parquet-go reads back every value of every row and checks it
// against the Arrow batches that were written (through arrowToRows, the
// same copy the encoding benchmark measures).
func TestReadWithParquetGo(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.RowGroupRows = 4096
	l := newLake(t, cfg, nil)
	recs := SynthBatches(memory.DefaultAllocator, SynthOptions{Rows: 10000, BatchRows: 1000, FirstOffset: 42, Bodies: LoadLoghub(t)})
	defer ReleaseAll(recs)
	write(t, l, part("app", 0), recs)
	shutdown(t, l)
	files := l.Files()
	if len(files) != 1 {
		t.Fatalf("files %+v", files)
	}

	f, err := os.Open(files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := pq.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	// One row group per 1000-row batch: segments of at least
	// RowGroupRows/8 rows are copied into the file as they are.
	if pf.NumRows() != 10000 || len(pf.RowGroups()) != 10 {
		t.Errorf("parquet-go sees %d rows in %d row groups", pf.NumRows(), len(pf.RowGroups()))
	}
	for _, name := range []string{"timestamp", "observed_timestamp"} {
		lt, _ := pf.Schema().Lookup(name)
		if got := lt.Node.Type().LogicalType().String(); got != "TIMESTAMP(isAdjustedToUTC=true,unit=NANOS)" {
			t.Errorf("%s: logical type %s, want TIMESTAMP(isAdjustedToUTC=true,unit=NANOS)", name, got)
		}
	}
	if attrs := pf.Schema().Fields()[5]; attrs.Name() != "attributes" || attrs.Type().LogicalType().String() != "MAP" {
		t.Errorf("column 5 is %s of logical type %s, want attributes as MAP", attrs.Name(), attrs.Type().LogicalType())
	}
	if c, ok := pf.Lookup("weir.part"); !ok || c != "0" {
		t.Errorf("weir.part = %q, %v", c, ok)
	}

	r := pq.NewGenericReader[logRow](f)
	defer r.Close()
	got := make([]logRow, 0, 10000)
	buf := make([]logRow, 777)
	for {
		n, err := r.Read(buf)
		for _, row := range buf[:n] {
			got = append(got, cloneRow(row))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 10000 {
		t.Fatalf("read %d rows, want 10000", len(got))
	}
	i := 0
	var want []logRow
	nulls := 0
	for _, rec := range recs {
		want = arrowToRows(want, rec)
		for _, w := range want {
			if !rowEqual(got[i], w) {
				t.Fatalf("row %d:\n got %+v\nwant %+v", i, got[i], w)
			}
			if w.TraceID == nil {
				nulls++
			}
			i++
		}
	}
	if nulls == 0 || nulls == 10000 {
		t.Errorf("%d null trace ids: the test should cover both", nulls)
	}
}

// cloneRow detaches a row from the reader's buffers.
func cloneRow(r logRow) logRow {
	cloneMap := func(m map[string]string) map[string]string {
		out := make(map[string]string, len(m))
		for k, v := range m {
			out[strings.Clone(k)] = strings.Clone(v)
		}
		return out
	}
	cloneStr := func(p *string) *string {
		if p == nil {
			return nil
		}
		s := strings.Clone(*p)
		return &s
	}
	r.SeverityText = strings.Clone(r.SeverityText)
	r.Body = strings.Clone(r.Body)
	r.ServiceName = strings.Clone(r.ServiceName)
	r.Attributes = cloneMap(r.Attributes)
	r.Resource = cloneMap(r.Resource)
	r.TraceID = cloneStr(r.TraceID)
	r.SpanID = cloneStr(r.SpanID)
	return r
}

func rowEqual(a, b logRow) bool {
	eqp := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.Timestamp == b.Timestamp && a.ObservedTimestamp == b.ObservedTimestamp &&
		a.SeverityNumber == b.SeverityNumber && a.SeverityText == b.SeverityText &&
		a.Body == b.Body && maps.Equal(a.Attributes, b.Attributes) && maps.Equal(a.Resource, b.Resource) &&
		a.ServiceName == b.ServiceName && eqp(a.TraceID, b.TraceID) && eqp(a.SpanID, b.SpanID) &&
		a.Flags == b.Flags && a.Partition == b.Partition && a.Offset == b.Offset
}

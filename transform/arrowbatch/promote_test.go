package arrowbatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// TestPromotion checks that attributes present in most of a partition's
// first records become typed columns, that the batches before the
// decision keep the plain schema, that a value of the wrong type is NULL
// in its column and counted while the map keeps it, and that rare keys
// stay in the map only.
func TestPromotion(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	w := &memWriter{}
	defer w.release()
	cfg := DefaultConfig()
	cfg.MaxColumns = 3
	bt := newTestBatcher(t, cfg, w, mem)
	ts := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano()
	rec := func(i int, status string) record.Record {
		attrs := []record.KV{
			{Key: "http.status", Value: status},
			{Key: "latency", Value: fmt.Sprintf("%d.5", i)},
			{Key: "cached", Value: fmt.Sprint(i%2 == 0)},
			{Key: "user", Value: fmt.Sprintf("u%d", i)}, // frequent, but a fourth column is one too many
		}
		if i%10 == 0 {
			attrs = append(attrs, record.KV{Key: "rare", Value: "x"})
		}
		return record.Record{Timestamp: ts, Body: "b", Attributes: attrs}
	}
	var recs []record.Record
	for i := range promoteAfter {
		recs = append(recs, rec(i, "200"))
	}
	ctx := context.Background()
	if err := bt.Consume(ctx, batchOf(0, recs...)); err != nil {
		t.Fatal(err)
	}
	if err := bt.Consume(ctx, batchOf(promoteAfter, rec(1, "200"), rec(2, "oops"))); err != nil {
		t.Fatal(err)
	}
	if err := bt.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.recs) != 2 {
		t.Fatalf("%d batches written, want 2 (one per schema)", len(w.recs))
	}
	if !w.recs[0].Schema().Equal(logschema.Arrow()) {
		t.Errorf("before the decision: %v", w.recs[0].Schema())
	}
	after := w.recs[1]
	want := map[string]arrow.DataType{
		"attr_cached": arrow.FixedWidthTypes.Boolean, "attr_http_status": arrow.PrimitiveTypes.Int64,
		"attr_latency": arrow.PrimitiveTypes.Float64,
	}
	fields := after.Schema().Fields()
	if len(fields) != len(logschema.Arrow().Fields())+len(want) {
		t.Fatalf("after the decision: %v", after.Schema())
	}
	for _, f := range fields[len(logschema.Arrow().Fields()):] {
		if typ, ok := want[f.Name]; !ok || !arrow.TypeEqual(typ, f.Type) {
			t.Errorf("column %s %s", f.Name, f.Type)
		}
	}
	status := after.Column(after.Schema().FieldIndices("attr_http_status")[0]).(*array.Int64)
	if status.Value(0) != 200 || !status.IsNull(1) {
		t.Errorf("attr_http_status = %v", status)
	}
	if bt.TypeConflicts() != 1 {
		t.Errorf("%d type conflicts, want 1", bt.TypeConflicts())
	}
	attrs := after.Column(idxAttributes).(*array.Map)
	items := attrs.Items().(*array.String)
	start, _ := attrs.ValueOffsets(1)
	if items.Value(int(start)) != "oops" {
		t.Errorf("the map lost the conflicting value: %q", items.Value(int(start)))
	}
}

func TestColumnName(t *testing.T) {
	for key, want := range map[string]string{
		"http.status": "attr_http_status", "User-Agent": "attr_user_agent", "": "",
		"a234567890123456789012345678901234567890123456789012345678901": "",
	} {
		if got := columnName(key); got != want {
			t.Errorf("columnName(%q) = %q, want %q", key, got, want)
		}
	}
}

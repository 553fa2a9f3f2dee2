package logschema_test

import (
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/weirlabs/weir/internal/logschema"
)

func TestArrowMatchesColumns(t *testing.T) {
	sc := logschema.Arrow()
	cols := logschema.Columns()
	if sc.NumFields() != len(cols) {
		t.Fatalf("%d fields, %d columns", sc.NumFields(), len(cols))
	}
	for i, c := range cols {
		f := sc.Field(i)
		if f.Name != c.Name || !arrow.TypeEqual(f.Type, c.Arrow) || f.Nullable != c.Nullable || c.SQL == "" {
			t.Errorf("field %d = %v, column %+v", i, f, c)
		}
	}
	if cols[len(cols)-1].Name != logschema.Offset {
		t.Errorf("last column %q, want %q: promoted columns follow it", cols[len(cols)-1].Name, logschema.Offset)
	}
}

func TestViewColumns(t *testing.T) {
	v := logschema.ViewColumns()
	if v[0].Name != logschema.Stream || v[len(v)-2].Name != logschema.Date || v[len(v)-1].Name != logschema.Hour {
		t.Errorf("view columns %v: want stream first, date and hour last", v)
	}
	sql := logschema.EmptyView()
	for _, c := range v {
		if !strings.Contains(sql, `NULL::`+c.SQL+` AS "`+c.Name+`"`) {
			t.Errorf("EmptyView lacks %s: %s", c.Name, sql)
		}
	}
	if !strings.HasSuffix(sql, " WHERE false") {
		t.Errorf("EmptyView = %s", sql)
	}
}

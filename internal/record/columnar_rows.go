package record

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// stringCol is a utf8 array read with one copy of its values: values are
// cut from one Go string, so records built from them hold no Arrow
// memory.
type stringCol struct {
	a    *array.String
	data string
	base int
}

func newStringCol(a *array.String, from, to int) stringCol {
	s := stringCol{a: a}
	if to > from {
		s.base = a.ValueOffset(from)
		end := a.ValueOffset(to-1) + a.ValueLen(to-1)
		s.data = string(valueData(a)[s.base:end])
	}
	return s
}

func (s *stringCol) value(i int) string {
	lo := s.a.ValueOffset(i) - s.base
	return s.data[lo : lo+s.a.ValueLen(i)]
}

// Rows returns the rows of rec, a batch in logschema.Batch(), as records
// that hold Go memory only.
func Rows(rec arrow.RecordBatch) []Record {
	n := int(rec.NumRows())
	out := make([]Record, n)
	ts := rec.Column(ColTimestamp).(*array.Timestamp).TimestampValues()
	obs := rec.Column(ColObservedTimestamp).(*array.Timestamp).TimestampValues()
	sev := rec.Column(ColSeverityNumber).(*array.Int32).Int32Values()
	flags := rec.Column(ColFlags).(*array.Uint32).Uint32Values()
	sevText := newStringCol(rec.Column(ColSeverityText).(*array.String), 0, n)
	body := newStringCol(rec.Column(ColBody).(*array.String), 0, n)
	trace := rec.Column(ColTraceID).(*array.FixedSizeBinary)
	span := rec.Column(ColSpanID).(*array.FixedSizeBinary)
	for i := range out {
		r := &out[i]
		r.Timestamp, r.ObservedTimestamp = int64(ts[i]), int64(obs[i])
		r.SeverityNumber, r.Flags = sev[i], flags[i]
		r.SeverityText, r.Body = sevText.value(i), body.value(i)
		if trace.IsValid(i) {
			copy(r.TraceID[:], trace.Value(i))
		}
		if span.IsValid(i) {
			copy(r.SpanID[:], span.Value(i))
		}
	}
	for _, c := range []int{ColAttributes, ColResource} {
		m := rec.Column(c).(*array.Map)
		lo, _ := m.ValueOffsets(0)
		_, hi := m.ValueOffsets(n - 1)
		keys := newStringCol(m.Keys().(*array.String), int(lo), int(hi))
		items := newStringCol(m.Items().(*array.String), int(lo), int(hi))
		slab := make([]KV, hi-lo)
		for i := range out {
			a, b := m.ValueOffsets(i)
			if a == b {
				continue
			}
			kvs := slab[a-lo : b-lo : b-lo]
			for j := range kvs {
				e := int(a) + j
				kvs[j] = KV{Key: keys.value(e), Value: items.value(e)}
			}
			if c == ColAttributes {
				out[i].Attributes = kvs
			} else {
				out[i].Resource = kvs
			}
		}
	}
	return out
}

// ValidateColumns checks the rows of rec, a batch in logschema.Batch(),
// as Record.Validate checks a record: it returns the error of the first
// row that fails, or nil.
func ValidateColumns(rec arrow.RecordBatch, now time.Time, lim Limits) error {
	n := int(rec.NumRows())
	minTS, maxTS := lim.Window(now)
	ts := rec.Column(ColTimestamp).(*array.Timestamp).TimestampValues()
	obs := rec.Column(ColObservedTimestamp).(*array.Timestamp).TimestampValues()
	sev := rec.Column(ColSeverityNumber).(*array.Int32).Int32Values()
	for i := 0; i < n; i++ {
		t, o, s := int64(ts[i]), int64(obs[i]), sev[i]
		eff := t
		if eff == 0 {
			eff = o
		}
		if t < 0 || t > maxTS || o < 0 || o > maxTS || s < 0 || s > 24 || eff != 0 && eff < minTS {
			r := Record{Timestamp: t, ObservedTimestamp: o, SeverityNumber: s}
			return r.ValidateRanges(i, now, lim)
		}
	}
	for _, c := range []int{ColBody, ColSeverityText, ColServiceName} {
		if i := invalidUTF8(rec.Column(c).(*array.String), 0, n); i >= 0 {
			return fmt.Errorf("record %d: %s: %w", i, rec.Schema().Field(c).Name, ErrInvalidUTF8)
		}
	}
	for _, c := range []int{ColAttributes, ColResource} {
		m := rec.Column(c).(*array.Map)
		lo, _ := m.ValueOffsets(0)
		_, hi := m.ValueOffsets(n - 1)
		for _, a := range []arrow.Array{m.Keys(), m.Items()} {
			if e := invalidUTF8(a.(*array.String), int(lo), int(hi)); e >= 0 {
				row := 0
				for row < n-1 {
					if _, end := m.ValueOffsets(row); int64(e) < end {
						break
					}
					row++
				}
				return fmt.Errorf("record %d: %s: %w", row, rec.Schema().Field(c).Name, ErrInvalidUTF8)
			}
		}
	}
	return nil
}

// invalidUTF8 returns the first of the values from..to of a that is not
// valid UTF-8, or -1. Valid UTF-8 throughout, with every value starting
// at a character boundary, means every value is valid.
func invalidUTF8(a *array.String, from, to int) int {
	if to <= from {
		return -1
	}
	base := a.ValueOffset(from)
	data := valueData(a)[base : a.ValueOffset(to-1)+a.ValueLen(to-1)]
	if utf8.Valid(data) {
		ok := true
		for i := from + 1; i < to && ok; i++ {
			if o := a.ValueOffset(i) - base; o < len(data) && !utf8.RuneStart(data[o]) {
				ok = false
			}
		}
		if ok {
			return -1
		}
	}
	for i := from; i < to; i++ {
		if !utf8.Valid(valueData(a)[a.ValueOffset(i) : a.ValueOffset(i)+a.ValueLen(i)]) {
			return i
		}
	}
	return -1
}

// AttributesWithin reports whether every row of rec, a batch in
// logschema.Batch(), has at most maxAttrs attributes and as many resource
// attributes, keys of at most maxKey bytes and values of at most maxVal.
func AttributesWithin(rec arrow.RecordBatch, maxAttrs, maxKey, maxVal int) bool {
	n := int(rec.NumRows())
	for _, c := range []int{ColAttributes, ColResource} {
		m := rec.Column(c).(*array.Map)
		for i := 0; i < n; i++ {
			if a, b := m.ValueOffsets(i); int(b-a) > maxAttrs {
				return false
			}
		}
		lo, _ := m.ValueOffsets(0)
		_, hi := m.ValueOffsets(n - 1)
		keys, items := m.Keys().(*array.String), m.Items().(*array.String)
		for e := int(lo); e < int(hi); e++ {
			if keys.ValueLen(e) > maxKey || items.ValueLen(e) > maxVal {
				return false
			}
		}
	}
	return true
}

// IsPriority reports whether row i of rec, a batch in logschema.Batch(),
// is a priority record: severity ERROR or above, by number or, when the
// number is unset, by text.
func IsPriority(rec arrow.RecordBatch, i int) bool {
	if s := rec.Column(ColSeverityNumber).(*array.Int32).Value(i); s != 0 {
		return s >= SeverityError
	}
	t := rec.Column(ColSeverityText).(*array.String).Value(i)
	return t != "" && ParseSeverity(t) >= SeverityError
}

// Columns builds recs into a batch in logschema.Batch(), its buffers
// from mem: the columnar form of a batch of records. Ids that are zero
// are null.
func Columns(recs []Record, mem memory.Allocator) arrow.RecordBatch {
	rb := array.NewRecordBuilder(mem, batchSchema)
	defer rb.Release()
	rb.Reserve(len(recs))
	ts := rb.Field(ColTimestamp).(*array.TimestampBuilder)
	obs := rb.Field(ColObservedTimestamp).(*array.TimestampBuilder)
	sev := rb.Field(ColSeverityNumber).(*array.Int32Builder)
	sevText := rb.Field(ColSeverityText).(*array.StringBuilder)
	body := rb.Field(ColBody).(*array.StringBuilder)
	attrs := rb.Field(ColAttributes).(*array.MapBuilder)
	res := rb.Field(ColResource).(*array.MapBuilder)
	svc := rb.Field(ColServiceName).(*array.StringBuilder)
	trace := rb.Field(ColTraceID).(*array.FixedSizeBinaryBuilder)
	span := rb.Field(ColSpanID).(*array.FixedSizeBinaryBuilder)
	flags := rb.Field(ColFlags).(*array.Uint32Builder)
	appendKVs := func(mb *array.MapBuilder, kvs []KV) {
		mb.Append(true)
		kb, ib := mb.KeyBuilder().(*array.StringBuilder), mb.ItemBuilder().(*array.StringBuilder)
		for _, kv := range kvs {
			kb.Append(kv.Key)
			ib.Append(kv.Value)
		}
	}
	for i := range recs {
		r := &recs[i]
		ts.UnsafeAppend(arrow.Timestamp(r.Timestamp))
		obs.UnsafeAppend(arrow.Timestamp(r.ObservedTimestamp))
		sev.UnsafeAppend(r.SeverityNumber)
		sevText.Append(r.SeverityText)
		body.Append(r.Body)
		appendKVs(attrs, r.Attributes)
		appendKVs(res, r.Resource)
		svc.Append(r.ServiceName())
		if r.TraceID == ([16]byte{}) {
			trace.AppendNull()
		} else {
			trace.Append(r.TraceID[:])
		}
		if r.SpanID == ([8]byte{}) {
			span.AppendNull()
		} else {
			span.Append(r.SpanID[:])
		}
		flags.UnsafeAppend(r.Flags)
	}
	return rb.NewRecordBatch()
}

// RowSize returns the accounted size of row i of rec, a batch in
// logschema.Batch(): the sizes of a batch's rows add up to its
// ColumnsSize.
func RowSize(rec arrow.RecordBatch, i int) int {
	size := 8 + 8 + 4 + 4 + 4 + 4 + 4 + 4 + 16 + 8 + 4
	for _, c := range []int{ColSeverityText, ColBody, ColServiceName} {
		size += rec.Column(c).(*array.String).ValueLen(i)
	}
	for _, c := range []int{ColAttributes, ColResource} {
		m := rec.Column(c).(*array.Map)
		lo, hi := m.ValueOffsets(i)
		if hi > lo {
			size += 8*int(hi-lo) + textSpan(m.Keys().(*array.String), int(lo), int(hi)) + textSpan(m.Items().(*array.String), int(lo), int(hi))
		}
	}
	return size
}

// valueData returns the whole values buffer of a, which ValueOffset
// indexes (ValueBytes starts at the array's first value instead).
func valueData(a *array.String) []byte {
	if bufs := a.Data().Buffers(); len(bufs) > 2 && bufs[2] != nil {
		return bufs[2].Bytes()
	}
	return nil
}

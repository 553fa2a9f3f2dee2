package record

import (
	"fmt"
	"math"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Take returns the rows idx of rec, in that order, as a new batch of its
// schema whose buffers come from mem: the copy of a selection. rec's
// columns must be of types CanTake accepts, and rec small enough that
// its text fits one array (as any batch the buffer admits is).
func Take(rec arrow.RecordBatch, idx []int, mem memory.Allocator) arrow.RecordBatch {
	locs := make([]Loc, len(idx))
	for k, i := range idx {
		locs[k].Row = int32(i)
	}
	cols := make([]arrow.Array, rec.NumCols())
	for c := range cols {
		a, err := TakeParts([]arrow.Array{rec.Column(c)}, locs, mem)
		if err != nil {
			panic("record: Take: " + err.Error())
		}
		defer a.Release()
		cols[c] = a
	}
	return array.NewRecordBatch(rec.Schema(), cols, int64(len(idx)))
}

// Loc is a row of one of several arrays: row Row of the Part-th.
type Loc struct{ Part, Row int32 }

// TakeParts returns the rows locs of parts, in that order, as one new
// array of their type whose buffers come from mem. It gathers the rows
// of several arrays without concatenating them first; each value is
// copied once, into buffers sized for all of them. parts share one type,
// which CanTake must accept. It fails when the rows' text would not fit
// the type's 32-bit offsets (2 GiB).
func TakeParts(parts []arrow.Array, locs []Loc, mem memory.Allocator) (arrow.Array, error) {
	switch parts[0].(type) {
	case *array.String:
		return takeStrings(typedParts[*array.String](parts), locs, mem)
	case *array.Map:
		return takeMaps(parts, locs, mem)
	}
	b := array.NewBuilder(mem, parts[0].DataType())
	defer b.Release()
	takeRows(b, parts, locs)
	return b.NewArray(), nil
}

// maxText is the most text one utf8 array holds (its offsets are int32).
const maxText = math.MaxInt32

// takeMaps is TakeParts of map<utf8, utf8> arrays, written straight
// into their buffers: one pass lays out the rows' entries, and their keys
// and values are gathered by takeStrings.
func takeMaps(parts []arrow.Array, locs []Loc, mem memory.Allocator) (arrow.Array, error) {
	maps := typedParts[*array.Map](parts)
	n, entries, nulls := len(locs), 0, 0
	for _, l := range locs {
		m, r := maps[l.Part], int(l.Row)
		if m.IsNull(r) {
			nulls++
			continue
		}
		lo, hi := m.ValueOffsets(r)
		entries += int(hi - lo)
	}
	if entries > maxText {
		return nil, fmt.Errorf("record: take: %d map entries do not fit one array", entries)
	}
	offBuf := memory.NewResizableBuffer(mem)
	defer offBuf.Release()
	offBuf.Resize(arrow.Int32Traits.BytesRequired(n + 1))
	var valid *memory.Buffer
	if nulls > 0 {
		valid = memory.NewResizableBuffer(mem)
		defer valid.Release()
		valid.Resize(int(bitutil.BytesForBits(int64(n))))
		clear(valid.Bytes())
	}
	offs := arrow.Int32Traits.CastFromBytes(offBuf.Bytes())
	at := make([]Loc, 0, entries) // each entry's part and place in its part's keys and values
	for k, l := range locs {
		offs[k] = int32(len(at))
		m, r := maps[l.Part], int(l.Row)
		if m.IsNull(r) {
			continue
		}
		if valid != nil {
			bitutil.SetBit(valid.Bytes(), k)
		}
		lo, hi := m.ValueOffsets(r)
		for e := lo; e < hi; e++ {
			at = append(at, Loc{Part: l.Part, Row: int32(e)})
		}
	}
	offs[n] = int32(len(at))
	keyParts, valueParts := make([]*array.String, len(maps)), make([]*array.String, len(maps))
	for i, m := range maps {
		keyParts[i], valueParts[i] = m.Keys().(*array.String), m.Items().(*array.String)
	}
	keys, err := takeStrings(keyParts, at, mem)
	if err != nil {
		return nil, err
	}
	defer keys.Release()
	values, err := takeStrings(valueParts, at, mem)
	if err != nil {
		return nil, err
	}
	defer values.Release()
	ed := array.NewData(maps[0].ListValues().DataType(), len(at), []*memory.Buffer{nil}, []arrow.ArrayData{keys.Data(), values.Data()}, 0, 0)
	defer ed.Release()
	d := array.NewData(maps[0].DataType(), n, []*memory.Buffer{valid, offBuf}, []arrow.ArrayData{ed}, nulls, 0)
	defer d.Release()
	return array.MakeFromData(d), nil
}

// takeStrings is TakeParts of utf8 arrays, written straight into its
// buffers: one pass sizes them, one copies the values.
func takeStrings(parts []*array.String, locs []Loc, mem memory.Allocator) (arrow.Array, error) {
	if !slices.ContainsFunc(parts, func(a *array.String) bool { return a.NullN() > 0 }) {
		return takeStringRuns(parts, locs, mem)
	}
	n := len(locs)
	size, nulls := 0, 0
	for _, l := range locs {
		a, r := parts[l.Part], int(l.Row)
		if a.IsNull(r) {
			nulls++
		} else {
			size += a.ValueLen(r)
		}
	}
	offBuf, dataBuf, err := textBuffers(n, size, mem)
	if err != nil {
		return nil, err
	}
	var valid *memory.Buffer
	if nulls > 0 {
		valid = memory.NewResizableBuffer(mem)
		valid.Resize(int(bitutil.BytesForBits(int64(n))))
		clear(valid.Bytes())
	}
	offs, data := arrow.Int32Traits.CastFromBytes(offBuf.Bytes()), dataBuf.Bytes()
	pos := 0
	for k, l := range locs {
		offs[k] = int32(pos)
		a, r := parts[l.Part], int(l.Row)
		if nulls > 0 {
			if a.IsNull(r) {
				continue
			}
			bitutil.SetBit(valid.Bytes(), k)
		}
		pos += copy(data[pos:], a.Value(r))
	}
	offs[n] = int32(pos)
	return stringArray(n, valid, offBuf, dataBuf, nulls), nil
}

// takeStringRuns is takeStrings of arrays without nulls. Rows that
// follow each other in one part (the runs between the rows a lane order
// moved, a map row's entries) are sized and copied at once.
func takeStringRuns(parts []*array.String, locs []Loc, mem memory.Allocator) (arrow.Array, error) {
	n := len(locs)
	// run returns the end of the run that starts at k.
	run := func(k int) int {
		j := k + 1
		for j < n && locs[j].Part == locs[k].Part && locs[j].Row == locs[j-1].Row+1 {
			j++
		}
		return j
	}
	size := 0
	for k := 0; k < n; {
		j := run(k)
		offs := parts[locs[k].Part].ValueOffsets()
		size += int(offs[int(locs[k].Row)+j-k] - offs[locs[k].Row])
		k = j
	}
	offBuf, dataBuf, err := textBuffers(n, size, mem)
	if err != nil {
		return nil, err
	}
	offs, data := arrow.Int32Traits.CastFromBytes(offBuf.Bytes()), dataBuf.Bytes()
	pos := 0
	for k := 0; k < n; {
		j := run(k)
		a := parts[locs[k].Part]
		src := a.ValueOffsets()[locs[k].Row : int(locs[k].Row)+j-k+1]
		delta := int32(pos) - src[0]
		for i, o := range src[:j-k] {
			offs[k+i] = o + delta
		}
		if lo, hi := src[0], src[j-k]; hi > lo {
			pos += copy(data[pos:], a.Data().Buffers()[2].Bytes()[lo:hi])
		}
		k = j
	}
	offs[n] = int32(pos)
	return stringArray(n, nil, offBuf, dataBuf, 0), nil
}

// textBuffers returns the buffers of a utf8 array of n values and size
// bytes of text, from mem; it fails when the text does not fit one array.
func textBuffers(n, size int, mem memory.Allocator) (offBuf, dataBuf *memory.Buffer, err error) {
	if size > maxText {
		return nil, nil, fmt.Errorf("record: take: %d bytes of text do not fit one array", size)
	}
	offBuf = memory.NewResizableBuffer(mem)
	offBuf.Resize(arrow.Int32Traits.BytesRequired(n + 1))
	dataBuf = memory.NewResizableBuffer(mem)
	dataBuf.Resize(size)
	return offBuf, dataBuf, nil
}

// stringArray makes a utf8 array of n rows of its buffers, taking them
// over.
func stringArray(n int, valid, offBuf, dataBuf *memory.Buffer, nulls int) arrow.Array {
	d := array.NewData(arrow.BinaryTypes.String, n, []*memory.Buffer{valid, offBuf, dataBuf}, nil, nulls, 0)
	for _, b := range []*memory.Buffer{valid, offBuf, dataBuf} {
		if b != nil {
			b.Release()
		}
	}
	defer d.Release()
	return array.MakeFromData(d)
}

// CanTake reports whether Take and TakeParts copy arrays of type t: the
// types of the log's columns (timestamps, 32- and 64-bit integers,
// uint32, utf8, fixed_size_binary, map<utf8, utf8>) and of promoted
// attribute columns (int64, float64, bool, utf8).
func CanTake(t arrow.DataType) bool {
	switch t := t.(type) {
	case *arrow.TimestampType, *arrow.Int32Type, *arrow.Int64Type, *arrow.Uint32Type, *arrow.Float64Type,
		*arrow.BooleanType, *arrow.StringType, *arrow.FixedSizeBinaryType:
		return true
	case *arrow.MapType:
		return t.KeyType().ID() == arrow.STRING && t.ItemType().ID() == arrow.STRING
	}
	return false
}

// takeRows appends the rows locs of parts to b, which must build their
// type: one CanTake accepts other than utf8 and maps (takeStrings and
// takeMaps copy those).
func takeRows(b array.Builder, parts []arrow.Array, locs []Loc) {
	b.Reserve(len(locs))
	switch b := b.(type) {
	case *array.TimestampBuilder:
		vals := fixedParts(parts, (*array.Timestamp).TimestampValues)
		takeFixed(parts, vals, locs, b.UnsafeAppend, b.AppendNull)
	case *array.Int32Builder:
		vals := fixedParts(parts, (*array.Int32).Int32Values)
		takeFixed(parts, vals, locs, b.UnsafeAppend, b.AppendNull)
	case *array.Int64Builder:
		vals := fixedParts(parts, (*array.Int64).Int64Values)
		takeFixed(parts, vals, locs, b.UnsafeAppend, b.AppendNull)
	case *array.Uint32Builder:
		vals := fixedParts(parts, (*array.Uint32).Uint32Values)
		takeFixed(parts, vals, locs, b.UnsafeAppend, b.AppendNull)
	case *array.Float64Builder:
		vals := fixedParts(parts, (*array.Float64).Float64Values)
		takeFixed(parts, vals, locs, b.UnsafeAppend, b.AppendNull)
	case *array.BooleanBuilder:
		for _, l := range locs {
			p, r := l.Part, int(l.Row)
			if a := parts[p].(*array.Boolean); a.IsNull(r) {
				b.AppendNull()
			} else {
				b.UnsafeAppend(a.Value(r))
			}
		}
	case *array.FixedSizeBinaryBuilder:
		for _, l := range locs {
			p, r := l.Part, int(l.Row)
			if a := parts[p].(*array.FixedSizeBinary); a.IsNull(r) {
				b.AppendNull()
			} else {
				b.Append(a.Value(r))
			}
		}
	default:
		panic(fmt.Sprintf("record: take of %s", parts[0].DataType()))
	}
}

// typedParts returns parts as arrays of type A.
func typedParts[A arrow.Array](parts []arrow.Array) []A {
	out := make([]A, len(parts))
	for i, p := range parts {
		out[i] = p.(A)
	}
	return out
}

// fixedParts returns the values of parts, arrays of type A.
func fixedParts[A arrow.Array, T any](parts []arrow.Array, values func(A) []T) [][]T {
	out := make([][]T, len(parts))
	for i, p := range parts {
		out[i] = values(p.(A))
	}
	return out
}

// takeFixed appends the values locs of parts, whose values are vals,
// with put, or null.
func takeFixed[T any](parts []arrow.Array, vals [][]T, locs []Loc, put func(T), null func()) {
	for _, l := range locs {
		p, r := l.Part, int(l.Row)
		if parts[p].IsNull(r) {
			null()
		} else {
			put(vals[p][r])
		}
	}
}

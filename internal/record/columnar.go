package record

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/arrowipc"
	"github.com/weirlabs/weir/internal/logschema"
)

// A columnar batch (Batch.Cols) holds its rows as one Arrow record batch
// in logschema.Batch(): the columns below, in this order. Its values are
// what the rows of Batch.Records would hold: empty text rather than null
// (only the ids are nullable: null is no id), service_name set on every
// row (from the resource's service.name when the client sent none) and
// the resource holding the same service.name.
const (
	ColTimestamp = iota
	ColObservedTimestamp
	ColSeverityNumber
	ColSeverityText
	ColBody
	ColAttributes
	ColResource
	ColServiceName
	ColTraceID
	ColSpanID
	ColFlags
	numCols
)

// ErrNotColumnar wraps the reasons ToColumns cannot take an Arrow batch
// as it is (a compressed stream, a JSON attributes column, a value a
// Record cannot hold): such a batch goes the row path, whose decoder
// reports the values it cannot convert row by row.
var ErrNotColumnar = errors.New("not convertible to a columnar batch")

var (
	batchSchema = logschema.Batch()
	strMapType  = batchSchema.Field(ColAttributes).Type.(*arrow.MapType)
	entriesType = strMapType.Elem().(*arrow.StructType)
)

// NewColumnarBatch returns a batch of the rows of cols, which must be in
// logschema.Batch(), with Bytes computed. It takes ownership of cols.
func NewColumnarBatch(tenant, stream string, cols arrow.RecordBatch) *Batch {
	return &Batch{Tenant: tenant, Stream: stream, Cols: cols, Bytes: ColumnsSize(cols)}
}

// Len returns the number of rows of the batch, in either form.
func (b *Batch) Len() int {
	if b.Cols != nil {
		return int(b.Cols.NumRows())
	}
	return len(b.Records)
}

// Release releases the batch's columns, if any. A batch's owner calls it
// when it drops the batch; it is safe to call more than once.
func (b *Batch) Release() {
	if b.Cols != nil {
		b.Cols.Release()
		b.Cols = nil
	}
	b.IPC = nil
}

// Materialize turns a columnar batch into rows: Records holds the rows of
// Cols, which is released, and Bytes is recomputed. A batch of rows is
// left as it is. The records hold Go memory only.
func (b *Batch) Materialize() {
	if b.Cols == nil {
		return
	}
	b.Records = Rows(b.Cols)
	b.Release()
	b.Bytes = 0
	for i := range b.Records {
		b.Bytes += b.Records[i].Size()
	}
}

// ColumnsSize returns the accounted size of the rows of rec, a batch in
// logschema.Batch(): the bytes of its Arrow buffers that those rows use
// (slices count only their own rows).
func ColumnsSize(rec arrow.RecordBatch) int {
	n := int(rec.NumRows())
	if n == 0 {
		return 0
	}
	// Fixed-width values and the offsets of the text and map columns.
	size := n * (8 + 8 + 4 + 4 + 4 + 4 + 4 + 4 + 16 + 8 + 4)
	for _, c := range []int{ColSeverityText, ColBody, ColServiceName} {
		size += textSpan(rec.Column(c).(*array.String), 0, n)
	}
	for _, c := range []int{ColAttributes, ColResource} {
		m := rec.Column(c).(*array.Map)
		lo, _ := m.ValueOffsets(0)
		_, hi := m.ValueOffsets(n - 1)
		if hi > lo {
			size += 8*int(hi-lo) + textSpan(m.Keys().(*array.String), int(lo), int(hi)) + textSpan(m.Items().(*array.String), int(lo), int(hi))
		}
	}
	return size
}

// textSpan returns the bytes of the values from..to of a.
func textSpan(a *array.String, from, to int) int {
	if to <= from {
		return 0
	}
	return a.ValueOffset(to-1) + a.ValueLen(to-1) - a.ValueOffset(from)
}

// ReadColumns reads an Arrow IPC stream of one record batch, at most
// maxRows rows, with the columns and types docs/ingest-arrow.md accepts,
// and returns its rows as a batch in logschema.Batch() (see ToColumns;
// now is the observed time of rows without one). The batch's arrays are
// views of data where the stream's columns already have the canonical
// layout, so data must not change while the batch lives. Decoding
// allocates at most budget bytes for the stream (the canonical columns
// are allocated from mem besides). A stream that ToColumns cannot take,
// that is compressed or that holds more than one record batch fails with
// an error wrapping ErrNotColumnar; a malformed one with another error.
func ReadColumns(data []byte, now int64, maxRows int, mem memory.Allocator, budget int) (arrow.RecordBatch, error) {
	lim := arrowipc.NewAllocator(mem, budget)
	defer lim.FreeLeaked() // after everything read is released
	msgs := arrowipc.NewMessages(data)
	rd, err := ipc.NewReaderFromMessageReader(msgs, ipc.WithAllocator(lim))
	if err != nil {
		return nil, fmt.Errorf("arrow ipc: %w", err)
	}
	defer rd.Release()
	var rec arrow.RecordBatch
	defer func() {
		if rec != nil {
			rec.Release()
		}
	}()
	for rd.Next() {
		if rec != nil {
			return nil, fmt.Errorf("%w: the stream holds more than one record batch", ErrNotColumnar)
		}
		rec = rd.RecordBatch()
		rec.Retain()
		if rows := rec.NumRows(); rows < 1 || rows > int64(maxRows) {
			return nil, fmt.Errorf("%w: a record batch of %d rows (want 1 to %d)", ErrNotColumnar, rows, maxRows)
		}
	}
	if err := rd.Err(); err != nil {
		return nil, fmt.Errorf("arrow ipc: %w", err)
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: no record batch", ErrNotColumnar)
	}
	if n := msgs.Rest(); n > 0 {
		return nil, fmt.Errorf("arrow ipc: %d bytes after the end-of-stream marker", n)
	}
	if lim.Live() {
		return nil, fmt.Errorf("%w: compressed record batch", ErrNotColumnar)
	}
	return ToColumns(rec, now, mem)
}

// colBuilder assembles the canonical columns of one batch; the first
// error sticks.
type colBuilder struct {
	mem  memory.Allocator
	n    int
	data [numCols]arrow.ArrayData
	err  error
}

func (c *colBuilder) fail(col int, format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: column %q: %s", ErrNotColumnar, batchSchema.Field(col).Name, fmt.Sprintf(format, args...))
	}
}

// alloc returns a zeroed buffer of n bytes from mem.
func (c *colBuilder) alloc(n int) *memory.Buffer {
	buf := memory.NewResizableBuffer(c.mem)
	buf.Resize(n)
	clear(buf.Bytes())
	return buf
}

func (c *colBuilder) release() {
	for i, d := range c.data {
		if d != nil {
			d.Release()
			c.data[i] = nil
		}
	}
}

// ToColumns returns the rows of rec as a batch in logschema.Batch(). rec
// may have any subset of the columns docs/ingest-arrow.md accepts, in
// any order; ToColumns reuses its arrays where their layout is the
// canonical one (timestamps in ns, int32 severity numbers, utf8 text,
// map<utf8, utf8>, fixed_size_binary ids, uint32 flags) and converts the
// others: absent and null values become zero or empty text, timestamps
// other units, severity numbers other integer types, hex ids binary.
// Rows without an observed time get now. It checks every offset and
// length it relies on, so corrupt arrays fail rather than panic later.
// Values the row path would reject row by row (JSON attribute columns,
// large_utf8, bad hex ids, null map keys, timestamps past 2262) fail the
// whole batch with an error wrapping ErrNotColumnar. rec is not released.
func ToColumns(rec arrow.RecordBatch, now int64, mem memory.Allocator) (arrow.RecordBatch, error) {
	rows := rec.NumRows()
	if rows < 1 || rows > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %d rows", ErrNotColumnar, rows)
	}
	if rec.NumCols() == 0 {
		return nil, fmt.Errorf("%w: no columns", ErrNotColumnar)
	}
	c := &colBuilder{mem: mem, n: int(rows)}
	idx := [numCols]int{}
	for i := range idx {
		idx[i] = -1
	}
	for i, f := range rec.Schema().Fields() {
		j := batchSchema.FieldIndices(f.Name)
		if len(j) != 1 || idx[j[0]] >= 0 {
			return nil, fmt.Errorf("%w: column %.64q is not one of the columns accepted, or appears twice", ErrNotColumnar, f.Name)
		}
		if rec.Column(i).Len() != c.n {
			return nil, fmt.Errorf("%w: column %.64q has %d values for %d rows", ErrNotColumnar, f.Name, rec.Column(i).Len(), c.n)
		}
		idx[j[0]] = i
	}
	col := func(k int) arrow.ArrayData {
		if idx[k] < 0 {
			return nil
		}
		return rec.Column(idx[k]).Data()
	}
	c.timestamps(ColTimestamp, col(ColTimestamp), 0)
	c.timestamps(ColObservedTimestamp, col(ColObservedTimestamp), now)
	c.severity(col(ColSeverityNumber))
	c.text(ColSeverityText, col(ColSeverityText))
	c.text(ColBody, col(ColBody))
	c.strMap(ColAttributes, col(ColAttributes))
	c.strMap(ColResource, col(ColResource))
	c.text(ColServiceName, col(ColServiceName))
	c.id(ColTraceID, col(ColTraceID), 16)
	c.id(ColSpanID, col(ColSpanID), 8)
	c.flags(col(ColFlags))
	if c.err == nil {
		c.serviceName(idx[ColServiceName] >= 0)
	}
	if c.err != nil {
		c.release()
		return nil, c.err
	}
	arrs := make([]arrow.Array, numCols)
	for i, d := range c.data {
		arrs[i] = array.MakeFromData(d)
	}
	c.release()
	out := array.NewRecordBatch(batchSchema, arrs, int64(c.n))
	for _, a := range arrs {
		a.Release()
	}
	return out, nil
}

// buffer returns buffer i of d, or nil.
func buffer(d arrow.ArrayData, i int) *memory.Buffer {
	if bufs := d.Buffers(); i < len(bufs) {
		return bufs[i]
	}
	return nil
}

// fixed checks that d holds n values of width bytes and returns them.
func (c *colBuilder) fixed(col int, d arrow.ArrayData, width int) []byte {
	b := buffer(d, 1)
	if b == nil || d.Offset() < 0 || b.Len() < (d.Offset()+c.n)*width {
		c.fail(col, "values buffer too short")
		return nil
	}
	return b.Bytes()[d.Offset()*width : (d.Offset()+c.n)*width]
}

// valid returns d's validity bitmap (nil when every value is valid).
func (c *colBuilder) valid(col int, d arrow.ArrayData) []byte {
	if d.NullN() == 0 {
		return nil
	}
	b := buffer(d, 0)
	if b == nil || b.Len() < (d.Offset()+c.n+7)/8 {
		c.fail(col, "validity bitmap too short")
		return nil
	}
	return b.Bytes()
}

func nullAt(bm []byte, i int) bool { return bm != nil && bm[i>>3]&(1<<(i&7)) == 0 }

// view makes column col a view of d's values buffer, without validity.
func (c *colBuilder) view(col int, d arrow.ArrayData) {
	c.data[col] = array.NewData(batchSchema.Field(col).Type, c.n, []*memory.Buffer{nil, buffer(d, 1)}, nil, 0, d.Offset())
}

func (c *colBuilder) timestamps(col int, d arrow.ArrayData, fill int64) {
	if c.err != nil {
		return
	}
	scale := int64(1)
	if d != nil {
		switch t := d.DataType().(type) {
		case *arrow.TimestampType:
			scale = map[arrow.TimeUnit]int64{arrow.Second: 1e9, arrow.Millisecond: 1e6, arrow.Microsecond: 1e3, arrow.Nanosecond: 1}[t.Unit]
		case *arrow.Int64Type:
		default:
			c.fail(col, "type %s", d.DataType())
			return
		}
		if scale == 0 {
			c.fail(col, "unknown time unit")
			return
		}
	}
	var vals, bm []byte
	if d != nil {
		vals, bm = c.fixed(col, d, 8), c.valid(col, d)
		if c.err != nil {
			return
		}
		if scale == 1 && bm == nil && (fill == 0 || !hasZero64(vals)) {
			c.view(col, d)
			return
		}
	}
	buf := c.alloc(8 * c.n)
	out := buf.Bytes()
	for i := 0; i < c.n; i++ {
		var v int64
		if vals != nil && !nullAt(bm, d.Offset()+i) {
			v = int64(binary.LittleEndian.Uint64(vals[8*i:]))
			if v > math.MaxInt64/scale || v < math.MinInt64/scale {
				buf.Release()
				c.fail(col, "row %d: %d is outside the years 1678 to 2262", i, v)
				return
			}
			v *= scale
		}
		if v == 0 {
			v = fill
		}
		binary.LittleEndian.PutUint64(out[8*i:], uint64(v))
	}
	c.data[col] = array.NewData(batchSchema.Field(col).Type, c.n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	buf.Release()
}

func hasZero64(vals []byte) bool {
	for i := 0; i+8 <= len(vals); i += 8 {
		if binary.LittleEndian.Uint64(vals[i:]) == 0 {
			return true
		}
	}
	return false
}

func (c *colBuilder) severity(d arrow.ArrayData) {
	const col = ColSeverityNumber
	if c.err != nil {
		return
	}
	width := 4
	if d != nil {
		switch d.DataType().ID() {
		case arrow.INT8, arrow.UINT8:
			width = 1
		case arrow.INT16:
			width = 2
		case arrow.INT32:
		case arrow.INT64:
			width = 8
		default:
			c.fail(col, "type %s", d.DataType())
			return
		}
	}
	var vals, bm []byte
	if d != nil {
		vals, bm = c.fixed(col, d, width), c.valid(col, d)
		if c.err != nil {
			return
		}
		if width == 4 && bm == nil {
			c.view(col, d)
			return
		}
	}
	buf := c.alloc(4 * c.n)
	out := buf.Bytes()
	for i := 0; vals != nil && i < c.n; i++ {
		if nullAt(bm, d.Offset()+i) {
			continue
		}
		var v int64
		switch {
		case d.DataType().ID() == arrow.INT8:
			v = int64(int8(vals[i]))
		case width == 1:
			v = int64(vals[i])
		case width == 2:
			v = int64(int16(binary.LittleEndian.Uint16(vals[2*i:])))
		case width == 4:
			v = int64(int32(binary.LittleEndian.Uint32(vals[4*i:])))
		default:
			v = int64(binary.LittleEndian.Uint64(vals[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				buf.Release()
				c.fail(col, "row %d: %d out of range", i, v)
				return
			}
		}
		binary.LittleEndian.PutUint32(out[4*i:], uint32(int32(v)))
	}
	c.data[col] = array.NewData(batchSchema.Field(col).Type, c.n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	buf.Release()
}

func (c *colBuilder) flags(d arrow.ArrayData) {
	const col = ColFlags
	if c.err != nil {
		return
	}
	var vals, bm []byte
	if d != nil {
		if d.DataType().ID() != arrow.UINT32 {
			c.fail(col, "type %s", d.DataType())
			return
		}
		vals, bm = c.fixed(col, d, 4), c.valid(col, d)
		if c.err != nil {
			return
		}
		if bm == nil {
			c.view(col, d)
			return
		}
	}
	buf := c.alloc(4 * c.n)
	out := buf.Bytes()
	for i := 0; vals != nil && i < c.n; i++ {
		if !nullAt(bm, d.Offset()+i) {
			copy(out[4*i:4*i+4], vals[4*i:])
		}
	}
	c.data[col] = array.NewData(batchSchema.Field(col).Type, c.n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	buf.Release()
}

// checkText checks the n values of the utf8 array d from its offset:
// offsets that never decrease and stay within the data, and null values
// of no bytes. It returns the offsets of the values (n+1 of them).
func checkText(d arrow.ArrayData, n int) ([]byte, error) {
	if d.DataType().ID() != arrow.STRING {
		return nil, fmt.Errorf("type %s (want utf8)", d.DataType())
	}
	ob := buffer(d, 1)
	off := d.Offset()
	if off < 0 || n < 0 || d.Len() < n {
		return nil, errors.New("bad length")
	}
	if n == 0 {
		return nil, nil
	}
	if ob == nil || ob.Len() < 4*(off+n+1) {
		return nil, errors.New("offsets buffer too short")
	}
	offs := ob.Bytes()[4*off : 4*(off+n+1)]
	size := 0
	if db := buffer(d, 2); db != nil {
		size = db.Len()
	}
	var bm []byte
	if d.NullN() > 0 {
		b := buffer(d, 0)
		if b == nil || b.Len() < (off+n+7)/8 {
			return nil, errors.New("validity bitmap too short")
		}
		bm = b.Bytes()
	}
	prev := int32(binary.LittleEndian.Uint32(offs))
	if prev < 0 {
		return nil, errors.New("negative offset")
	}
	for i := 1; i <= n; i++ {
		o := int32(binary.LittleEndian.Uint32(offs[4*i:]))
		if o < prev {
			return nil, errors.New("offsets decrease")
		}
		if o != prev && nullAt(bm, off+i-1) {
			return nil, errors.New("a null value with bytes")
		}
		prev = o
	}
	if int(prev) > size {
		return nil, errors.New("offsets past the data")
	}
	return offs, nil
}

// textView returns d (a checked utf8 array of n values) without its
// validity bitmap: its nulls, of no bytes, become empty text.
func textView(d arrow.ArrayData, n int) arrow.ArrayData {
	return array.NewData(arrow.BinaryTypes.String, n, []*memory.Buffer{nil, buffer(d, 1), buffer(d, 2)}, nil, 0, d.Offset())
}

// emptyText returns n empty values.
func (c *colBuilder) emptyText(n int) arrow.ArrayData {
	offs := c.alloc(4 * (n + 1))
	d := array.NewData(arrow.BinaryTypes.String, n, []*memory.Buffer{nil, offs, nil}, nil, 0, 0)
	offs.Release()
	return d
}

func (c *colBuilder) text(col int, d arrow.ArrayData) {
	if c.err != nil {
		return
	}
	if d == nil {
		if col != ColServiceName { // serviceName fills it in
			c.data[col] = c.emptyText(c.n)
		}
		return
	}
	if _, err := checkText(d, c.n); err != nil {
		c.fail(col, "%v", err)
		return
	}
	c.data[col] = textView(d, c.n)
}

func (c *colBuilder) strMap(col int, d arrow.ArrayData) {
	if c.err != nil {
		return
	}
	if d == nil {
		offs := c.alloc(4 * (c.n + 1))
		keys, items := c.emptyText(0), c.emptyText(0)
		entries := array.NewData(entriesType, 0, []*memory.Buffer{nil}, []arrow.ArrayData{keys, items}, 0, 0)
		c.data[col] = array.NewData(strMapType, c.n, []*memory.Buffer{nil, offs}, []arrow.ArrayData{entries}, 0, 0)
		offs.Release()
		keys.Release()
		items.Release()
		entries.Release()
		return
	}
	if d.DataType().ID() != arrow.MAP {
		c.fail(col, "type %s (want map<utf8, utf8>)", d.DataType())
		return
	}
	// A map is a list of entries: offsets like text's, over the entries.
	off := d.Offset()
	ob := buffer(d, 1)
	if off < 0 || ob == nil || ob.Len() < 4*(off+c.n+1) || len(d.Children()) != 1 {
		c.fail(col, "offsets buffer too short")
		return
	}
	offs := ob.Bytes()[4*off : 4*(off+c.n+1)]
	bm := c.valid(col, d)
	if c.err != nil {
		return
	}
	first := int32(binary.LittleEndian.Uint32(offs))
	prev := first
	if first < 0 {
		c.fail(col, "negative offset")
		return
	}
	for i := 1; i <= c.n; i++ {
		o := int32(binary.LittleEndian.Uint32(offs[4*i:]))
		if o < prev || (o != prev && nullAt(bm, off+i-1)) {
			c.fail(col, "bad offsets")
			return
		}
		prev = o
	}
	entries := d.Children()[0]
	if entries.NullN() != 0 || len(entries.Children()) != 2 || entries.Offset() < 0 || entries.Len() < int(prev) {
		c.fail(col, "bad entries")
		return
	}
	kids := entries.Children()
	eo := entries.Offset()
	for k, kid := range kids {
		// Keys and items are checked from the first entry the
		// entries array holds, so that views keep its offset.
		if kid.Offset() != 0 || kid.Len() < eo+entries.Len() {
			c.fail(col, "bad entries")
			return
		}
		if _, err := checkText(kid, eo+entries.Len()); err != nil {
			c.fail(col, "entries: %v", err)
			return
		}
		if kid.NullN() > 0 {
			c.fail(col, "null %s", [2]string{"keys", "values"}[k])
			return
		}
	}
	keys := textView(kids[0], kids[0].Len())
	items := textView(kids[1], kids[1].Len())
	ent := array.NewData(entriesType, entries.Len(), []*memory.Buffer{nil}, []arrow.ArrayData{keys, items}, 0, eo)
	c.data[col] = array.NewData(strMapType, c.n, []*memory.Buffer{nil, ob}, []arrow.ArrayData{ent}, 0, off)
	keys.Release()
	items.Release()
	ent.Release()
}

func (c *colBuilder) id(col int, d arrow.ArrayData, width int) {
	if c.err != nil {
		return
	}
	typ := batchSchema.Field(col).Type
	if d == nil {
		bm, vals := c.alloc((c.n+7)/8), c.alloc(width*c.n)
		c.data[col] = array.NewData(typ, c.n, []*memory.Buffer{bm, vals}, nil, c.n, 0)
		bm.Release()
		vals.Release()
		return
	}
	if fb, ok := d.DataType().(*arrow.FixedSizeBinaryType); ok {
		if fb.ByteWidth != width {
			c.fail(col, "type %s", d.DataType())
			return
		}
		c.fixed(col, d, width)
		c.valid(col, d)
		if c.err != nil {
			return
		}
		c.data[col] = array.NewData(typ, c.n, []*memory.Buffer{buffer(d, 0), buffer(d, 1)}, nil, d.NullN(), d.Offset())
		return
	}
	offs, err := checkText(d, c.n)
	if err != nil {
		c.fail(col, "%v", err)
		return
	}
	var text []byte
	if db := buffer(d, 2); db != nil {
		text = db.Bytes()
	}
	bmBuf, vals := c.alloc((c.n+7)/8), c.alloc(width*c.n)
	bm, out := bmBuf.Bytes(), vals.Bytes()
	nulls := 0
	for i := 0; i < c.n; i++ {
		lo, hi := binary.LittleEndian.Uint32(offs[4*i:]), binary.LittleEndian.Uint32(offs[4*i+4:])
		switch {
		case hi == lo:
			nulls++
			continue
		case int(hi-lo) != 2*width:
			c.fail(col, "row %d: want %d hex digits", i, 2*width)
		default:
			if _, err := hex.Decode(out[width*i:width*(i+1)], text[lo:hi]); err != nil {
				c.fail(col, "row %d: want %d hex digits", i, 2*width)
			}
		}
		if c.err != nil {
			bmBuf.Release()
			vals.Release()
			return
		}
		bm[i>>3] |= 1 << (i & 7)
	}
	c.data[col] = array.NewData(typ, c.n, []*memory.Buffer{bmBuf, vals}, nil, nulls, 0)
	bmBuf.Release()
	vals.Release()
}

// serviceName completes the service_name column and the resource: a
// non-empty service_name sets the resource's service.name (the first
// one, or a new last entry), and the others take the resource's.
func (c *colBuilder) serviceName(given bool) {
	res := array.NewMapData(c.data[ColResource])
	defer res.Release()
	keys, items := res.Keys().(*array.String), res.Items().(*array.String)
	lookup := func(i int) (string, bool) {
		lo, hi := res.ValueOffsets(i)
		for e := lo; e < hi; e++ {
			if keys.Value(int(e)) == serviceNameKey {
				return items.Value(int(e)), true
			}
		}
		return "", false
	}
	if !given {
		sb := array.NewStringBuilder(c.mem)
		defer sb.Release()
		for i := 0; i < c.n; i++ {
			v, _ := lookup(i)
			sb.Append(v)
		}
		a := sb.NewStringArray()
		c.data[ColServiceName] = a.Data()
		a.Data().Retain()
		a.Release()
		return
	}
	svc := array.NewStringData(c.data[ColServiceName])
	defer svc.Release()
	same := true
	for i := 0; i < c.n && same; i++ {
		if s := svc.Value(i); s != "" {
			v, ok := lookup(i)
			same = ok && v == s
		}
	}
	if !same {
		mb := array.NewMapBuilderWithType(c.mem, strMapType)
		defer mb.Release()
		kb, ib := mb.KeyBuilder().(*array.StringBuilder), mb.ItemBuilder().(*array.StringBuilder)
		for i := 0; i < c.n; i++ {
			mb.Append(true)
			s := svc.Value(i)
			lo, hi := res.ValueOffsets(i)
			set := s == ""
			for e := lo; e < hi; e++ {
				k, v := keys.Value(int(e)), items.Value(int(e))
				if !set && k == serviceNameKey {
					v, set = s, true
				}
				kb.Append(k)
				ib.Append(v)
			}
			if !set {
				kb.Append(serviceNameKey)
				ib.Append(s)
			}
		}
		m := mb.NewMapArray()
		c.data[ColResource].Release()
		c.data[ColResource] = m.Data()
		m.Data().Retain()
		m.Release()
	}
	needFill := false
	for i := 0; i < c.n && !needFill; i++ {
		needFill = svc.Value(i) == ""
	}
	if !needFill {
		return
	}
	res2 := array.NewMapData(c.data[ColResource])
	defer res2.Release()
	res, keys, items = res2, res2.Keys().(*array.String), res2.Items().(*array.String)
	sb := array.NewStringBuilder(c.mem)
	defer sb.Release()
	for i := 0; i < c.n; i++ {
		if s := svc.Value(i); s != "" {
			sb.Append(s)
		} else {
			v, _ := lookup(i)
			sb.Append(v)
		}
	}
	a := sb.NewStringArray()
	c.data[ColServiceName].Release()
	c.data[ColServiceName] = a.Data()
	a.Data().Retain()
	a.Release()
}

// serviceNameKey is the resource attribute that names the service.
const serviceNameKey = "service.name"

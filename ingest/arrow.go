package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/arrowipc"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// The columnar representation of a batch (PushRequest.arrow_ipc) is an
// Arrow IPC stream whose columns are a subset of the lake's. decodeArrow
// turns it into the records the proto representation converts to, column
// by column: every string column is copied once into one Go string that
// its values are cut from, so records never point into Arrow memory and
// each column costs a handful of allocations whatever its row count.
// docs/ingest-arrow.md documents the format.

// arrowMemoryFactor bounds the Arrow memory that decoding one request may
// allocate, as a multiple of Config.MaxMessageBytes: room for IPC bodies
// compressed with LZ4 or ZSTD to expand, and no more.
const arrowMemoryFactor = 4

var (
	// errArrowTooLarge is returned when decoding needs more Arrow memory
	// than its budget; the client sees RESOURCE_EXHAUSTED.
	errArrowTooLarge = arrowipc.ErrTooLarge
	// errArrowSchemaChange is returned for a schema message after the
	// first message of the stream.
	errArrowSchemaChange = arrowipc.ErrSchemaChange
)

// arrowColumn is an accepted column of the columnar representation.
type arrowColumn int

// The accepted columns, in the order they are converted: resource comes
// before service_name, which overrides its service.name.
const (
	colTimestamp arrowColumn = iota
	colObserved
	colSeverityNumber
	colSeverityText
	colBody
	colAttributes
	colResource
	colServiceName
	colTraceID
	colSpanID
	colFlags
	numArrowColumns
)

// arrowColumns names the accepted columns and the types each accepts.
var arrowColumns = [numArrowColumns]struct{ name, want string }{
	colTimestamp:      {logschema.Timestamp, "timestamp (any unit, any or no time zone) or int64 (ns since the epoch)"},
	colObserved:       {logschema.ObservedTimestamp, "timestamp (any unit, any or no time zone) or int64 (ns since the epoch)"},
	colSeverityNumber: {logschema.SeverityNumber, "int32, int8, int16, int64 or uint8"},
	colSeverityText:   {logschema.SeverityText, "utf8 or large_utf8"},
	colBody:           {logschema.Body, "utf8 or large_utf8"},
	colAttributes:     {logschema.Attributes, "map<utf8, utf8>, or utf8 holding a JSON object"},
	colResource:       {logschema.Resource, "map<utf8, utf8>, or utf8 holding a JSON object"},
	colServiceName:    {logschema.ServiceName, "utf8 or large_utf8"},
	colTraceID:        {logschema.TraceID, "utf8 (32 hex digits) or fixed_size_binary[16]"},
	colSpanID:         {logschema.SpanID, "utf8 (16 hex digits) or fixed_size_binary[8]"},
	colFlags:          {logschema.Flags, "uint32"},
}

// acceptedColumns lists the accepted column names for error messages.
var acceptedColumns = func() string {
	names := make([]string, numArrowColumns)
	for i, c := range arrowColumns {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}()

// arrowField is how one column of a stream's schema is read.
type arrowField struct {
	index int   // in the schema; -1 when the column is absent
	scale int64 // timestamps: ns per unit
	kind  arrow.Type
	width int // fixed_size_binary: bytes per value
}

// arrowPlan maps a stream's schema to the record's fields.
type arrowPlan [numArrowColumns]arrowField

// planArrow checks a stream's schema and returns how to read it.
func planArrow(schema *arrow.Schema) (*arrowPlan, error) {
	var p arrowPlan
	for i := range p {
		p[i].index = -1
	}
	for i, f := range schema.Fields() {
		c := slices.IndexFunc(arrowColumns[:], func(c struct{ name, want string }) bool { return c.name == f.Name })
		if c < 0 {
			if f.Name == logschema.Partition || f.Name == logschema.Offset || strings.HasPrefix(f.Name, "_") {
				return nil, fmt.Errorf("arrow_ipc: column %q (%s): the server assigns the _ columns; leave them out (accepted columns: %s)", f.Name, f.Type, acceptedColumns)
			}
			return nil, fmt.Errorf("arrow_ipc: column %q (%s) is not accepted; the accepted columns are %s", f.Name, f.Type, acceptedColumns)
		}
		if p[c].index >= 0 {
			return nil, fmt.Errorf("arrow_ipc: column %q appears twice", f.Name)
		}
		af, ok := fieldOf(arrowColumn(c), f.Type)
		if !ok {
			return nil, fmt.Errorf("arrow_ipc: column %q has type %s; want %s", f.Name, f.Type, arrowColumns[c].want)
		}
		af.index = i
		p[c] = af
	}
	return &p, nil
}

// fieldOf reports whether column c accepts type t, and how to read it.
func fieldOf(c arrowColumn, t arrow.DataType) (arrowField, bool) {
	f := arrowField{kind: t.ID()}
	isText := f.kind == arrow.STRING || f.kind == arrow.LARGE_STRING
	switch c {
	case colTimestamp, colObserved:
		switch t := t.(type) {
		case *arrow.TimestampType:
			switch t.Unit {
			case arrow.Second:
				f.scale = 1e9
			case arrow.Millisecond:
				f.scale = 1e6
			case arrow.Microsecond:
				f.scale = 1e3
			case arrow.Nanosecond:
				f.scale = 1
			}
			return f, f.scale != 0
		case *arrow.Int64Type:
			f.scale = 1
			return f, true
		}
	case colSeverityNumber:
		switch f.kind {
		case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8:
			return f, true
		}
	case colSeverityText, colBody, colServiceName:
		return f, isText
	case colAttributes, colResource:
		if m, ok := t.(*arrow.MapType); ok {
			k, v := m.KeyType().ID(), m.ItemType().ID()
			return f, (k == arrow.STRING || k == arrow.LARGE_STRING) && (v == arrow.STRING || v == arrow.LARGE_STRING)
		}
		return f, isText
	case colTraceID, colSpanID:
		want := 16
		if c == colSpanID {
			want = 8
		}
		if fb, ok := t.(*arrow.FixedSizeBinaryType); ok {
			f.width = fb.ByteWidth
			return f, fb.ByteWidth == want
		}
		return f, isText
	case colFlags:
		return f, f.kind == arrow.UINT32
	}
	return f, false
}

// decodeArrow decodes an Arrow IPC stream into records, at most maxRows
// of them. Record batches are read in place from data; the Arrow buffers
// decoding allocates (decompressed bodies) come from mem, at most budget
// bytes in all, and are all released when it returns: the records hold
// only Go memory and do not refer to data. A row holding a value that a
// record.Record cannot (a timestamp past 2262, an id that is not 32 or 16
// hex digits, attributes that are not a JSON object) is converted as far
// as it can be and its error is in rejects at its index, as
// record.Batch.Rejects wants them (nil when no row is such). err is for
// the whole request: INVALID_ARGUMENT, except errArrowTooLarge.
func decodeArrow(ctx context.Context, data []byte, maxRows int, mem memory.Allocator, budget int) (out []record.Record, rejects []error, err error) {
	lim := arrowipc.NewAllocator(mem, budget)
	lim.ChargeWith(func(n int) error { return Charge(ctx, n) })
	defer lim.FreeLeaked() // after the reader's release
	msgs := arrowipc.NewMessages(data)
	rd, err := ipc.NewReaderFromMessageReader(msgs, ipc.WithAllocator(lim))
	if err != nil { // the reader released msgs
		return nil, nil, arrowStreamErr(lim, err)
	}
	defer rd.Release()
	plan, err := planArrow(rd.Schema())
	if err != nil {
		return nil, nil, err
	}
	var rej rowErrors
	for rd.Next() {
		rec := rd.RecordBatch()
		rows := rec.NumRows()
		if rows < 0 {
			return nil, nil, fmt.Errorf("arrow_ipc: record batch with %d rows", rows)
		}
		if rows > int64(maxRows-len(out)) {
			return nil, nil, fmt.Errorf("arrow_ipc: the batch has at least %d rows; the limit is %d", int64(len(out))+rows, maxRows)
		}
		base := len(out)
		out = slices.Grow(out, int(rows))[:base+int(rows)]
		if err := plan.convert(rec, out[base:], base, &rej); err != nil {
			return nil, nil, err
		}
	}
	if err := rd.Err(); err != nil {
		return nil, nil, arrowStreamErr(lim, err)
	}
	if n := msgs.Rest(); n > 0 {
		return nil, nil, fmt.Errorf("arrow_ipc: %d bytes after the end-of-stream marker: send one IPC stream (one schema) per batch", n)
	}
	if len(out) == 0 {
		return nil, nil, fmt.Errorf("%w: arrow_ipc has no rows", record.ErrEmptyBatch)
	}
	return out, rej.all(len(out)), nil
}

// rowErrors collects the errors of rows that hold a value a record
// cannot, by row number in the request.
type rowErrors struct{ errs []error }

// add adds err to the errors of row.
func (e *rowErrors) add(row int, err error) {
	if row >= len(e.errs) {
		e.errs = append(e.errs, make([]error, row+1-len(e.errs))...)
	}
	e.errs[row] = joinErr(e.errs[row], err)
}

// all returns the errors of n rows, or nil when no row has one.
func (e *rowErrors) all(n int) []error {
	if e.errs == nil {
		return nil
	}
	return append(e.errs, make([]error, n-len(e.errs))...)
}

func arrowStreamErr(lim *arrowipc.Allocator, err error) error {
	switch {
	case lim.ChargeErr() != nil:
		return lim.ChargeErr()
	case lim.Exceeded():
		return fmt.Errorf("%w: decoding it needs more than %d bytes", errArrowTooLarge, lim.Budget())
	case errors.Is(err, errArrowSchemaChange):
		return errArrowSchemaChange
	}
	return fmt.Errorf("arrow_ipc is not a valid Arrow IPC stream: %w", err)
}

// errCorrupt reports buffers that do not hold what their metadata says.
func errCorrupt(col arrowColumn, what string) error {
	return fmt.Errorf("arrow_ipc: column %q: corrupt %s", arrowColumns[col].name, what)
}

// convert fills dst, the rows of rec (base is the first one's row number
// in the request), column by column, and adds the errors of rows holding
// values a record cannot to rej.
func (p *arrowPlan) convert(rec arrow.RecordBatch, dst []record.Record, base int, rej *rowErrors) error {
	n := len(dst)
	if n == 0 {
		return nil
	}
	extra := 0 // resource slots kept free per row for service_name
	if p[colServiceName].index >= 0 {
		extra = 1
	}
	for col := arrowColumn(0); col < numArrowColumns; col++ {
		f := &p[col]
		if f.index < 0 {
			continue
		}
		d := rec.Column(f.index).Data()
		if d.Len() < n {
			return errCorrupt(col, "length")
		}
		var err error
		switch col {
		case colTimestamp, colObserved:
			err = convertTimestamps(col, f.scale, d, dst, base, rej)
		case colSeverityNumber:
			err = convertSeverity(f.kind, d, dst, base, rej)
		case colSeverityText, colBody:
			err = convertText(col, d, dst)
		case colAttributes, colResource:
			x := 0
			if col == colResource {
				x = extra
			}
			if f.kind == arrow.MAP {
				err = convertMap(col, d, dst, x, base, rej)
			} else {
				err = convertJSONMap(col, d, dst, x, base, rej)
			}
		case colServiceName:
			err = convertServiceName(d, dst)
		case colTraceID, colSpanID:
			err = convertID(col, f.width, d, dst, base, rej)
		case colFlags:
			err = convertFlags(d, dst)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// validity returns the validity bitmap of d's first n values (from
// d.Offset()), or nil when all of them are valid.
func validity(col arrowColumn, d arrow.ArrayData, n int) ([]byte, error) {
	bufs := d.Buffers()
	if len(bufs) == 0 || bufs[0] == nil || bufs[0].Len() == 0 {
		return nil, nil
	}
	bm := bufs[0].Bytes()
	if len(bm) < (d.Offset()+n+7)/8 {
		return nil, errCorrupt(col, "validity bitmap")
	}
	return bm, nil
}

func isNull(bm []byte, i int) bool { return bm != nil && bm[i>>3]&(1<<(i&7)) == 0 }

// fixedValues returns the bytes of d's first n values of width bytes.
func fixedValues(col arrowColumn, d arrow.ArrayData, n, width int) ([]byte, error) {
	bufs := d.Buffers()
	if n == 0 {
		return nil, nil
	}
	if len(bufs) < 2 || bufs[1] == nil {
		return nil, errCorrupt(col, "values")
	}
	b := bufs[1].Bytes()
	start := d.Offset() * width
	if d.Offset() < 0 || len(b) < start+n*width {
		return nil, errCorrupt(col, "values")
	}
	return b[start : start+n*width], nil
}

func convertTimestamps(col arrowColumn, scale int64, d arrow.ArrayData, dst []record.Record, base int, rej *rowErrors) error {
	n := len(dst)
	bm, err := validity(col, d, n)
	if err != nil {
		return err
	}
	vals, err := fixedValues(col, d, n, 8)
	if err != nil {
		return err
	}
	off := d.Offset()
	for i := range dst {
		if isNull(bm, off+i) {
			continue
		}
		v := int64(binary.NativeEndian.Uint64(vals[8*i:]))
		if scale != 1 {
			if v > math.MaxInt64/scale || v < math.MinInt64/scale {
				rej.add(base+i, fmt.Errorf("arrow_ipc: row %d: %s: %w: %d is outside the years 1678 to 2262", base+i, arrowColumns[col].name, record.ErrInvalidTimestamp, v))
				continue
			}
			v *= scale
		}
		if col == colTimestamp {
			dst[i].Timestamp = v
		} else {
			dst[i].ObservedTimestamp = v
		}
	}
	return nil
}

func convertSeverity(kind arrow.Type, d arrow.ArrayData, dst []record.Record, base int, rej *rowErrors) error {
	n := len(dst)
	bm, err := validity(colSeverityNumber, d, n)
	if err != nil {
		return err
	}
	width := 8
	switch kind {
	case arrow.INT8, arrow.UINT8:
		width = 1
	case arrow.INT16:
		width = 2
	case arrow.INT32:
		width = 4
	}
	vals, err := fixedValues(colSeverityNumber, d, n, width)
	if err != nil {
		return err
	}
	off := d.Offset()
	for i := range dst {
		if isNull(bm, off+i) {
			continue
		}
		var v int64
		switch kind {
		case arrow.INT8:
			v = int64(int8(vals[i]))
		case arrow.UINT8:
			v = int64(vals[i])
		case arrow.INT16:
			v = int64(int16(binary.NativeEndian.Uint16(vals[2*i:])))
		case arrow.INT32:
			v = int64(int32(binary.NativeEndian.Uint32(vals[4*i:])))
		default:
			v = int64(binary.NativeEndian.Uint64(vals[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				rej.add(base+i, fmt.Errorf("arrow_ipc: row %d: %s: %w: %d (want 0 to 24)", base+i, logschema.SeverityNumber, record.ErrInvalidSeverity, v))
				continue
			}
		}
		// Numbers outside 0..24 fail record validation, as they do in
		// records: the record goes to the dead-letter stream.
		dst[i].SeverityNumber = int32(v)
	}
	return nil
}

func convertFlags(d arrow.ArrayData, dst []record.Record) error {
	n := len(dst)
	bm, err := validity(colFlags, d, n)
	if err != nil {
		return err
	}
	vals, err := fixedValues(colFlags, d, n, 4)
	if err != nil {
		return err
	}
	off := d.Offset()
	for i := range dst {
		if !isNull(bm, off+i) {
			dst[i].Flags = binary.NativeEndian.Uint32(vals[4*i:])
		}
	}
	return nil
}

// textArray reads the values from..to of a utf8 or large_utf8 array.
// With copied set, their bytes are copied into one Go string that
// values are cut from.
type textArray struct {
	col   arrowColumn
	raw   []byte // the array's value bytes from first to last
	data  string // copy of raw, when asked for
	offs  []byte // the offsets of values from..to, one more than values
	wide  bool   // 64-bit offsets
	first int64  // offset of raw[0]
	valid []byte // validity bitmap, or nil
	vbase int    // the bit of the range's first value in valid
}

func newTextArray(col arrowColumn, d arrow.ArrayData, from, to int, copied bool) (textArray, error) {
	t := textArray{col: col, wide: d.DataType().ID() == arrow.LARGE_STRING, vbase: d.Offset() + from}
	if to == from {
		return t, nil
	}
	if from < 0 || to < from || d.Len() < to || d.Offset() < 0 {
		return t, errCorrupt(col, "length")
	}
	var err error
	if t.valid, err = validity(col, d, to); err != nil {
		return t, err
	}
	bufs := d.Buffers()
	if len(bufs) < 3 || bufs[1] == nil {
		return t, errCorrupt(col, "offsets")
	}
	w := 4
	if t.wide {
		w = 8
	}
	ob := bufs[1].Bytes()
	start, end := (d.Offset()+from)*w, (d.Offset()+to+1)*w
	if len(ob) < end {
		return t, errCorrupt(col, "offsets")
	}
	t.offs = ob[start:end]
	var data []byte
	if bufs[2] != nil {
		data = bufs[2].Bytes()
	}
	first, last := t.offset(0), t.offset(to-from)
	if first < 0 || last < first || last > int64(len(data)) {
		return t, errCorrupt(col, "offsets")
	}
	t.first, t.raw = first, data[first:last]
	if copied {
		t.data = string(t.raw)
	}
	return t, nil
}

// offset returns the i-th offset of the range.
func (t *textArray) offset(i int) int64 {
	if t.wide {
		return int64(binary.NativeEndian.Uint64(t.offs[8*i:]))
	}
	return int64(int32(binary.NativeEndian.Uint32(t.offs[4*i:])))
}

// bounds returns where the range's i-th value lies in raw.
func (t *textArray) bounds(i int) (lo, hi int, err error) {
	a, b := t.offset(i)-t.first, t.offset(i+1)-t.first
	if a < 0 || b < a || b > int64(len(t.raw)) {
		return 0, 0, errCorrupt(t.col, "offsets")
	}
	return int(a), int(b), nil
}

// null reports whether the range's i-th value is null.
func (t *textArray) null(i int) bool { return isNull(t.valid, t.vbase+i) }

func convertText(col arrowColumn, d arrow.ArrayData, dst []record.Record) error {
	t, err := newTextArray(col, d, 0, len(dst), true)
	if err != nil {
		return err
	}
	for i := range dst {
		if t.null(i) {
			continue
		}
		lo, hi, err := t.bounds(i)
		if err != nil {
			return err
		}
		if col == colBody {
			dst[i].Body = t.data[lo:hi]
		} else {
			dst[i].SeverityText = t.data[lo:hi]
		}
	}
	return nil
}

// convertMap reads a map<utf8, utf8> column into the records' attributes
// or resource, keeping extra free slots after each row's attributes. All
// rows' attributes are cut from one slice.
func convertMap(col arrowColumn, d arrow.ArrayData, dst []record.Record, extra, base int, rej *rowErrors) error {
	n := len(dst)
	bm, err := validity(col, d, n)
	if err != nil {
		return err
	}
	offs, err := fixedValues(col, d, n+1, 4)
	if err != nil {
		return err
	}
	entry := func(i int) int { return int(int32(binary.NativeEndian.Uint32(offs[4*i:]))) }
	e0, e1 := entry(0), entry(n)
	if e0 < 0 || e1 < e0 {
		return errCorrupt(col, "offsets")
	}
	children := d.Children()
	if len(children) != 1 {
		return errCorrupt(col, "entries")
	}
	entries := children[0]
	fields := entries.Children()
	if len(fields) != 2 || entries.Len() < e1 || entries.Offset() < 0 {
		return errCorrupt(col, "entries")
	}
	eo := entries.Offset()
	keys, err := newTextArray(col, fields[0], eo+e0, eo+e1, true)
	if err != nil {
		return err
	}
	vals, err := newTextArray(col, fields[1], eo+e0, eo+e1, true)
	if err != nil {
		return err
	}
	slab := make([]record.KV, e1-e0+extra*n)
	pos := 0
	for i := range dst {
		a, b := entry(i), entry(i+1)
		if isNull(bm, d.Offset()+i) {
			a, b = 0, 0
		} else if a < e0 || b < a || b > e1 {
			return errCorrupt(col, "offsets")
		}
		kvs := slab[pos : pos+b-a : pos+b-a+extra]
		pos += b - a + extra
		for j := range kvs {
			e := a - e0 + j
			if keys.null(e) {
				// Kept with an empty key in the dead letter.
				rej.add(base+i, fmt.Errorf("arrow_ipc: row %d: %s: entry %d has a null key", base+i, arrowColumns[col].name, j))
			} else {
				klo, khi, err := keys.bounds(e)
				if err != nil {
					return err
				}
				kvs[j].Key = keys.data[klo:khi]
			}
			if vals.null(e) {
				continue
			}
			vlo, vhi, err := vals.bounds(e)
			if err != nil {
				return err
			}
			kvs[j].Value = vals.data[vlo:vhi]
		}
		if cap(kvs) == 0 {
			kvs = nil
		}
		*kvField(col, &dst[i]) = kvs
	}
	return nil
}

// kvField returns the attributes or the resource of r.
func kvField(col arrowColumn, r *record.Record) *[]record.KV {
	if col == colAttributes {
		return &r.Attributes
	}
	return &r.Resource
}

// convertJSONMap reads a utf8 column of JSON objects, as weir's SQL
// endpoint writes maps in Arrow, into the records' attributes or
// resource. Values are kept as text: strings as they are, anything else
// as its JSON; keys are sorted. Empty strings and nulls are no
// attributes.
func convertJSONMap(col arrowColumn, d arrow.ArrayData, dst []record.Record, extra, base int, rej *rowErrors) error {
	t, err := newTextArray(col, d, 0, len(dst), false)
	if err != nil {
		return err
	}
	for i := range dst {
		var kvs []record.KV
		if !t.null(i) {
			lo, hi, err := t.bounds(i)
			if err != nil {
				return err
			}
			if kvs, err = jsonKVs(t.raw[lo:hi], extra); err != nil {
				rej.add(base+i, fmt.Errorf("arrow_ipc: row %d: %s: %w", base+i, arrowColumns[col].name, err))
			}
		}
		*kvField(col, &dst[i]) = kvs
	}
	return nil
}

func jsonKVs(text []byte, extra int) ([]record.KV, error) {
	if len(bytes.TrimSpace(text)) == 0 {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(text, &m); err != nil || m == nil {
		return nil, fmt.Errorf("not a JSON object of attributes: %.256q", text)
	}
	if len(m) == 0 {
		return nil, nil
	}
	kvs := make([]record.KV, 0, len(m)+extra)
	for k, raw := range m {
		v := string(raw)
		var s string
		switch {
		case len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil:
			v = s
		case v == "null":
			v = ""
		default:
			var buf bytes.Buffer
			if json.Compact(&buf, raw) == nil {
				v = buf.String()
			}
		}
		kvs = append(kvs, record.KV{Key: k, Value: v})
	}
	slices.SortFunc(kvs, func(a, b record.KV) int { return strings.Compare(a.Key, b.Key) })
	return kvs, nil
}

// convertServiceName sets the resource attribute service.name of each
// row with a non-empty service_name, over the resource's own.
func convertServiceName(d arrow.ArrayData, dst []record.Record) error {
	t, err := newTextArray(colServiceName, d, 0, len(dst), true)
	if err != nil {
		return err
	}
	// A resource column leaves a free slot after each row's resource;
	// rows without one get theirs from spare.
	var spare []record.KV
	for i := range dst {
		if t.null(i) {
			continue
		}
		lo, hi, err := t.bounds(i)
		if err != nil {
			return err
		}
		if lo == hi {
			continue
		}
		kv := record.KV{Key: serviceNameKey, Value: t.data[lo:hi]}
		r := &dst[i]
		switch j := slices.IndexFunc(r.Resource, func(kv record.KV) bool { return kv.Key == serviceNameKey }); {
		case j >= 0:
			r.Resource[j].Value = kv.Value
		case r.Resource == nil:
			if spare == nil {
				spare = make([]record.KV, len(dst))
			}
			r.Resource = spare[i : i+1 : i+1]
			r.Resource[0] = kv
		default:
			r.Resource = append(r.Resource, kv)
		}
	}
	return nil
}

// serviceNameKey is the resource attribute of the service_name column.
const serviceNameKey = "service.name"

// convertID reads trace ids (16 bytes) or span ids (8 bytes), from hex
// text or fixed_size_binary; empty text and nulls are no id.
func convertID(col arrowColumn, width int, d arrow.ArrayData, dst []record.Record, base int, rej *rowErrors) error {
	n := len(dst)
	size := 16
	if col == colSpanID {
		size = 8
	}
	set := func(i int, b []byte) {
		if col == colTraceID {
			copy(dst[i].TraceID[:], b)
		} else {
			copy(dst[i].SpanID[:], b)
		}
	}
	if width > 0 {
		bm, err := validity(col, d, n)
		if err != nil {
			return err
		}
		vals, err := fixedValues(col, d, n, width)
		if err != nil {
			return err
		}
		for i := range dst {
			if !isNull(bm, d.Offset()+i) {
				set(i, vals[i*width:(i+1)*width])
			}
		}
		return nil
	}
	t, err := newTextArray(col, d, 0, n, false)
	if err != nil {
		return err
	}
	var id [16]byte
	for i := range dst {
		if t.null(i) {
			continue
		}
		lo, hi, err := t.bounds(i)
		if err != nil {
			return err
		}
		text := t.raw[lo:hi]
		if len(text) == 0 {
			continue
		}
		if len(text) != 2*size {
			rej.add(base+i, fmt.Errorf("arrow_ipc: row %d: %s %.*q: want %d hex digits", base+i, arrowColumns[col].name, 2*maxHexID, text, 2*size))
			continue
		}
		if _, err := hex.Decode(id[:size], text); err != nil {
			rej.add(base+i, fmt.Errorf("arrow_ipc: row %d: %s %q: want %d hex digits", base+i, arrowColumns[col].name, text, 2*size))
			continue
		}
		set(i, id[:size])
	}
	return nil
}

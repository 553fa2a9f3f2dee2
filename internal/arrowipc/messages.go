package arrowipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Messages frames the messages of an Arrow IPC stream held in memory
// for ipc.NewReaderFromMessageReader. It hands the reader views of the
// input instead of copies, and it checks each message's metadata before
// the reader parses it: arrow-go sizes slices by the lengths of the
// metadata's vectors (the schema's fields, a field's children, custom
// metadata) without checking them against the metadata's size, and
// follows a field's children without bounding the depth, so a few bytes
// could make it allocate terabytes or recurse until the stack overflows.
// Both would crash the process, not fail the request.
//
// The first message must be a schema and the others record batches; a
// stream ends with an end-of-stream marker or with the input.
type Messages struct {
	data  []byte
	pos   int
	n     int  // messages read
	ended bool // the end-of-stream marker was read
	cur   *ipc.Message
	refs  atomic.Int64
}

var _ ipc.MessageReader = (*Messages)(nil)

func NewMessages(data []byte) *Messages {
	m := &Messages{data: data}
	m.refs.Store(1)
	return m
}

// Message types of the metadata (MessageHeader in Message.fbs).
const (
	fbHeaderSchema      = 1
	fbHeaderRecordBatch = 3
	fbTypeUnion         = 14 // Type union of Schema.fbs
)

// maxFieldDepth bounds the nesting of a schema's fields; the accepted
// columns nest two deep (a map's entries and their key and value).
const maxFieldDepth = 32

// errIPCTruncated reports input that ends inside a message.
var errIPCTruncated = errors.New("truncated message")

// Message returns the next message, valid until the next call; io.EOF at
// the end of the stream.
func (m *Messages) Message() (*ipc.Message, error) {
	if m.cur != nil {
		m.cur.Release()
		m.cur = nil
	}
	if m.ended || m.pos == len(m.data) {
		return nil, io.EOF
	}
	word := func() (uint32, bool) {
		if len(m.data)-m.pos < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(m.data[m.pos:])
		m.pos += 4
		return v, true
	}
	size, ok := word()
	if ok && size == 0xFFFFFFFF { // continuation marker; before it, the size came first
		size, ok = word()
	}
	switch {
	case !ok:
		return nil, errIPCTruncated
	case size == 0:
		m.ended = true
		return nil, io.EOF
	case size < 8 || size > 1<<31-1:
		return nil, fmt.Errorf("message %d: metadata size %d", m.n, size)
	case int(size) > len(m.data)-m.pos:
		return nil, errIPCTruncated
	}
	meta := m.data[m.pos : m.pos+int(size)]
	m.pos += int(size)
	typ, bodyLen, err := checkMessage(meta)
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", m.n, err)
	}
	switch {
	case m.n == 0 && typ != fbHeaderSchema:
		return nil, fmt.Errorf("message 0 is not a schema (message type %d)", typ)
	case m.n > 0 && typ == fbHeaderSchema:
		return nil, ErrSchemaChange
	case m.n > 0 && typ != fbHeaderRecordBatch:
		return nil, fmt.Errorf("message %d has type %d: only record batches follow the schema (dictionary-encoded columns are not accepted)", m.n, typ)
	case bodyLen < 0 || bodyLen > int64(len(m.data)-m.pos):
		return nil, errIPCTruncated
	}
	body := m.data[m.pos : m.pos+int(bodyLen)]
	m.pos += int(bodyLen)
	m.n++
	mb, bb := memory.NewBufferBytes(meta), memory.NewBufferBytes(body)
	m.cur = ipc.NewMessage(mb, bb)
	mb.Release()
	bb.Release()
	return m.cur, nil
}

// CheckSchema checks that data begins with a schema message that
// arrow-go's readers can parse without the harm Messages guards against,
// as an IPC stream's first message or a schema serialized on its own
// (the ARROW:schema of a Parquet file's footer, which pqarrow decodes
// with an unchecked reader).
func CheckSchema(data []byte) error {
	m := NewMessages(data)
	defer m.Release()
	_, err := m.Message()
	if errors.Is(err, io.EOF) {
		return errors.New("no schema message")
	}
	return err
}

// Rest returns the bytes after the end-of-stream marker.
func (m *Messages) Rest() int { return len(m.data) - m.pos }

func (m *Messages) Retain() { m.refs.Add(1) }

func (m *Messages) Release() {
	if m.refs.Add(-1) == 0 && m.cur != nil {
		m.cur.Release()
		m.cur = nil
	}
}

// checkMessage checks what arrow-go trusts in a message's metadata (see
// Messages) and returns its type and body length.
func checkMessage(meta []byte) (typ byte, bodyLen int64, err error) {
	f := &flatBuf{b: meta, budget: len(meta) / 4}
	root := f.u32(0)
	if o := f.slot(root, 1); o != 0 {
		typ = f.u8(root + o)
	}
	if o := f.slot(root, 3); o != 0 {
		bodyLen = f.i64(root + o)
	}
	f.vector(root, 4) // custom_metadata
	if typ == fbHeaderSchema {
		o := f.slot(root, 2)
		if o == 0 {
			return 0, 0, errors.New("schema message without a schema")
		}
		schema := f.ref(root, o)
		start, n := f.vector(schema, 1) // fields
		for i := uint32(0); i < n && f.err == nil; i++ {
			f.field(f.ref(start+4*i, 0), 1)
		}
		f.vector(schema, 2) // custom_metadata
	}
	if f.err != nil {
		return 0, 0, f.err
	}
	return typ, bodyLen, nil
}

// flatBuf reads flatbuffer metadata with bounds checks, using the
// offset arithmetic of the flatbuffers Go runtime (unsigned 32-bit,
// wrapping), so that it visits what arrow-go's readers will visit. The
// first failure sticks in err; reads then return zero.
type flatBuf struct {
	b      []byte
	budget int // tables left to visit
	err    error
}

func (f *flatBuf) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf("corrupt metadata: "+format, args...)
	}
}

func (f *flatBuf) has(pos uint32, n int) bool {
	if f.err != nil {
		return false
	}
	if uint64(pos)+uint64(n) > uint64(len(f.b)) {
		f.fail("read of %d bytes at %d, past the end (%d bytes)", n, pos, len(f.b))
		return false
	}
	return true
}

func (f *flatBuf) u8(pos uint32) byte {
	if !f.has(pos, 1) {
		return 0
	}
	return f.b[pos]
}

func (f *flatBuf) u16(pos uint32) uint16 {
	if !f.has(pos, 2) {
		return 0
	}
	return binary.LittleEndian.Uint16(f.b[pos:])
}

func (f *flatBuf) u32(pos uint32) uint32 {
	if !f.has(pos, 4) {
		return 0
	}
	return binary.LittleEndian.Uint32(f.b[pos:])
}

func (f *flatBuf) i64(pos uint32) int64 {
	if !f.has(pos, 8) {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(f.b[pos:]))
}

// slot returns the offset in the table at pos of its field id, or 0 when
// the field is absent (flatbuffers.Table.Offset).
func (f *flatBuf) slot(pos uint32, id int) uint32 {
	vtable := uint32(int32(pos) - int32(f.u32(pos)))
	if vo := uint16(4 + 2*id); vo < f.u16(vtable) {
		return uint32(f.u16(vtable + uint32(vo)))
	}
	return 0
}

// ref follows the offset stored at pos+o (flatbuffers.Table.Indirect).
func (f *flatBuf) ref(pos, o uint32) uint32 {
	p := pos + o
	return p + f.u32(p)
}

// vector checks the vector of 4-byte elements of field id of the table
// at pos and returns where its elements start and how many there are
// (0 when absent). The elements must fit in the buffer.
func (f *flatBuf) vector(pos uint32, id int) (start, n uint32) {
	o := f.slot(pos, id)
	if o == 0 || f.err != nil {
		return 0, 0
	}
	x := f.ref(pos, o)
	n = f.u32(x)
	start = x + 4
	if f.err == nil && uint64(start)+4*uint64(n) > uint64(len(f.b)) {
		f.fail("vector of %d elements at %d in %d bytes", n, x, len(f.b))
		return 0, 0
	}
	return start, n
}

// field checks a schema field at pos and its children.
func (f *flatBuf) field(pos uint32, depth int) {
	if f.budget--; f.budget < 0 {
		f.fail("more fields than the metadata can hold")
		return
	}
	if depth > maxFieldDepth {
		f.fail("fields nested more than %d deep", maxFieldDepth)
		return
	}
	if o := f.slot(pos, 2); o != 0 && f.u8(pos+o) == fbTypeUnion {
		if o := f.slot(pos, 3); o != 0 {
			f.vector(f.ref(pos, o), 1) // typeIds
		}
	}
	f.vector(pos, 6) // custom_metadata
	start, n := f.vector(pos, 5)
	for i := uint32(0); i < n && f.err == nil; i++ {
		f.field(f.ref(start+4*i, 0), depth+1)
	}
}

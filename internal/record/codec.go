package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrInvalidBatch is returned by DecodeBatch for input that is not a
// batch encoding it understands (truncated, malformed or of a newer
// version). Callers match it with errors.Is.
var ErrInvalidBatch = errors.New("invalid batch encoding")

// codecVersion is the first byte of every encoded batch.
const codecVersion = 1

// Record field mask bits (see docs/wal.md, "Batch payload"). A decoder
// rejects bits it does not know, so a later version can add fields behind
// new bits.
const (
	maskSeverityText = 1 << iota // severity text follows
	maskAttributes               // attribute list follows
	maskResource                 // resource list follows
	maskSameResource             // resource equals the previous record's; nothing follows
	maskTraceID                  // 16-byte trace id follows
	maskSpanID                   // 8-byte span id follows
	maskFlags                    // uvarint flags follow
	maskKnown        = maskFlags<<1 - 1
)

// Lower bounds on encoded sizes, to bound what a decoder allocates for a
// count before it has read the items.
const (
	minRecordBytes = 5 // mask, two timestamps, severity number, body length
	minKVBytes     = 2 // two lengths
)

// AppendBatch appends the binary encoding of b to dst and returns the
// extended slice. It encodes every field but Bytes, which DecodeBatch
// recomputes. The encoding is deterministic. A resource list equal to the
// previous record's is stored once. AppendBatch grows dst at most once.
//
// A columnar batch (Cols set) is encoded in the columnar format: its
// header, then an Arrow IPC stream of its rows, b.IPC as it is when set.
func AppendBatch(dst []byte, b *Batch) []byte {
	if b.Cols != nil {
		return appendColumnar(dst, b)
	}
	// First pass: the stored attribute count and a size estimate.
	kvs, size := 0, 48+len(b.Tenant)+len(b.Stream)+len(b.ProducerID)
	for i := range b.Records {
		r := &b.Records[i]
		size += 48 + len(r.SeverityText) + len(r.Body)
		kvs += len(r.Attributes)
		size += kvsSize(r.Attributes)
		if len(r.Resource) > 0 && (i == 0 || !equalKVs(r.Resource, b.Records[i-1].Resource)) {
			kvs += len(r.Resource)
			size += kvsSize(r.Resource)
		}
	}
	dst = slices.Grow(dst, size)

	dst = append(dst, codecVersion)
	dst = appendString(dst, b.Tenant)
	dst = appendString(dst, b.Stream)
	dst = binary.AppendVarint(dst, int64(b.Partition))
	dst = binary.AppendVarint(dst, b.Offset)
	dst = appendString(dst, b.ProducerID)
	dst = binary.AppendUvarint(dst, b.Sequence)
	dst = binary.AppendUvarint(dst, uint64(len(b.Records)))
	dst = binary.AppendUvarint(dst, uint64(kvs))
	var prevTS int64
	for i := range b.Records {
		r := &b.Records[i]
		var mask uint64
		if r.SeverityText != "" {
			mask |= maskSeverityText
		}
		if len(r.Attributes) > 0 {
			mask |= maskAttributes
		}
		if len(r.Resource) > 0 {
			if i > 0 && equalKVs(r.Resource, b.Records[i-1].Resource) {
				mask |= maskSameResource
			} else {
				mask |= maskResource
			}
		}
		if r.TraceID != ([16]byte{}) {
			mask |= maskTraceID
		}
		if r.SpanID != ([8]byte{}) {
			mask |= maskSpanID
		}
		if r.Flags != 0 {
			mask |= maskFlags
		}
		dst = binary.AppendUvarint(dst, mask)
		dst = binary.AppendVarint(dst, r.Timestamp-prevTS) // wraps; the decoder wraps back
		dst = binary.AppendVarint(dst, r.ObservedTimestamp-r.Timestamp)
		dst = binary.AppendVarint(dst, int64(r.SeverityNumber))
		prevTS = r.Timestamp
		if mask&maskSeverityText != 0 {
			dst = appendString(dst, r.SeverityText)
		}
		dst = appendString(dst, r.Body)
		if mask&maskAttributes != 0 {
			dst = appendKVs(dst, r.Attributes)
		}
		if mask&maskResource != 0 {
			dst = appendKVs(dst, r.Resource)
		}
		if mask&maskTraceID != 0 {
			dst = append(dst, r.TraceID[:]...)
		}
		if mask&maskSpanID != 0 {
			dst = append(dst, r.SpanID[:]...)
		}
		if mask&maskFlags != 0 {
			dst = binary.AppendUvarint(dst, uint64(r.Flags))
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendKVs(dst []byte, kvs []KV) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(kvs)))
	for _, kv := range kvs {
		dst = appendString(dst, kv.Key)
		dst = appendString(dst, kv.Value)
	}
	return dst
}

func kvsSize(kvs []KV) int {
	n := binary.MaxVarintLen64
	for _, kv := range kvs {
		n += 2*binary.MaxVarintLen64 + len(kv.Key) + len(kv.Value)
	}
	return n
}

func equalKVs(a, b []KV) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// DecodeBatch decodes one batch encoded by AppendBatch and recomputes its
// Bytes. It does not retain data: all strings of the batch are substrings
// of one copy of data, so a decoded batch costs four allocations (the
// batch, that copy, the records and the attribute lists) and holding any
// one of its strings keeps the copy alive. Records whose resource lists
// were equal share one Resource slice (capacity-limited, so appending to
// one copies it); treat decoded attribute lists as read-only.
//
// DecodeBatch also decodes the columnar format (see AppendBatch), into a
// columnar batch whose IPC holds the stream it was read from.
//
// Counts and lengths are checked against the input's size before anything
// is allocated for them (every record takes at least 5 bytes and every
// stored attribute at least 2), so DecodeBatch never allocates more than
// about 30 times len(data), whatever the input claims.
// UTF-8 is not validated again: the writer validated it. Any malformed,
// truncated or trailing input fails with an error wrapping
// ErrInvalidBatch; DecodeBatch never panics.
func DecodeBatch(data []byte) (*Batch, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidBatch)
	}
	if data[0] == columnarVersion {
		return decodeColumnar(data)
	}
	if data[0] != codecVersion {
		return nil, fmt.Errorf("%w: version %d (this build reads versions %d and %d)", ErrInvalidBatch, data[0], codecVersion, columnarVersion)
	}
	d := decoder{data: data, pos: 1}
	b := &Batch{}
	d.header(b)
	n := d.uvarint("record count", "")
	kvs := d.uvarint("attribute count", "")
	if d.err != nil {
		return nil, d.err
	}
	left := uint64(len(data) - d.pos)
	if n > left/minRecordBytes || kvs > left/minKVBytes || n*minRecordBytes+kvs*minKVBytes > left {
		return nil, fmt.Errorf("%w: %d records and %d attributes cannot fit in %d bytes", ErrInvalidBatch, n, kvs, left)
	}
	if n > 0 {
		b.Records = make([]Record, n)
	}
	var kvBuf []KV
	if kvs > 0 {
		kvBuf = make([]KV, kvs)
	}
	var prevTS int64
	for i := range b.Records {
		d.record(b.Records, i, &prevTS, &kvBuf)
		if d.err != nil {
			return nil, fmt.Errorf("record %d: %w", i, d.err)
		}
		b.Bytes += b.Records[i].Size()
	}
	if len(kvBuf) != 0 {
		return nil, fmt.Errorf("%w: %d attributes announced but not used", ErrInvalidBatch, len(kvBuf))
	}
	if d.pos != len(data) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrInvalidBatch, len(data)-d.pos)
	}
	return b, nil
}

// decoder reads an encoded batch. The first error sticks: later reads
// return zero values, and callers check err once per record.
// header decodes the fields both batch formats start with, after the
// version byte.
func (d *decoder) header(b *Batch) {
	b.Tenant = d.string("tenant")
	b.Stream = d.string("stream")
	part := d.varint("partition")
	if part < math.MinInt32 || part > math.MaxInt32 {
		d.fail("partition %d out of range", part)
	}
	b.Partition = int32(part)
	b.Offset = d.varint("offset")
	b.ProducerID = d.string("producer id")
	b.Sequence = d.uvarint("sequence", "")
}

type decoder struct {
	data    []byte
	pos     int
	backing string // copy of data that decoded strings slice; made on first use
	err     error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrInvalidBatch, fmt.Sprintf(format, args...), d.pos)
	}
}

// uvarint reads a uvarint; what and suffix name it in an error (two
// arguments, so that the hot path builds no string).
func (d *decoder) uvarint(what, suffix string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.pos:])
	if n <= 0 {
		d.fail("bad or truncated %s%s", what, suffix)
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.data[d.pos:])
	if n <= 0 {
		d.fail("bad or truncated %s", what)
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what, " length")
	if d.err != nil || n == 0 {
		return ""
	}
	if n > uint64(len(d.data)-d.pos) {
		d.fail("%s of %d bytes runs past the end", what, n)
		return ""
	}
	if d.backing == "" {
		d.backing = string(d.data)
	}
	s := d.backing[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s
}

func (d *decoder) bytes(dst []byte, what string) {
	if d.err != nil {
		return
	}
	if len(d.data)-d.pos < len(dst) {
		d.fail("truncated %s", what)
		return
	}
	d.pos += copy(dst, d.data[d.pos:])
}

// kvs decodes a list into the front of *buf and advances *buf past it.
func (d *decoder) kvs(buf *[]KV, what string) []KV {
	n := d.uvarint(what, " count")
	if d.err != nil {
		return nil
	}
	if n == 0 || n > uint64(len(*buf)) {
		d.fail("%s count %d: want 1 to the %d announced attributes left", what, n, len(*buf))
		return nil
	}
	kvs := (*buf)[:n:n]
	*buf = (*buf)[n:]
	for i := range kvs {
		kvs[i].Key = d.string(what)
		kvs[i].Value = d.string(what)
	}
	return kvs
}

// record decodes recs[i]; recs[:i] are decoded already.
func (d *decoder) record(recs []Record, i int, prevTS *int64, kvBuf *[]KV) {
	r := &recs[i]
	mask := d.uvarint("field mask", "")
	if d.err != nil {
		return
	}
	if mask&^maskKnown != 0 {
		d.fail("unknown fields %#x in the field mask (written by a newer version?)", mask&^maskKnown)
		return
	}
	if mask&maskSameResource != 0 && (mask&maskResource != 0 || i == 0 || len(recs[i-1].Resource) == 0) {
		d.fail("field mask %#x repeats a resource that is not there", mask)
		return
	}
	r.Timestamp = *prevTS + d.varint("timestamp")
	*prevTS = r.Timestamp
	r.ObservedTimestamp = r.Timestamp + d.varint("observed timestamp")
	sev := d.varint("severity number")
	if sev < math.MinInt32 || sev > math.MaxInt32 {
		d.fail("severity number %d out of range", sev)
	}
	r.SeverityNumber = int32(sev)
	if mask&maskSeverityText != 0 {
		r.SeverityText = d.string("severity text")
	}
	r.Body = d.string("body")
	if mask&maskAttributes != 0 {
		r.Attributes = d.kvs(kvBuf, "attribute")
	}
	switch {
	case mask&maskResource != 0:
		r.Resource = d.kvs(kvBuf, "resource attribute")
	case mask&maskSameResource != 0:
		r.Resource = recs[i-1].Resource
	}
	if mask&maskTraceID != 0 {
		d.bytes(r.TraceID[:], "trace id")
	}
	if mask&maskSpanID != 0 {
		d.bytes(r.SpanID[:], "span id")
	}
	if mask&maskFlags != 0 {
		f := d.uvarint("flags", "")
		if f > math.MaxUint32 {
			d.fail("flags %#x out of range", f)
		}
		r.Flags = uint32(f)
	}
}

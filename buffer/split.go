package buffer

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
)

// sub is the part of a pushed batch bound for one partition.
type sub struct {
	part  int32
	prio  bool // the records are priority records (see isPriority)
	start int  // first record of the part in the arranged batch
	count int  // records
	bytes int  // accounted bytes
	batch *record.Batch
	end   int64 // the offset after its last record, once appended
}

// rowKeys reads what plan needs of each row of a batch in either form.
type rowKeys struct {
	recs    []record.Record
	cols    arrow.RecordBatch
	svc     *array.String
	sevNum  *array.Int32
	sevText *array.String
}

func keysOf(b *record.Batch) rowKeys {
	if c := b.Cols; c != nil {
		return rowKeys{cols: c, svc: c.Column(record.ColServiceName).(*array.String),
			sevNum: c.Column(record.ColSeverityNumber).(*array.Int32), sevText: c.Column(record.ColSeverityText).(*array.String)}
	}
	return rowKeys{recs: b.Records}
}

func (k *rowKeys) service(i int) string {
	if k.cols != nil {
		return k.svc.Value(i)
	}
	return k.recs[i].ServiceName()
}

func (k *rowKeys) priority(i int) bool {
	if k.cols != nil {
		if n := k.sevNum.Value(i); n != 0 {
			return n >= record.SeverityError
		}
		t := k.sevText.Value(i)
		return t != "" && record.ParseSeverity(t) >= record.SeverityError
	}
	return isPriority(&k.recs[i])
}

func (k *rowKeys) size(i int) int {
	if k.cols != nil {
		return record.RowSize(k.cols, i)
	}
	return k.recs[i].Size()
}

// partitionOf maps a partition key to one of n partitions with 32-bit
// FNV-1a (the function of hash/fnv.New32a, inlined to avoid allocating). It
// must never change: partitions, and so offsets, must agree across restarts.
func partitionOf(key string, n int) int32 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int32(h % uint32(n))
}

// isPriority reports whether a record is a priority record: severity
// ERROR or above, by number or, when the number is unset, by text.
func isPriority(r *record.Record) bool {
	if r.SeverityNumber != 0 {
		return r.SeverityNumber >= record.SeverityError
	}
	return r.SeverityText != "" && record.ParseSeverity(r.SeverityText) >= record.SeverityError
}

// plan works out how batch b spreads over n partitions, keyed by
// Record.ServiceName, and over the two classes of each partition (normal
// and priority records), without changing b: it appends one sub per lane
// (partition and class) that gets records, in lane order, to dst. When b
// goes whole to one lane, the only sub is b itself and dest is nil.
// Otherwise dest[i] is where record i goes once arranged, and the subs
// have no batch yet (see arrange). scratch, if long enough, backs dest.
func plan(b *record.Batch, n int, dst []sub, scratch []int32) (subs []sub, dest []int32) {
	k := keysOf(b)
	rows := b.Len()
	// Fast path: a batch usually comes from one resource, so one service,
	// and holds records of one class.
	name := k.service(0)
	first := partitionOf(name, n)
	prio := k.priority(0)
	mixed := false
	for i := 1; i < rows && !mixed; i++ {
		if k.priority(i) != prio {
			mixed = true
		}
		if nm := k.service(i); nm != name {
			name = nm
			if partitionOf(nm, n) != first {
				mixed = true
			}
		}
	}
	if !mixed {
		return append(dst, sub{part: first, prio: prio, count: rows, bytes: b.Bytes, batch: b}), nil
	}

	// Counting sort, stable within a lane. The per-lane tallies live on
	// the stack for up to 8 partitions.
	if cap(scratch) >= rows {
		dest = scratch[:rows]
	} else {
		dest = make([]int32, rows)
	}
	type tally struct{ count, bytes, next int }
	var tallyBuf [16]tally
	lanes := 2 * n
	tallies := tallyBuf[:0]
	if lanes > len(tallyBuf) {
		tallies = make([]tally, 0, lanes)
	}
	tallies = tallies[:lanes]
	name, p := "", int32(-1)
	for i := 0; i < rows; i++ {
		if nm := k.service(i); p < 0 || nm != name {
			name, p = nm, partitionOf(nm, n)
		}
		lane := 2 * p
		if k.priority(i) {
			lane++
		}
		dest[i] = lane
		tallies[lane].count++
		tallies[lane].bytes += k.size(i)
	}
	start := 0
	for i := range tallies {
		t := &tallies[i]
		if t.count == 0 {
			continue
		}
		dst = append(dst, sub{part: int32(i / 2), prio: i%2 == 1, start: start, count: t.count, bytes: t.bytes})
		t.next = start
		start += t.count
	}
	for i, l := range dest {
		dest[i] = int32(tallies[l].next)
		tallies[l].next++
	}
	return dst, dest
}

// arrange makes the sub-batches that plan described. It is called only once
// the push can no longer fail, because it takes b apart: the records are
// reordered in place so that each sub-batch is a slice of b's own array
// (no copy of the array), b itself becomes the first sub-batch, and the
// rest share one allocation of headers.
//
// A columnar batch is arranged into one new record batch of its rows in
// lane order (the rows are copied once), which it returns; the
// sub-batches are slices of it, b the first. The caller releases it.
// When b goes whole to one lane, arrange returns b.Cols, which stays b's.
func arrange(b *record.Batch, subs []sub, dest []int32) arrow.RecordBatch {
	if dest == nil {
		return b.Cols // subs[0].batch is b
	}
	if b.Cols != nil {
		order := make([]int, len(dest))
		for i, d := range dest {
			order[d] = i
		}
		all := record.Take(b.Cols, order, memory.DefaultAllocator)
		b.Release()
		rest := make([]record.Batch, len(subs)-1)
		for i := range subs {
			s := &subs[i]
			sb := b
			if i > 0 {
				sb = &rest[i-1]
				sb.Tenant, sb.Stream = b.Tenant, b.Stream
			}
			sb.Cols = all.NewSlice(int64(s.start), int64(s.start+s.count))
			sb.Bytes = s.bytes
			s.batch = sb
		}
		return all
	}
	recs := b.Records
	// Apply the permutation one cycle at a time: each swap puts one record
	// in its final place.
	for i := range dest {
		for int(dest[i]) != i {
			j := dest[i]
			recs[i], recs[j] = recs[j], recs[i]
			dest[i], dest[j] = dest[j], dest[i]
		}
	}
	rest := make([]record.Batch, len(subs)-1)
	for i := range subs {
		s := &subs[i]
		sb := b
		if i > 0 {
			sb = &rest[i-1]
			sb.Tenant, sb.Stream = b.Tenant, b.Stream
		}
		sb.Records = recs[s.start : s.start+s.count : s.start+s.count]
		sb.Bytes = s.bytes
		s.batch = sb
	}
	return nil
}

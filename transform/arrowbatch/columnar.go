package arrowbatch

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// consumeColumns is Consume for a columnar batch: its columns become the
// lake's without passing through rows. The columns that need no change
// (text, maps, flags, and timestamps and severities already complete)
// are the batch's own arrays; the ids become hex text, _partition and
// _offset are added, and the rows of each hour (or day file, see
// FilePartitioner) go to its batch as a slice when they are consecutive
// (a selection copy otherwise).
func (bt *Batcher) consumeColumns(ctx context.Context, b *record.Batch) error {
	defer b.Release()
	now := bt.now()
	lake := lakeColumns(b.Cols, b.Partition, b.Offset, now, bt.mem)
	defer lake.Release()
	n := int(lake.NumRows())
	ts := lake.Column(idxTimestamp).(*array.Timestamp).TimestampValues()
	hours := make([]sink.Partition, 0, 1) // Hour and Day of each batch the rows go to
	hourIdx := make([]int32, n)
	same := func(a, b sink.Partition) bool { return a.Day == b.Day && a.Hour.Equal(b.Hour) }
	// Rows mostly come in runs of one hour: the file partition is worked
	// out once per run.
	const hourNs = int64(time.Hour)
	var (
		h       sink.Partition
		runHour int64 // the hour of h, in Unix nanoseconds
		haveRun bool
	)
	for i := range n {
		t := int64(ts[i])
		hr := t - ((t%hourNs)+hourNs)%hourNs // floored, also before 1970
		if !haveRun || hr != runHour {
			h, runHour, haveRun = bt.fileOf(t, now), hr, true
		}
		j := len(hours) - 1
		if j < 0 || !same(hours[j], h) {
			for j = 0; j < len(hours) && !same(hours[j], h); j++ {
			}
			if j == len(hours) {
				hours = append(hours, h)
			}
		}
		hourIdx[i] = int32(j)
	}
	if len(hours) == 1 {
		lake.Retain()
		return bt.addPart(ctx, hours[0], now, lake, b.Offset, b.Bytes)
	}
	// Rows of an hour that are consecutive become one slice.
	rows := make([][]int, len(hours))
	for i, j := range hourIdx {
		rows[j] = append(rows[j], i)
	}
	for j, idx := range rows {
		bytes := 0
		for _, i := range idx {
			bytes += record.RowSize(b.Cols, i)
		}
		var part arrow.RecordBatch
		if lo, hi := idx[0], idx[len(idx)-1]+1; hi-lo == len(idx) {
			part = lake.NewSlice(int64(lo), int64(hi))
		} else {
			part = record.Take(lake, idx, bt.mem)
		}
		if err := bt.addPart(ctx, hours[j], now, part, b.Offset+int64(idx[0]), bytes); err != nil {
			return err
		}
	}
	return nil
}

// addPart adds part, rows of one hour (or day file) whose lowest offset
// is first, to that hour's batch, taking ownership of it, and flushes the
// batch if it is full.
func (bt *Batcher) addPart(ctx context.Context, hour sink.Partition, now time.Time, part arrow.RecordBatch, first int64, bytes int) error {
	ob, err := bt.openFor(ctx, hour, now)
	if err != nil {
		part.Release()
		return err
	}
	if ob.rows == 0 || first < ob.firstOf {
		ob.firstOf = first
	}
	if ob.built > 0 {
		// Keep arrival order: the rows built so far come first.
		ob.parts = append(ob.parts, ob.b.finish())
		ob.built = 0
	}
	ob.parts = append(ob.parts, part)
	ob.rows += int(part.NumRows())
	ob.bytes += bytes
	if ob.rows >= bt.cfg.MaxRows || ob.bytes >= bt.cfg.MaxBytes {
		return bt.flush(ctx, ob)
	}
	return nil
}

// finishOpen returns the rows of ob in arrival order as the parts they
// came in: the columnar batches handed through and the built rows. They
// are not concatenated here, on the stream partition's goroutine: the
// Writer encodes them as they are, on its own goroutines.
func (bt *Batcher) finishOpen(ob *openBatch) []arrow.RecordBatch {
	parts := ob.parts
	ob.parts = nil
	if ob.built > 0 || len(parts) == 0 {
		parts = append(parts, ob.b.finish())
	}
	ob.b.release()
	return parts
}

// releaseAll releases every batch of recs.
func releaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// lakeColumns returns the rows of cols (in logschema.Batch()) in the
// lake's schema, normalised like Normalize: _partition part, _offset
// from offset on, ids as hex text.
func lakeColumns(cols arrow.RecordBatch, part int32, offset int64, now time.Time, mem memory.Allocator) arrow.RecordBatch {
	n := int(cols.NumRows())
	out := make([]arrow.Array, len(schema.Fields()))
	for _, c := range []int{idxSeverityText, idxBody, idxAttributes, idxResource, idxServiceName, idxFlags} {
		out[c] = cols.Column(c)
		out[c].Retain()
	}
	normalizeColumns(cols, now, mem, out)
	out[idxTraceID] = hexIDs(cols.Column(record.ColTraceID).(*array.FixedSizeBinary), mem)
	out[idxSpanID] = hexIDs(cols.Column(record.ColSpanID).(*array.FixedSizeBinary), mem)
	pb := array.NewInt32Builder(mem)
	ob := array.NewInt64Builder(mem)
	pb.Reserve(n)
	ob.Reserve(n)
	for i := range n {
		pb.UnsafeAppend(part)
		ob.UnsafeAppend(offset + int64(i))
	}
	out[idxPartition] = pb.NewArray()
	out[idxOffset] = ob.NewArray()
	pb.Release()
	ob.Release()
	rec := array.NewRecordBatch(schema, out, int64(n))
	for _, a := range out {
		a.Release()
	}
	return rec
}

// normalizeColumns sets out's timestamp, observed timestamp, severity
// number and (when it must change) severity text columns as Normalize
// sets a record's: arrays of cols where nothing changes, new ones where
// something does.
func normalizeColumns(cols arrow.RecordBatch, now time.Time, mem memory.Allocator, out []arrow.Array) {
	n := int(cols.NumRows())
	ts := cols.Column(record.ColTimestamp).(*array.Timestamp)
	obs := cols.Column(record.ColObservedTimestamp).(*array.Timestamp)
	num := cols.Column(record.ColSeverityNumber).(*array.Int32)
	text := cols.Column(record.ColSeverityText).(*array.String)
	tv, ov, nv := ts.TimestampValues(), obs.TimestampValues(), num.Int32Values()
	fixTime, fixNum, fixText := false, false, false
	for i := range n {
		fixTime = fixTime || tv[i] == 0 || ov[i] == 0
		if nv[i] == 0 && text.ValueLen(i) > 0 {
			fixNum = true
		} else if nv[i] != 0 && text.ValueLen(i) == 0 {
			fixText = true
		}
	}
	out[idxTimestamp], out[idxObservedTimestamp], out[idxSeverityNumber] = ts, obs, num
	if fixTime {
		tb := array.NewTimestampBuilder(mem, schema.Field(idxTimestamp).Type.(*arrow.TimestampType))
		obb := array.NewTimestampBuilder(mem, schema.Field(idxObservedTimestamp).Type.(*arrow.TimestampType))
		tb.Reserve(n)
		obb.Reserve(n)
		nowNS := arrow.Timestamp(now.UnixNano())
		for i := range n {
			o, t := ov[i], tv[i]
			if o == 0 {
				o = nowNS
			}
			if t == 0 {
				t = o
			}
			tb.UnsafeAppend(t)
			obb.UnsafeAppend(o)
		}
		out[idxTimestamp], out[idxObservedTimestamp] = tb.NewArray(), obb.NewArray()
		tb.Release()
		obb.Release()
	} else {
		ts.Retain()
		obs.Retain()
	}
	if fixNum {
		nb := array.NewInt32Builder(mem)
		nb.Reserve(n)
		for i := range n {
			v := nv[i]
			if v == 0 && text.ValueLen(i) > 0 {
				v = record.ParseSeverity(text.Value(i))
			}
			nb.UnsafeAppend(v)
		}
		out[idxSeverityNumber] = nb.NewArray()
		nb.Release()
	} else {
		num.Retain()
	}
	if fixText {
		sb := array.NewStringBuilder(mem)
		sb.Reserve(n)
		for i := range n {
			if t := text.Value(i); t != "" || nv[i] == 0 {
				sb.Append(t)
			} else {
				sb.Append(record.SeverityText(nv[i]))
			}
		}
		out[idxSeverityText].Release()
		out[idxSeverityText] = sb.NewArray()
		sb.Release()
	}
}

// hexIDs returns ids as the lake's hex text: null for null and all-zero
// ids.
func hexIDs(ids *array.FixedSizeBinary, mem memory.Allocator) arrow.Array {
	n := ids.Len()
	width := ids.DataType().(*arrow.FixedSizeBinaryType).ByteWidth
	sb := array.NewStringBuilder(mem)
	defer sb.Release()
	sb.Reserve(n)
	sb.ReserveData(2 * width * (n - ids.NullN()))
	var buf [32]byte
	for i := range n {
		if ids.IsNull(i) {
			sb.AppendNull()
			continue
		}
		v := ids.Value(i)
		zero := true
		for _, c := range v {
			if c != 0 {
				zero = false
				break
			}
		}
		if zero {
			sb.AppendNull()
			continue
		}
		hex.Encode(buf[:2*width], v)
		sb.BinaryBuilder.Append(buf[:2*width])
	}
	return sb.NewArray()
}

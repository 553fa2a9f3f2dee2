package arrowbatch

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// Writer receives finished batches, each as the parts it was built from
// (recs, in order, of one schema: one Write is one batch). Write does not
// take ownership of recs: the caller releases them after Write returns.
// A Writer must be safe for concurrent use by several Batchers.
type Writer interface {
	Write(ctx context.Context, p sink.Partition, recs ...arrow.RecordBatch) error
}

// Config sets when a Batcher hands a batch to the Writer.
type Config struct {
	// MaxRows flushes a batch when it holds this many rows.
	MaxRows int
	// MaxBytes flushes a batch when its records' accounted size reaches it.
	MaxBytes int
	// MaxAge flushes a batch this long after its first row, checked on
	// every Tick. It bounds how stale the sink's view of a stream is.
	MaxAge time.Duration
	// MaxOpen bounds the batches under construction at once (one per hour
	// of record timestamps, or per date for a FilePartitioner's day
	// files); past it the oldest is flushed.
	MaxOpen int
	// MaxPending bounds the finished batches kept for retry after the
	// Writer failed; past it Consume blocks, retrying, which backs
	// pressure up into the buffer.
	MaxPending int
	// MaxColumns bounds the attributes promoted to typed columns (named
	// logschema.AttributePrefix + key); 0, the default, promotes none.
	// Promotion makes typed queries of those attributes faster at a cost in ingest (the values
	// are stored twice; bench/RESULTS.md measures it).
	MaxColumns int
}

// DefaultConfig returns settings that keep records visible to queries
// within about a quarter second.
func DefaultConfig() Config {
	return Config{
		MaxRows:    64 << 10,
		MaxBytes:   16 << 20,
		MaxAge:     250 * time.Millisecond,
		MaxOpen:    16,
		MaxPending: 64,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.MaxRows < 1:
		return fmt.Errorf("transform: MaxRows must be positive, got %d", c.MaxRows)
	case c.MaxBytes < 1:
		return fmt.Errorf("transform: MaxBytes must be positive, got %d", c.MaxBytes)
	case c.MaxAge <= 0:
		return fmt.Errorf("transform: MaxAge must be positive, got %s", c.MaxAge)
	case c.MaxOpen < 1:
		return fmt.Errorf("transform: MaxOpen must be positive, got %d", c.MaxOpen)
	case c.MaxPending < 1:
		return fmt.Errorf("transform: MaxPending must be positive, got %d", c.MaxPending)
	case c.MaxColumns < 0 || c.MaxColumns > 64:
		return fmt.Errorf("transform: MaxColumns must be 0 to 64, got %d", c.MaxColumns)
	}
	return nil
}

// Batcher builds the records of one stream partition into Arrow batches.
// Its methods must be called from one goroutine at a time.
type Batcher struct {
	cfg    Config
	tenant string
	stream string
	part   int32
	w      Writer
	mem    memory.Allocator
	log    *slog.Logger
	now    func() time.Time

	open    []*openBatch // by first-row time, oldest first
	pending []pendingBatch

	prom      promoter
	schema    *arrow.Schema // of the batches built now
	conflicts int64         // values that did not fit their promoted column

	// hint is what the last batch built from records alone held, when it
	// was the only open batch: a steady stream's next batch reserves as
	// much up front (see openFor).
	hint sizeHint
}

// TypeConflicts returns how many attribute values did not parse as the
// type of their promoted column (they are NULL in the column and kept in
// the attributes map).
func (bt *Batcher) TypeConflicts() int64 { return bt.conflicts }

type openBatch struct {
	hour    time.Time // sink.Partition.Hour: the hour, or the date of a day file
	day     bool      // sink.Partition.Day
	first   time.Time
	rows    int
	bytes   int
	b       *builder
	built   int                 // rows in b not yet in parts
	parts   []arrow.RecordBatch // finished rows in arrival order (columnar batches, then b's)
	firstOf int64               // lowest offset of its rows (priority records can arrive ahead of lower offsets)
}

type pendingBatch struct {
	p       sink.Partition
	recs    []arrow.RecordBatch // the batch's rows in parts, in order, of one schema
	rows    int
	firstOf int64
}

// NewBatcher returns a Batcher for one stream partition that writes to w.
// mem and log may be nil for the defaults.
func NewBatcher(cfg Config, tenant, stream string, part int32, w Writer, mem memory.Allocator, log *slog.Logger) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, errors.New("transform: nil Writer")
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	if log == nil {
		log = slog.Default()
	}
	return &Batcher{cfg: cfg, tenant: tenant, stream: stream, part: part, w: w, mem: mem, log: log, now: time.Now,
		prom: promoter{max: cfg.MaxColumns}, schema: schema}, nil
}

// Consume normalises the records of b and adds them to the batches under
// construction, flushing those that fill up. It takes ownership of b.
// Records keep their order within each hour partition. A columnar batch
// (b.Cols) is added as columns, without becoming records (unless
// MaxColumns promotes attributes), and released.
func (bt *Batcher) Consume(ctx context.Context, b *record.Batch) error {
	if err := bt.retryPending(ctx, bt.cfg.MaxPending-1); err != nil {
		b.Release()
		return err
	}
	if b.Cols != nil {
		if bt.cfg.MaxColumns == 0 {
			return bt.consumeColumns(ctx, b)
		}
		// Promotion reads attributes row by row.
		b.Materialize()
	}
	if bt.prom.decide() {
		// New columns: the batches under construction finish with the
		// old schema.
		for len(bt.open) > 0 {
			if err := bt.flush(ctx, bt.open[0]); err != nil {
				return err
			}
		}
		bt.schema = schemaWith(bt.prom.cols)
		names := make([]string, len(bt.prom.cols))
		for i, c := range bt.prom.cols {
			names[i] = c.name
		}
		bt.log.Debug("transform: attributes promoted to columns", "stream", bt.stream, "partition", bt.part, "columns", names)
	}
	now := bt.now()
	// cur is the open batch of the hour [curLo, curHi) (Unix ns) the last
	// record went to: a push's records mostly share an hour, and finding
	// the batch for each (fileOf, openFor) took a twentieth of the
	// server's CPU on the records path. Within one call, now is fixed,
	// so an hour's records all go to one batch while it stays open.
	var (
		cur          *openBatch
		curLo, curHi int64
	)
	for i := range b.Records {
		r := &b.Records[i]
		Normalize(r, now)
		bt.prom.observe(r)
		ob := cur
		if ob == nil || r.Timestamp < curLo || r.Timestamp >= curHi {
			var err error
			if ob, err = bt.openFor(ctx, bt.fileOf(r.Timestamp, now), now); err != nil {
				return err
			}
			// The hour's bounds, unless they do not fit in int64
			// nanoseconds (timestamps near the ends of the range).
			cur = nil
			if h := hourOf(r.Timestamp); time.Unix(0, h.UnixNano()).Equal(h) && h.UnixNano() <= math.MaxInt64-int64(time.Hour) {
				cur, curLo, curHi = ob, h.UnixNano(), h.UnixNano()+int64(time.Hour)
			}
		}
		if off := b.Offset + int64(i); ob.rows == 0 || off < ob.firstOf {
			ob.firstOf = off
		}
		ob.b.append(r, b.Partition, b.Offset+int64(i))
		ob.built++
		if len(ob.b.extra) > 0 {
			bt.conflicts += int64(appendPromoted(ob.b.extra, ob.b.cols, r))
		}
		ob.rows++
		ob.bytes += r.Size()
		if ob.rows >= bt.cfg.MaxRows || ob.bytes >= bt.cfg.MaxBytes {
			cur = nil
			if err := bt.flush(ctx, ob); err != nil {
				return err
			}
		}
	}
	return nil
}

// Tick flushes batches older than MaxAge and retries failed writes.
func (bt *Batcher) Tick(ctx context.Context, now time.Time) error {
	if err := bt.retryPending(ctx, len(bt.pending)); err != nil {
		return err
	}
	for len(bt.open) > 0 && now.Sub(bt.open[0].first) >= bt.cfg.MaxAge {
		if err := bt.flush(ctx, bt.open[0]); err != nil {
			return err
		}
	}
	return nil
}

// Flush hands every batch it holds to the Writer now, whatever its age
// (buffer.Flusher): readiness after a restart uses it so that recovered
// records become visible without waiting for MaxAge. A write that fails
// stays pending, to be retried by Tick, and Flush reports it.
func (bt *Batcher) Flush(ctx context.Context) error {
	for len(bt.open) > 0 {
		if err := bt.flush(ctx, bt.open[0]); err != nil {
			return err
		}
	}
	if err := bt.retryPending(ctx, len(bt.pending)); err != nil {
		return err
	}
	if n := len(bt.pending); n > 0 {
		return fmt.Errorf("transform: stream %s partition %d: %d batches waiting for the sink", bt.stream, bt.part, n)
	}
	return nil
}

// Close flushes every batch and retries failed writes until they succeed
// or ctx is done. Records not written by then are reported in the error.
func (bt *Batcher) Close(ctx context.Context) error {
	for len(bt.open) > 0 {
		if err := bt.flush(ctx, bt.open[0]); err != nil {
			break
		}
	}
	err := bt.retryPending(ctx, 0)
	if err == nil {
		return nil
	}
	lost := 0
	for _, p := range bt.pending {
		lost += p.rows
		releaseAll(p.recs)
	}
	for _, ob := range bt.open {
		lost += ob.rows
		ob.b.release()
		for _, p := range ob.parts {
			p.Release()
		}
	}
	bt.pending, bt.open = nil, nil
	return fmt.Errorf("transform: stream %s partition %d: %d records not written: %w", bt.stream, bt.part, lost, err)
}

// OldestUnwritten returns the lowest offset among the records the Batcher
// holds that the Writer has not taken yet; ok is false when it holds none.
func (bt *Batcher) OldestUnwritten() (offset int64, ok bool) {
	for _, ob := range bt.open {
		if ob.rows > 0 && (!ok || ob.firstOf < offset) {
			offset, ok = ob.firstOf, true
		}
	}
	for _, p := range bt.pending {
		if !ok || p.firstOf < offset {
			offset, ok = p.firstOf, true
		}
	}
	return offset, ok
}

// UnpublishedReporter is implemented by Writers that publish later than
// they are written to, such as *sink.Lake: OldestUnpublished returns the
// lowest offset of a stream partition they hold unpublished.
type UnpublishedReporter interface {
	OldestUnpublished(tenant, stream string, part int32) (offset int64, ok bool)
}

// Oldest returns the lowest offset of the partition's records that are not
// yet in a published file: held by the Batcher or, if the Writer is an
// UnpublishedReporter, by the Writer. ok is false when every record the
// Batcher consumed is published. It is the buffer's commit watermark.
func (bt *Batcher) Oldest() (offset int64, ok bool) {
	offset, ok = bt.OldestUnwritten()
	if r, isReporter := bt.w.(UnpublishedReporter); isReporter {
		if o, has := r.OldestUnpublished(bt.tenant, bt.stream, bt.part); has && (!ok || o < offset) {
			offset, ok = o, true
		}
	}
	return offset, ok
}

// FilePartitioner is implemented by Writers that choose the file a row
// goes to by more than its hour, such as *sink.Lake (day files for the
// rows of hours long past): the Batcher builds one batch per partition
// FilePartition returns, so that a backfill's rows of one date share
// batches instead of making one per hour. It must be cheap (it is called
// per record) and safe for concurrent use.
type FilePartitioner interface {
	FilePartition(p sink.Partition, now time.Time) sink.Partition
}

// fileOf returns the partition of the batch a record with timestamp ts
// (Unix nanoseconds) goes to; only Hour and Day are set.
func (bt *Batcher) fileOf(ts int64, now time.Time) sink.Partition {
	p := sink.Partition{Hour: hourOf(ts)}
	if fp, ok := bt.w.(FilePartitioner); ok {
		p = fp.FilePartition(p, now)
	}
	return p
}

func (bt *Batcher) openFor(ctx context.Context, fp sink.Partition, now time.Time) (*openBatch, error) {
	for _, ob := range bt.open {
		if ob.day == fp.Day && ob.hour.Equal(fp.Hour) {
			return ob, nil
		}
	}
	if len(bt.open) >= bt.cfg.MaxOpen {
		if err := bt.flush(ctx, bt.open[0]); err != nil {
			return nil, err
		}
	}
	ob := &openBatch{hour: fp.Hour, day: fp.Day, first: now, b: newBuilder(bt.mem, bt.schema, bt.prom.cols)}
	// A stream whose previous batch was finished within MaxAge and was
	// the only one open is flowing steadily into one file: its next batch
	// will likely be as large, so its builders take that room at once
	// rather than doubling (and copying) their way up to it. Batches of a
	// backfill, many open at a time, reserve nothing.
	if len(bt.open) == 0 && bt.hint.rows > 0 && now.Sub(bt.hint.at) <= bt.cfg.MaxAge {
		ob.b.reserve(bt.hint)
	}
	bt.open = append(bt.open, ob)
	return ob, nil
}

// noteSize records the size of ob, about to be finished, as the hint for
// the next batch if it was built from records alone and was the only
// open batch; otherwise it clears the hint.
func (bt *Batcher) noteSize(ob *openBatch, now time.Time) {
	if len(bt.open) != 1 || bt.open[0] != ob || ob.built != ob.rows || len(ob.parts) > 0 {
		bt.hint = sizeHint{}
		return
	}
	bt.hint = ob.b.sizes()
	bt.hint.at = now
}

// flush finishes ob, removes it from the open set and writes it. A failed
// write keeps the batch for retry, so flush only fails when the pending
// set is full and ctx ends while waiting for room.
func (bt *Batcher) flush(ctx context.Context, ob *openBatch) error {
	bt.noteSize(ob, bt.now())
	for i, o := range bt.open {
		if o == ob {
			bt.open = append(bt.open[:i], bt.open[i+1:]...)
			break
		}
	}
	rows := ob.rows
	recs := bt.finishOpen(ob)
	p := sink.Partition{Tenant: bt.tenant, Stream: bt.stream, Part: bt.part, Hour: ob.hour, Day: ob.day}
	bt.pending = append(bt.pending, pendingBatch{p: p, recs: recs, rows: rows, firstOf: ob.firstOf})
	return bt.retryPending(ctx, bt.cfg.MaxPending-1)
}

// retryPending writes the pending batches in order, retrying with backoff
// until at most maxLeft remain or ctx ends.
func (bt *Batcher) retryPending(ctx context.Context, maxLeft int) error {
	backoff := 10 * time.Millisecond
	for {
		for len(bt.pending) > 0 {
			p := bt.pending[0]
			if err := bt.w.Write(ctx, p.p, p.recs...); err != nil {
				bt.log.Warn("write batch failed; will retry", "stream", bt.stream, "partition", bt.part, "rows", p.rows, "err", err)
				break
			}
			releaseAll(p.recs)
			bt.pending[0] = pendingBatch{}
			bt.pending = bt.pending[1:]
		}
		if len(bt.pending) <= maxLeft {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("transform: %d batches waiting for the sink: %w", len(bt.pending), context.Cause(ctx))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func hourOf(ns int64) time.Time {
	return time.Unix(0, ns).UTC().Truncate(time.Hour)
}

// Normalize fills in what a record may leave out: a zero observed time
// becomes now, a zero timestamp becomes the observed time, and severity
// text and number are derived from each other when one is missing.
func Normalize(r *record.Record, now time.Time) {
	if r.ObservedTimestamp == 0 {
		r.ObservedTimestamp = now.UnixNano()
	}
	if r.Timestamp == 0 {
		r.Timestamp = r.ObservedTimestamp
	}
	switch {
	case r.SeverityNumber == 0 && r.SeverityText != "":
		r.SeverityNumber = record.ParseSeverity(r.SeverityText)
	case r.SeverityText == "" && r.SeverityNumber != 0:
		r.SeverityText = record.SeverityText(r.SeverityNumber)
	}
}

// builder appends records to the column builders of Schema.
type builder struct {
	rb       *array.RecordBuilder
	ts       *array.TimestampBuilder
	observed *array.TimestampBuilder
	sevNum   *array.Int32Builder
	sevText  *array.StringBuilder
	body     *array.StringBuilder
	attrs    *array.MapBuilder
	res      *array.MapBuilder
	service  *array.StringBuilder
	traceID  *array.StringBuilder
	spanID   *array.StringBuilder
	flags    *array.Uint32Builder
	part     *array.Int32Builder
	offset   *array.Int64Builder
	hexBuf   [32]byte
	extra    []array.Builder // promoted columns, in cols order
	cols     []promotedCol
}

// newBuilder returns a builder of batches of sc: the log schema, and
// after it the columns of cols.
func newBuilder(mem memory.Allocator, sc *arrow.Schema, cols []promotedCol) *builder {
	rb := array.NewRecordBuilder(mem, sc)
	var extra []array.Builder
	if len(cols) > 0 {
		extra = rb.Fields()[len(schema.Fields()):]
		cols = cols[:len(extra)]
	}
	return &builder{
		extra:    extra,
		cols:     cols,
		rb:       rb,
		ts:       rb.Field(idxTimestamp).(*array.TimestampBuilder),
		observed: rb.Field(idxObservedTimestamp).(*array.TimestampBuilder),
		sevNum:   rb.Field(idxSeverityNumber).(*array.Int32Builder),
		sevText:  rb.Field(idxSeverityText).(*array.StringBuilder),
		body:     rb.Field(idxBody).(*array.StringBuilder),
		attrs:    rb.Field(idxAttributes).(*array.MapBuilder),
		res:      rb.Field(idxResource).(*array.MapBuilder),
		service:  rb.Field(idxServiceName).(*array.StringBuilder),
		traceID:  rb.Field(idxTraceID).(*array.StringBuilder),
		spanID:   rb.Field(idxSpanID).(*array.StringBuilder),
		flags:    rb.Field(idxFlags).(*array.Uint32Builder),
		part:     rb.Field(idxPartition).(*array.Int32Builder),
		offset:   rb.Field(idxOffset).(*array.Int64Builder),
	}
}

func (b *builder) append(r *record.Record, part int32, offset int64) {
	b.ts.Append(arrow.Timestamp(r.Timestamp))
	b.observed.Append(arrow.Timestamp(r.ObservedTimestamp))
	b.sevNum.Append(r.SeverityNumber)
	b.sevText.Append(r.SeverityText)
	b.body.Append(r.Body)
	appendMap(b.attrs, r.Attributes)
	appendMap(b.res, r.Resource)
	b.service.Append(r.ServiceName())
	if r.TraceID == ([16]byte{}) {
		b.traceID.AppendNull()
	} else {
		hex.Encode(b.hexBuf[:32], r.TraceID[:])
		b.traceID.BinaryBuilder.Append(b.hexBuf[:32])
	}
	if r.SpanID == ([8]byte{}) {
		b.spanID.AppendNull()
	} else {
		hex.Encode(b.hexBuf[:16], r.SpanID[:])
		b.spanID.BinaryBuilder.Append(b.hexBuf[:16])
	}
	b.flags.Append(r.Flags)
	b.part.Append(part)
	b.offset.Append(offset)
}

func appendMap(mb *array.MapBuilder, kvs []record.KV) {
	mb.Append(true)
	keys := mb.KeyBuilder().(*array.StringBuilder)
	items := mb.ItemBuilder().(*array.StringBuilder)
	for _, kv := range kvs {
		keys.Append(kv.Key)
		items.Append(kv.Value)
	}
}

// sizeHint is what one batch's builder held: rows, the pairs of its two
// maps and the value bytes of its string columns.
type sizeHint struct {
	rows, attrs, res int
	// Value bytes of severity_text, body, service_name, trace_id,
	// span_id, then the attribute and resource keys and values.
	data [9]int
	at   time.Time // when the batch was finished
}

// stringCols returns b's string builders in sizeHint.data's order.
func (b *builder) stringCols() [9]*array.StringBuilder {
	return [9]*array.StringBuilder{b.sevText, b.body, b.service, b.traceID, b.spanID,
		b.attrs.KeyBuilder().(*array.StringBuilder), b.attrs.ItemBuilder().(*array.StringBuilder),
		b.res.KeyBuilder().(*array.StringBuilder), b.res.ItemBuilder().(*array.StringBuilder)}
}

// sizes returns what b holds now.
func (b *builder) sizes() sizeHint {
	h := sizeHint{rows: b.ts.Len(), attrs: b.attrs.KeyBuilder().Len(), res: b.res.KeyBuilder().Len()}
	for i, sb := range b.stringCols() {
		h.data[i] = sb.DataLen()
	}
	return h
}

// reserve makes room in b for a batch of h's size: one allocation per
// buffer instead of a doubling series, each copying the last.
func (b *builder) reserve(h sizeHint) {
	b.rb.Reserve(h.rows) // every column's rows, maps' offsets
	cols := b.stringCols()
	cols[5].Reserve(h.attrs)
	cols[6].Reserve(h.attrs)
	cols[7].Reserve(h.res)
	cols[8].Reserve(h.res)
	for i, sb := range cols {
		sb.ReserveData(h.data[i])
	}
}

func (b *builder) finish() arrow.RecordBatch { return b.rb.NewRecordBatch() }

func (b *builder) release() { b.rb.Release() }

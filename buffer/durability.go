package buffer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/wal"
)

// Level is how far a pushed batch has got when Push returns.
type Level int8

// Acknowledgement levels, weakest first.
const (
	// Accepted: queued in the ring and handed to the write-ahead log (if
	// any), not fsynced. A crash may lose it.
	Accepted Level = iota + 1
	// Durable: in the write-ahead log and fsynced (per Config.WAL's sync
	// policy). It survives a crash: recovery replays it.
	Durable
	// Committed: in a published Parquet file.
	Committed
)

func (l Level) String() string {
	switch l {
	case Accepted:
		return "ACCEPTED"
	case Durable:
		return "DURABLE"
	case Committed:
		return "COMMITTED"
	}
	return "Level(" + strconv.Itoa(int(l)) + ")"
}

// Errors of the acknowledgement levels.
var (
	// ErrNoWAL means Durable was asked of a buffer without a write-ahead log.
	ErrNoWAL = errors.New("durable acknowledgements need the write-ahead log")
	// ErrUnconfirmed means the batch was accepted (and will not be lost by
	// Push failing) but the asked level was not reached before ctx was
	// done or the buffer shut down. A producer that retries may duplicate
	// it.
	ErrUnconfirmed = errors.New("batch accepted but its acknowledgement level was not confirmed")
)

// Committer is implemented by consumers that hand records on to storage
// that publishes later (arrowbatch.Batcher). Oldest returns the lowest
// offset of the records the consumer took that are not yet published; ok
// is false when all are. It is called from the partition's goroutine.
// Without it, a record counts as committed once Consume returns.
type Committer interface {
	Oldest() (offset int64, ok bool)
}

// segMark records the end offset of the last batch appended to a segment.
type segMark struct {
	seg uint64
	end int64
}

// walDir returns the directory of a partition's write-ahead log.
func walDir(root string, k Key) string {
	return filepath.Join(root, "tenant="+k.Tenant, "stream="+k.Stream, "part="+strconv.Itoa(int(k.Partition)))
}

// appendLocked assigns the sub-batches of group, all of this partition,
// consecutive offsets, writes entry (their records, in group order) to
// the partition's log as one record, and queues each sub-batch on its
// lane. p.mu must be held and a slot of each lane reserved.
func (p *partition) appendLocked(group []sub, entry *record.Batch) (wal.Pos, error) {
	entry.Partition = p.key.Partition
	entry.Offset = p.next
	var pos wal.Pos
	if p.wal != nil {
		p.enc = record.AppendBatch(p.enc[:0], entry)
		var err error
		if pos, err = p.wal.Append(p.enc); err != nil {
			return pos, fmt.Errorf("buffer: write-ahead log of %s/%s partition %d: %w", p.key.Tenant, p.key.Stream, p.key.Partition, err)
		}
		end := entry.Offset + int64(entry.Len())
		if n := len(p.marks); n > 0 && p.marks[n-1].seg == pos.Segment {
			p.marks[n-1].end = end
		} else {
			p.marks = append(p.marks, segMark{seg: pos.Segment, end: end})
		}
		p.lastPos = pos
	}
	for k := range group {
		sb := &group[k]
		sb.batch.Partition = p.key.Partition
		sb.batch.Offset = p.next
		p.next += int64(sb.count)
		sb.end = p.next
		if !p.lanes[laneIndex(sb.prio)].ring.TryPush(sb.batch) {
			panic("buffer: ring full despite a reserved slot")
		}
	}
	return pos, nil
}

// waitCommitted waits until every record below end is published.
func (p *partition) waitCommitted(ctx context.Context, end int64) error {
	for {
		wake := p.commits.arm()
		if p.committed.Load() >= end {
			return nil
		}
		if p.stopped.Load() {
			return fmt.Errorf("%w: the buffer shut down before the batch was committed", ErrUnconfirmed)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%w: not committed before the push context was done: %w", ErrUnconfirmed, context.Cause(ctx))
		}
	}
}

// advance recomputes the partition's commit watermark after a delivery or
// a tick, wakes COMMITTED waiters and hands the log segments below it to
// the partition's trimmer. It runs on the partition's goroutine.
func (w *worker) advance() {
	p := w.p
	// Every offset below p.next is delivered, queued on a lane (each lane
	// in offset order, so its head is its lowest) or, during recovery, at
	// or above floor. Taking p.mu stops new appends meanwhile; only this
	// goroutine pops.
	p.mu.Lock()
	wm := p.next
	for _, l := range p.lanes {
		if head, ok := l.ring.Peek(); ok {
			wm = min(wm, head.Offset)
		}
	}
	p.mu.Unlock()
	wm = min(wm, p.floor.Load())
	if c, ok := p.cons.(Committer); ok {
		if o, has := c.Oldest(); has && o < wm {
			wm = o
		}
	}
	if wm > p.committed.Load() {
		p.committed.Store(wm)
		p.commits.broadcast()
		if w.trim != nil {
			p.mu.Lock()
			cut := 0
			for cut < len(p.marks)-1 && p.marks[cut].end <= wm {
				cut++
			}
			var seg uint64
			if cut > 0 {
				seg = p.marks[cut].seg
				p.marks = append(p.marks[:0], p.marks[cut:]...)
			}
			p.mu.Unlock()
			if seg > 0 {
				w.trim.request(seg)
			}
		}
	}
}

// openWAL opens the partition's log and decodes what it holds that no
// published file has, for recovery. It sets p.next past the log's last
// record. Damage in the log (wal.Options.SkipDamage, and records that do
// not decode) is skipped, reported and counted, and what can be decoded
// of it is kept for the dead-letter stream (see resolveDamage).
func (b *Buffer) openWAL(p *partition) ([]*record.Batch, error) {
	opts := b.cfg.WAL
	opts.SkipDamage = true
	l, err := wal.Open(walDir(b.cfg.WALDir, p.key), opts, b.log)
	if err != nil {
		return nil, fmt.Errorf("buffer: open write-ahead log: %w", err)
	}
	p.wal = l
	var (
		batches   []*record.Batch
		published func(int64) bool
		run       *damageRun // damage since the last intact record
		prevEnd   = int64(-1)
	)
	// publishedFrom asks Deps.Published once, from the first offset
	// recovery needs.
	publishedFrom := func(from int64) (func(int64) bool, error) {
		if published == nil {
			published = func(int64) bool { return false }
			if b.published != nil {
				var err error
				if published, err = b.published(b.runCtx, p.key, from); err != nil {
					published = nil
					return nil, fmt.Errorf("published offsets: %w", err)
				}
			}
		}
		return published, nil
	}
	addDamage := func(d wal.Damage, cause error, salvaged *record.Batch) {
		if run == nil {
			run = &damageRun{}
		}
		run.spans = append(run.spans, d)
		run.causes = append(run.causes, cause)
		if salvaged != nil {
			run.salvaged = append(run.salvaged, salvaged)
			p.next = max(p.next, salvaged.Offset+int64(salvaged.Len()))
		} else {
			run.undecodable = true
		}
	}
	segPath := func(seg uint64) string {
		for _, s := range l.Segments() {
			if s.Index == seg {
				return s.Path
			}
		}
		return ""
	}
	err = l.Scan(wal.Pos{}, func(pos wal.Pos, payload []byte) error {
		batch, err := record.DecodeBatch(payload)
		if err == nil && !ofPartition(batch, p.key) {
			batch.Release()
			err = fmt.Errorf("%w: a batch of %s/%s partition %d at offset %d in the log of this partition",
				record.ErrInvalidBatch, batch.Tenant, batch.Stream, batch.Partition, batch.Offset)
		}
		if err != nil {
			// A record whose checksum matched but that does not decode:
			// damage the checksum did not catch.
			start := pos.Offset - int64(len(payload)) - 8
			addDamage(wal.Damage{Segment: pos.Segment, Path: segPath(pos.Segment), Offset: start, Length: pos.Offset - start, Err: err}, err, nil)
			return nil
		}
		if _, err := publishedFrom(batch.Offset); err != nil {
			return err
		}
		if run != nil {
			if err := b.resolveDamage(p, run, prevEnd, batch.Offset, publishedFrom); err != nil {
				return err
			}
			run = nil
		}
		end := batch.Offset + int64(batch.Len())
		prevEnd = end
		if n := len(p.marks); n > 0 && p.marks[n-1].seg == pos.Segment {
			p.marks[n-1].end = max(p.marks[n-1].end, end)
		} else {
			p.marks = append(p.marks, segMark{seg: pos.Segment, end: end})
		}
		p.next = max(p.next, end)
		p.lastPos = pos
		if batch.ProducerID != "" {
			p.prods.observe(batch.ProducerID, batch.Sequence, time.Now())
		}
		return splitRecovered(&batches, batch, published, int(b.maxRecordsNormal), b.maxBytesNormal)
	}, func(d wal.Damage, raw []byte) error {
		addDamage(d, d.Err, salvage(p.key, raw))
		return nil
	})
	if err == nil && run != nil {
		err = b.resolveDamage(p, run, prevEnd, -1, publishedFrom)
	}
	if err != nil {
		l.Close()
		p.wal = nil
		return nil, fmt.Errorf("buffer: replay write-ahead log of %s/%s partition %d: %w", p.key.Tenant, p.key.Stream, p.key.Partition, err)
	}
	return batches, nil
}

// splitRecovered appends to out the runs of consecutive offsets of batch
// that published does not hold, each as a batch of its own that keeps the
// offsets the records were logged with. Records of both classes stay
// together: replay delivers in offset order (see enqueueRecovered). A run
// is cut where it would exceed maxRecords or maxBytes, so that each fits
// in the normal share of the buffer; a single record larger than
// maxBytes is an error, since it could never be queued.
//
// A columnar batch is cut into slices of its columns (and released).
func splitRecovered(out *[]*record.Batch, batch *record.Batch, published func(int64) bool, maxRecords int, maxBytes int64) error {
	defer batch.Release()
	start, size := -1, int64(0)
	flush := func(end int) {
		if start < 0 {
			return
		}
		var nb *record.Batch
		if batch.Cols != nil {
			nb = record.NewColumnarBatch(batch.Tenant, batch.Stream, batch.Cols.NewSlice(int64(start), int64(end)))
		} else {
			recs := append([]record.Record(nil), batch.Records[start:end]...)
			nb = record.NewBatch(batch.Tenant, batch.Stream, recs)
		}
		nb.Partition = batch.Partition
		nb.Offset = batch.Offset + int64(start)
		*out = append(*out, nb)
		start, size = -1, 0
	}
	k := keysOf(batch)
	for i := range batch.Len() {
		if published(batch.Offset + int64(i)) {
			flush(i)
			continue
		}
		n := int64(k.size(i))
		if n > maxBytes {
			return fmt.Errorf("record at offset %d has %d bytes, more than the %d bytes of the buffer's normal share (max_bytes less priority_share) it must be replayed into",
				batch.Offset+int64(i), n, maxBytes)
		}
		if start >= 0 && (i-start >= maxRecords || size+n > maxBytes) {
			flush(i)
		}
		if start < 0 {
			start = i
		}
		size += n
	}
	flush(batch.Len())
	return nil
}

// recoverStreams recreates every stream that has a write-ahead log under
// Config.WALDir and queues the records no published file holds. It runs
// in New, before any Push.
func (b *Buffer) recoverStreams() error {
	tenants, err := os.ReadDir(b.cfg.WALDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("buffer: recover: %w", err)
	}
	for _, t := range tenants {
		tenant, ok := strings.CutPrefix(t.Name(), "tenant=")
		if !ok || !t.IsDir() {
			continue
		}
		streams, err := os.ReadDir(filepath.Join(b.cfg.WALDir, t.Name()))
		if err != nil {
			return fmt.Errorf("buffer: recover: %w", err)
		}
		for _, s := range streams {
			name, ok := strings.CutPrefix(s.Name(), "stream=")
			if !ok || !s.IsDir() {
				continue
			}
			parts, err := os.ReadDir(filepath.Join(b.cfg.WALDir, t.Name(), s.Name()))
			if err != nil {
				return fmt.Errorf("buffer: recover: %w", err)
			}
			for _, pd := range parts {
				n, ok := strings.CutPrefix(pd.Name(), "part=")
				if i, err := strconv.Atoi(n); ok && err == nil && i >= b.cfg.Partitions {
					return fmt.Errorf("buffer: recover: %s/%s has a write-ahead log for partition %d but the buffer has %d partitions per stream; restore the partition count", tenant, name, i, b.cfg.Partitions)
				}
			}
			k := streamKey{tenant, name}
			st, err := b.createStream(k, true)
			if err != nil {
				// One stream's log must not keep the others from
				// starting: leave it as it is for an operator, and let
				// pushes to the stream fail with this error.
				b.recoveryFailures.Add(1)
				b.log.Error("buffer: could not recover a stream's write-ahead log; the stream is unavailable and its log left as it is",
					"tenant", tenant, "stream", name, "err", err)
				continue
			}
			b.announce(k, st)
		}
	}
	return nil
}

// enqueueRecovered queues recovered batches on the partition's normal
// lane, in offset order, waiting for room as the consumer drains. The
// consumer takes them in that order, ahead of everything pushed later
// (partition.replaying), so that replay delivers offsets in the order they
// were logged. Until it is done, the partition's commit watermark stays
// below the first batch not yet queued.
func (b *Buffer) enqueueRecovered(s *stream, p *partition, batches []*record.Batch) error {
	defer p.floor.Store(math.MaxInt64)
	for _, batch := range batches {
		p.floor.Store(batch.Offset)
		subs := []sub{{part: p.key.Partition, batch: batch, count: batch.Len(), bytes: batch.Bytes}}
		n := int64(batch.Len())
		if !b.tryReserve(s, subs, n, int64(batch.Bytes)) {
			if err := b.waitReserve(b.runCtx, s, subs, n, int64(batch.Bytes)); err != nil {
				return err
			}
		}
		p.replaying.Add(1)
		if !p.lanes[laneIndex(false)].ring.TryPush(batch) {
			panic("buffer: ring full despite a reserved slot")
		}
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
	return nil
}

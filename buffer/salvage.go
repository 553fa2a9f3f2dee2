package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/wal"
)

// salvageStage is the dead-letter stage (logschema.AttrDeadStage) of
// records salvaged from a damaged log record.
const salvageStage = "wal"

// damageRun is what recovery found between two intact log records of a
// partition: one or more damaged spans, and what could be decoded of them.
type damageRun struct {
	spans    []wal.Damage
	causes   []error
	salvaged []*record.Batch // decoded, in log order; may be empty
	// undecodable is set when some span held nothing that decodes, so
	// that which producer's batch it was is unknown.
	undecodable bool
}

// salvage tries to decode the first frame of a damaged span: raw starts
// at the frame's length field. If the length is intact the payload is the
// length's worth of bytes after the frame header, otherwise the rest of
// the span. It returns nil if nothing decodes as a batch of partition k.
func salvage(k Key, raw []byte) *record.Batch {
	const frameHeader = 8
	if len(raw) < frameHeader {
		return nil
	}
	body := raw[frameHeader:]
	if n := int(binary.LittleEndian.Uint32(raw)); n <= len(body) {
		if b, err := record.DecodeBatch(body[:n]); err == nil && ofPartition(b, k) {
			b.Materialize()
			return b
		}
	}
	if b, err := record.DecodeBatch(body); err == nil && ofPartition(b, k) {
		b.Materialize()
		return b
	}
	return nil
}

func ofPartition(b *record.Batch, k Key) bool {
	return b.Tenant == k.Tenant && b.Stream == k.Stream && b.Partition == k.Partition && b.Len() > 0 && b.Offset >= 0
}

// deadLetters returns the records of b whose offsets published does not
// hold, as dead letters of stage salvageStage: made storable (invalid
// UTF-8 replaced, a severity outside 0..24 and negative timestamps moved
// to attributes), since the bytes they were decoded from are damaged.
func deadLetters(b *record.Batch, published func(int64) bool, cause string, at time.Time) []record.Record {
	when := at.UTC().Format(time.RFC3339Nano)
	var out []record.Record
	for i := range b.Records {
		if published(b.Offset + int64(i)) {
			continue
		}
		r := b.Records[i]
		d := r
		d.Body = strings.ToValidUTF8(r.Body, "\uFFFD")
		d.SeverityText = strings.ToValidUTF8(r.SeverityText, "\uFFFD")
		attrs := make([]record.KV, 0, len(r.Attributes)+7)
		for _, kv := range r.Attributes {
			attrs = append(attrs, record.KV{Key: strings.ToValidUTF8(kv.Key, "\uFFFD"), Value: strings.ToValidUTF8(kv.Value, "\uFFFD")})
		}
		if len(r.Resource) > 0 {
			d.Resource = make([]record.KV, 0, len(r.Resource))
			for _, kv := range r.Resource {
				d.Resource = append(d.Resource, record.KV{Key: strings.ToValidUTF8(kv.Key, "\uFFFD"), Value: strings.ToValidUTF8(kv.Value, "\uFFFD")})
			}
		}
		if d.SeverityNumber < 0 || d.SeverityNumber > 24 {
			attrs = append(attrs, record.KV{Key: logschema.AttrDeadPrefix + "severity_number", Value: strconv.Itoa(int(d.SeverityNumber))})
			d.SeverityNumber = 0
		}
		if d.Timestamp < 0 {
			attrs = append(attrs, record.KV{Key: logschema.AttrDeadPrefix + "timestamp", Value: strconv.FormatInt(d.Timestamp, 10)})
			d.Timestamp = 0
		}
		if d.ObservedTimestamp < 0 {
			d.ObservedTimestamp = 0
		}
		d.Attributes = append(attrs,
			record.KV{Key: logschema.AttrDeadStream, Value: b.Stream},
			record.KV{Key: logschema.AttrDeadStage, Value: salvageStage},
			record.KV{Key: logschema.AttrDeadError, Value: strings.ToValidUTF8(cause, "\uFFFD")},
			record.KV{Key: logschema.AttrDeadTime, Value: when},
		)
		out = append(out, d)
	}
	return out
}

// salvageProducer is the idempotent producer that writes the dead letters
// salvaged from a partition's log. Its sequence is the first offset of the
// damaged batch plus one, so that finding the same damage again at the
// next start (the segment is kept until it is published past) writes
// nothing twice.
func salvageProducer(k Key) string {
	return "weir.wal-salvage/" + k.Stream + "/" + strconv.Itoa(int(k.Partition))
}

// pushSalvaged writes the dead letters recovery salvaged to their
// tenants' dead-letter streams, durably. It runs at the end of New, once
// every stream is recovered. A batch that cannot be written is logged and
// counted as lost.
func (b *Buffer) pushSalvaged() {
	for _, sb := range b.salvaged {
		n := int64(len(sb.Records))
		err := b.Push(b.runCtx, sb, Durable)
		if err != nil && !errors.Is(err, ErrDuplicate) {
			b.walLost.Add(n)
			b.log.Error("buffer: could not dead-letter records salvaged from a damaged write-ahead log; they are lost",
				"tenant", sb.Tenant, "records", n, "err", err)
			continue
		}
		if err == nil {
			b.walSalvaged.Add(n)
		}
	}
	b.salvaged = nil
}

// resolveDamage accounts for the damage run r of partition p, found
// between the intact records ending at prevEnd and starting at nextStart
// (-1 where there is no such record): it logs it at error level, counts
// it, and queues what was salvaged for the dead-letter stream.
func (b *Buffer) resolveDamage(p *partition, r *damageRun, prevEnd, nextStart int64, published func(from int64) (func(int64) bool, error)) error {
	now := time.Now()
	lo := prevEnd
	for _, sb := range r.salvaged {
		if lo < 0 || sb.Offset < lo {
			lo = sb.Offset
		}
	}
	var pub func(int64) bool
	if lo >= 0 {
		var err error
		if pub, err = published(lo); err != nil {
			return err
		}
	}
	cause := errors.Join(r.causes...).Error()
	dead := 0
	for _, sb := range r.salvaged {
		recs := deadLetters(sb, pub, fmt.Sprintf("damaged write-ahead log record in segment %s at offset %d: %s", r.spans[0].Path, r.spans[0].Offset, cause), now)
		if len(recs) == 0 {
			continue
		}
		dead += len(recs)
		out := record.NewBatch(p.key.Tenant, logschema.DeadLetterStream, recs)
		out.ProducerID, out.Sequence, out.SequenceGaps = salvageProducer(p.key), uint64(sb.Offset)+1, true
		b.salvaged = append(b.salvaged, out)
	}
	// The records lost are the unpublished offsets between the intact
	// records around the damage, less those salvaged; without an intact
	// record on both sides (or a salvaged batch spanning the gap) their
	// number is unknown.
	lost := int64(-1)
	if prevEnd >= 0 && nextStart >= prevEnd {
		lost = 0
		for o := prevEnd; o < nextStart; o++ {
			if !pub(o) {
				lost++
			}
		}
		lost = max(0, lost-int64(dead))
	}
	b.walDamage.Add(int64(len(r.spans)))
	b.walLost.Add(max(0, lost))
	lostAttr := any(lost)
	if lost < 0 {
		lostAttr = "unknown"
	}
	d := r.spans[0]
	b.log.Error("buffer: write-ahead log damaged; skipped the damage and replaying every intact record after it",
		"tenant", p.key.Tenant, "stream", p.key.Stream, "partition", p.key.Partition,
		"segment", d.Path, "offset", d.Offset, "bytes", d.Length, "spans", len(r.spans),
		"after_offset", prevEnd, "before_offset", nextStart,
		"lost_records", lostAttr, "dead_lettered", dead, "cause", cause)
	if r.undecodable {
		// Some batch is gone without a trace of its producer: let every
		// producer of the stream skip sequence numbers once, so that the
		// one whose last batch it was is not refused for a gap.
		p.prods.allowGap()
	}
	for _, sb := range r.salvaged {
		if sb.ProducerID != "" {
			p.prods.observe(sb.ProducerID, sb.Sequence, now)
		}
	}
	return nil
}

package transform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// PipelineConfig configures a Pipeline.
type PipelineConfig struct {
	// Rules are the processors per stream; NewPipeline and Reload check
	// them.
	Rules Rules
	// Limits are checked on every record before and after its processors;
	// a record that fails goes to the dead-letter stream.
	Limits record.Limits
	// StateDir keeps the pattern miners' state across restarts; "" keeps
	// it in memory only.
	StateDir string
	// SaveInterval is how often the goroutine Start starts saves the
	// pattern miners' state, so that a crash loses at most that much of
	// what they learned; 0 means a minute.
	SaveInterval time.Duration
	// MaxMiners bounds the pattern miners (one per tenant, stream and
	// pattern step); records of further ones get no pattern.
	MaxMiners int
	// MaxAttributes, MaxKeyBytes and MaxValueBytes bound each record's
	// attributes after its processors (zero means 128, 256 and 32 KiB).
	// Attributes past the count, and those with longer keys, are dropped
	// and counted in the attribute "weir.attributes_dropped"; longer
	// values are cut at a character boundary and their keys listed in
	// "weir.truncated". Resource attributes are bounded the same way.
	MaxAttributes, MaxKeyBytes, MaxValueBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// Pipeline runs the processors of each stream over the records pushed to
// it, at ingest, before they are buffered. It is safe for concurrent use;
// Reload swaps the rules atomically, so a batch is processed wholly by the
// old rules or wholly by the new ones.
type Pipeline struct {
	cfg    PipelineConfig
	prog   atomic.Pointer[program]
	miners *minerSet
	pool   sync.Pool // *work

	lifeMu   sync.Mutex
	stopSave chan struct{} // closed by Shutdown; nil before Start
	saveDone chan struct{} // closed when the saver returns

	deadLetters atomic.Int64
	dropped     atomic.Int64
	routed      atomic.Int64
	failures    atomic.Int64 // failures ignored by on_error: keep
	limited     atomic.Int64 // records whose attributes were cut to the limits
}

// PipelineStats counts what processors did since start.
type PipelineStats struct {
	DeadLetters int64 // records sent to the dead-letter stream
	Dropped     int64 // records removed by filter, drop, sample or on_error: drop
	Routed      int64 // records sent to another stream
	Kept        int64 // step failures ignored with on_error: keep
	Limited     int64 // records whose attributes were cut to the limits
}

// NewPipeline checks cfg.Rules and returns a pipeline running them.
func NewPipeline(cfg PipelineConfig) (*Pipeline, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxMiners <= 0 {
		cfg.MaxMiners = 1024
	}
	if cfg.SaveInterval <= 0 {
		cfg.SaveInterval = time.Minute
	}
	if cfg.MaxAttributes <= 0 {
		cfg.MaxAttributes = 128
	}
	if cfg.MaxKeyBytes <= 0 {
		cfg.MaxKeyBytes = 256
	}
	if cfg.MaxValueBytes <= 0 {
		cfg.MaxValueBytes = 32 << 10
	}
	p := &Pipeline{cfg: cfg, miners: newMinerSet(cfg.StateDir, cfg.MaxMiners, cfg.Log)}
	p.pool.New = func() any { return newWork() }
	if err := p.Reload(cfg.Rules); err != nil {
		return nil, err
	}
	return p, nil
}

// Reload checks rules and, if they are valid, makes them the pipeline's
// from the next batch on. On error the running rules stay. Pattern miners
// whose step is unchanged keep what they learned.
func (p *Pipeline) Reload(rules Rules) error {
	prog, err := compile(rules, p)
	if err != nil {
		return err
	}
	p.prog.Store(prog)
	return nil
}

// Start starts the goroutine that saves the pattern miners' state every
// SaveInterval. ctx bounds start-up only; the goroutine runs until
// Shutdown. Without Start the state is saved by Shutdown only.
func (p *Pipeline) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.stopSave != nil {
		return errors.New("transform: Start called twice")
	}
	p.stopSave, p.saveDone = make(chan struct{}), make(chan struct{})
	go p.saver(p.stopSave, p.saveDone)
	return nil
}

func (p *Pipeline) saver(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(p.cfg.SaveInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := p.miners.save(); err != nil {
				p.cfg.Log.Warn("transform: save pattern miners", "err", err)
			}
		}
	}
}

// Shutdown stops the saver and saves the pattern miners' state. It is
// safe without Start and more than once; Process still works after it
// (records pushed during a drain get their patterns), but what the
// miners learn after the last Shutdown is not saved.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.lifeMu.Lock()
	stop, done := p.stopSave, p.saveDone
	if stop != nil {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}
	p.lifeMu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("transform: waiting for the pattern saver: %w", context.Cause(ctx))
		}
	}
	return p.miners.save()
}

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() PipelineStats {
	return PipelineStats{
		DeadLetters: p.deadLetters.Load(),
		Dropped:     p.dropped.Load(),
		Routed:      p.routed.Load(),
		Kept:        p.failures.Load(),
		Limited:     p.limited.Load(),
	}
}

// HasRules reports whether records of stream go through processors.
func (p *Pipeline) HasRules(stream string) bool { return p.prog.Load().chain(stream) != nil }

// Process validates b's records and runs its stream's processors over
// them. It returns the batches to push, appended to dst: b itself with the
// records that stay in its stream (unless none do), one batch per stream
// records were routed to, and one for logschema.DeadLetterStream. Records
// removed by filters or sampling are in none. Process takes ownership of
// b.
//
// Derived batches (routed, dead letters) of an idempotent producer's batch
// carry the producer id suffixed with "/" and b's stream, the same
// sequence, and SequenceGaps; so does b when its stream has processors,
// since they may leave a batch empty. A retried request thus maps to
// retried batches everywhere.
//
// A columnar batch (b.Cols) of a stream without processors whose rows are
// all valid and within the limits is returned as it is; any other becomes
// records first (record.Batch.Materialize).
//
// Records with an error in b.Rejects (they failed at the edge) go to the
// dead-letter stream with that error, at stage "validate", without
// running the processors; the batches returned carry no Rejects.
//
// A stream without processors whose every record fails validation yields
// no batches and the first record's error: rejecting such a request loses
// nothing and keeps the producer's sequence gapless.
func (p *Pipeline) Process(dst []*record.Batch, b *record.Batch) ([]*record.Batch, error) {
	rejects := b.Rejects
	b.Rejects = nil
	if rejects != nil && len(rejects) != len(b.Records) {
		return dst, fmt.Errorf("transform: batch has %d rejects for %d records", len(rejects), len(b.Records))
	}
	prog := p.prog.Load()
	ch := prog.chain(b.Stream)
	now := p.cfg.Now()
	if b.Cols != nil {
		// A columnar batch stays columnar when every row is valid and
		// within the attribute limits; otherwise its rows take the
		// record path, which dead-letters and cuts them row by row.
		if ch == nil && rejects == nil && record.ValidateColumns(b.Cols, now, p.cfg.Limits) == nil &&
			record.AttributesWithin(b.Cols, p.cfg.MaxAttributes, p.cfg.MaxKeyBytes, p.cfg.MaxValueBytes) {
			return append(dst, b), nil
		}
		b.Materialize()
	}
	if ch == nil {
		return p.validateOnly(dst, b, rejects, now)
	}
	w := p.pool.Get().(*work)
	defer p.pool.Put(w)
	w.reset(b.Tenant, b.Stream)
	kept := make([]record.Record, 0, len(b.Records))
	var dead []record.Record
	routes := map[string][]record.Record(nil)
	nowText := ""
	lo, hi := p.cfg.Limits.Window(now)
	deadOf := func(r *record.Record, stage string, err error) {
		if nowText == "" {
			nowText = now.UTC().Format(time.RFC3339Nano)
		}
		dead = append(dead, deadLetter(r, b.Stream, stage, err.Error(), nowText, lo, hi))
	}
	// The records' attribute slices are cut from one allocation, with
	// room for what the processors add.
	var slab []record.KV
	for i := range b.Records {
		orig := &b.Records[i]
		if rejects != nil && rejects[i] != nil {
			deadOf(orig, "validate", rejects[i])
			continue
		}
		if err := orig.Validate(i, now, p.cfg.Limits); err != nil {
			deadOf(orig, "validate", err)
			continue
		}
		// The record is transformed in place at the end of kept (which
		// never grows past its capacity, so the pointer stays good) and
		// taken off again if it does not stay in this stream.
		kept = append(kept, *orig)
		r := &kept[len(kept)-1]
		n := len(orig.Attributes) + attrHeadroom
		if len(slab) < n {
			slab = make([]record.KV, max(n, (len(b.Records)-i)*(n)))
		}
		r.Attributes = append(slab[:0:n], orig.Attributes...)
		slab = slab[n:]
		w.begin(r)
		fate, stage, err := ch.run(w, p)
		switch fate {
		case fateDead:
			kept = kept[:len(kept)-1]
			deadOf(orig, stage, err)
			continue
		case fateDrop:
			kept = kept[:len(kept)-1]
			p.dropped.Add(1)
			continue
		}
		// Processors keep text valid UTF-8 (what they extract is cut from
		// valid text at character boundaries, what they add comes from
		// the configuration), so only the ranges need a second look.
		if err := r.ValidateRanges(i, now, p.cfg.Limits); err != nil {
			kept = kept[:len(kept)-1]
			deadOf(orig, "validate", fmt.Errorf("after processors: %w", err))
			continue
		}
		p.limit(r)
		if fate == fateRoute {
			if routes == nil {
				routes = map[string][]record.Record{}
			}
			routes[w.to] = append(routes[w.to], *r)
			kept = kept[:len(kept)-1]
			p.routed.Add(1)
		}
	}
	p.deadLetters.Add(int64(len(dead)))
	compactAttributes(kept)
	if len(kept) > 0 {
		nb := record.NewBatch(b.Tenant, b.Stream, kept)
		nb.ProducerID, nb.Sequence, nb.SequenceGaps = b.ProducerID, b.Sequence, true
		dst = append(dst, nb)
	}
	for _, s := range sortedKeys(routes) {
		dst = append(dst, derived(b, s, routes[s]))
	}
	if len(dead) > 0 {
		dst = append(dst, derived(b, logschema.DeadLetterStream, dead))
	}
	return dst, nil
}

// validateOnly is Process for streams without processors; rejects are
// b's (see record.Batch.Rejects).
func (p *Pipeline) validateOnly(dst []*record.Batch, b *record.Batch, rejects []error, now time.Time) ([]*record.Batch, error) {
	var bad []int
	var errs []error
	for i := range b.Records {
		if rejects != nil && rejects[i] != nil {
			bad, errs = append(bad, i), append(errs, rejects[i])
			continue
		}
		if err := b.Records[i].Validate(i, now, p.cfg.Limits); err != nil {
			bad, errs = append(bad, i), append(errs, err)
		}
	}
	// The batch's size is summed again once if a record was cut, not
	// per cut record (quadratic) nor per record (the common case cuts
	// none).
	limited := false
	for i := range b.Records {
		limited = p.limit(&b.Records[i]) || limited
	}
	if limited {
		b.Bytes = record.NewBatch("", "", b.Records).Bytes
	}
	switch len(bad) {
	case 0:
		return append(dst, b), nil
	case len(b.Records):
		return dst, errs[0]
	}
	nowText := now.UTC().Format(time.RFC3339Nano)
	lo, hi := p.cfg.Limits.Window(now)
	dead := make([]record.Record, 0, len(bad))
	kept := make([]record.Record, 0, len(b.Records)-len(bad))
	for i := range b.Records {
		if len(bad) > 0 && bad[0] == i {
			dead = append(dead, deadLetter(&b.Records[i], b.Stream, "validate", errs[0].Error(), nowText, lo, hi))
			bad, errs = bad[1:], errs[1:]
			continue
		}
		kept = append(kept, b.Records[i])
	}
	p.deadLetters.Add(int64(len(dead)))
	d := derived(b, logschema.DeadLetterStream, dead)
	b.Records = kept
	b.Bytes = record.NewBatch("", "", kept).Bytes
	return append(dst, b, d), nil
}

// limit bounds r's attributes (see PipelineConfig.MaxAttributes) and
// reports whether it changed anything. r's attribute slices must be its
// own.
func (p *Pipeline) limit(r *record.Record) bool {
	a, dropA, cutA := p.limitKVs(r.Attributes)
	res, dropR, cutR := p.limitKVs(r.Resource)
	if dropA+dropR == 0 && len(cutA)+len(cutR) == 0 {
		return false
	}
	r.Attributes, r.Resource = a, res
	if dropped := dropA + dropR; dropped > 0 {
		r.Attributes = setKV(r.Attributes, "weir.attributes_dropped", strconv.Itoa(dropped))
	}
	if cut := append(cutA, cutR...); len(cut) > 0 {
		r.Attributes = setKV(r.Attributes, "weir.truncated", strings.Join(cut, ","))
	}
	p.limited.Add(1)
	return true
}

// limitKVs bounds kvs in place: it returns them, how many it dropped and
// the keys whose values it cut.
func (p *Pipeline) limitKVs(kvs []record.KV) (out []record.KV, dropped int, cut []string) {
	out = kvs[:0]
	for _, kv := range kvs {
		if len(out) >= p.cfg.MaxAttributes || len(kv.Key) > p.cfg.MaxKeyBytes {
			dropped++
			continue
		}
		if len(kv.Value) > p.cfg.MaxValueBytes {
			kv.Value = cutUTF8(kv.Value, p.cfg.MaxValueBytes)
			cut = append(cut, kv.Key)
		}
		out = append(out, kv)
	}
	return out, dropped, cut
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does
// not split a character.
func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// attrHeadroom is the room for attributes processors add to a record
// before its slice must grow.
const attrHeadroom = 8

// compactAttributes moves the records' attributes into one allocation of
// the exact size: the headroom left over would otherwise stay allocated,
// unaccounted, for as long as the records are buffered.
func compactAttributes(recs []record.Record) {
	total := 0
	for i := range recs {
		total += len(recs[i].Attributes)
	}
	slab := make([]record.KV, total)
	for i := range recs {
		n := copy(slab, recs[i].Attributes)
		recs[i].Attributes = slab[:n:n]
		slab = slab[n:]
	}
}

// derived returns a batch of records that came from b but go to stream.
func derived(b *record.Batch, stream string, recs []record.Record) *record.Batch {
	d := record.NewBatch(b.Tenant, stream, recs)
	if b.ProducerID != "" {
		d.ProducerID, d.Sequence, d.SequenceGaps = b.ProducerID+"/"+b.Stream, b.Sequence, true
	}
	return d
}

// DeadLetter returns the dead-letter record of r, which was pushed to
// stream and failed at stage with the error text at time at: r as it
// arrived, made storable (invalid UTF-8 replaced, a severity outside
// 0..24 and times outside lim's window at at moved to attributes), plus
// the AttrDead* attributes. A dead letter whose time was moved is filed
// under the time it reaches the sink, so that records sent with times
// spread over years cannot make the dead-letter stream a file per hour.
func DeadLetter(r *record.Record, stream, stage, errText string, at time.Time, lim record.Limits) record.Record {
	lo, hi := lim.Window(at)
	return deadLetter(r, stream, stage, errText, at.UTC().Format(time.RFC3339Nano), lo, hi)
}

// DeadLetter is DeadLetter at the pipeline's time and with its limits.
func (p *Pipeline) DeadLetter(r *record.Record, stream, stage, errText string) record.Record {
	return DeadLetter(r, stream, stage, errText, p.cfg.Now(), p.cfg.Limits)
}

// deadLetter is DeadLetter with at as text and lim's window as lo..hi.
func deadLetter(r *record.Record, stream, stage, errText, at string, lo, hi int64) record.Record {
	d := *r
	d.Body = validUTF8(d.Body)
	d.SeverityText = validUTF8(d.SeverityText)
	attrs := make([]record.KV, 0, len(r.Attributes)+7)
	for _, kv := range r.Attributes {
		attrs = append(attrs, record.KV{Key: validUTF8(kv.Key), Value: validUTF8(kv.Value)})
	}
	if len(r.Resource) > 0 {
		d.Resource = make([]record.KV, 0, len(r.Resource))
		for _, kv := range r.Resource {
			d.Resource = append(d.Resource, record.KV{Key: validUTF8(kv.Key), Value: validUTF8(kv.Value)})
		}
	}
	if d.SeverityNumber < 0 || d.SeverityNumber > 24 {
		attrs = append(attrs, record.KV{Key: logschema.AttrDeadPrefix + "severity_number", Value: fmt.Sprint(d.SeverityNumber)})
		d.SeverityNumber = 0
	}
	// A time outside the window moves to an attribute (0, "none", is
	// never outside it), as does the observed time the record would
	// otherwise be filed under; Revive puts them back.
	outside := func(t int64) bool { return t != 0 && (t < lo || t > hi) }
	if outside(d.Timestamp) {
		attrs = append(attrs, record.KV{Key: logschema.AttrDeadPrefix + "timestamp", Value: fmt.Sprint(d.Timestamp)})
		d.Timestamp = 0
	}
	if outside(d.ObservedTimestamp) {
		attrs = append(attrs, record.KV{Key: logschema.AttrDeadPrefix + "observed_timestamp", Value: fmt.Sprint(d.ObservedTimestamp)})
		d.ObservedTimestamp = 0
	}
	d.Attributes = append(attrs,
		record.KV{Key: logschema.AttrDeadStream, Value: stream},
		record.KV{Key: logschema.AttrDeadStage, Value: stage},
		record.KV{Key: logschema.AttrDeadError, Value: validUTF8(errText)},
		record.KV{Key: logschema.AttrDeadTime, Value: at},
	)
	return d
}

// Revive undoes DeadLetter for a replay: it returns the stream the record
// was sent to and the record without the dead-letter attributes. ok is
// false if r is not a dead letter.
func Revive(r record.Record) (stream string, out record.Record, ok bool) {
	out = r
	out.Attributes = make([]record.KV, 0, len(r.Attributes))
	for _, kv := range r.Attributes {
		switch {
		case kv.Key == logschema.AttrDeadStream:
			stream = kv.Value
		case kv.Key == logschema.AttrDeadPrefix+"severity_number":
			var n int32
			fmt.Sscan(kv.Value, &n)
			out.SeverityNumber = n
		case kv.Key == logschema.AttrDeadPrefix+"timestamp":
			var n int64
			fmt.Sscan(kv.Value, &n)
			out.Timestamp = n
		case kv.Key == logschema.AttrDeadPrefix+"observed_timestamp":
			var n int64
			fmt.Sscan(kv.Value, &n)
			out.ObservedTimestamp = n
		case strings.HasPrefix(kv.Key, logschema.AttrDeadPrefix):
		default:
			out.Attributes = append(out.Attributes, kv)
		}
	}
	return stream, out, stream != ""
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// CheckRules reports the first error in rules, as NewPipeline would.
func CheckRules(rules Rules) error {
	p := &Pipeline{cfg: PipelineConfig{Now: time.Now}, miners: newMinerSet("", 1, nil)}
	_, err := compile(rules, p)
	return err
}

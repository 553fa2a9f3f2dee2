package otlp

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"

	"github.com/weirlabs/weir/internal/record"
)

// Attribute keys weir gives to what an OTLP record holds beside its
// attributes.
const (
	// AttrScopeName and AttrScopeVersion hold the instrumentation scope
	// of a record, as OpenTelemetry's conventions name them.
	AttrScopeName    = "otel.scope.name"
	AttrScopeVersion = "otel.scope.version"
	// AttrEventName holds a record's event_name.
	AttrEventName = "event.name"
)

// group is the records of one request bound for one stream. rejects is
// nil or holds, at a record's index, why it cannot be stored as sent.
type group struct {
	stream  string
	recs    []record.Record
	rejects []error
}

// converter turns the records of a request into groups by stream.
type converter struct {
	cfg *Config
	// fixed is the stream of every record; "" when each record's comes
	// from its attributes.
	fixed string
	// hexIDs says that trace and span ids came as OTLP/JSON's hex text,
	// which the JSON decoder read as base64 (see decodeJSON).
	hexIDs bool
	groups []group
	// n counts the records converted, the index errors name them by.
	n int
	// rejected counts the records with an error in their group's rejects.
	rejected int
	// firstReject is the first of those errors.
	firstReject error
}

// convert converts every log record of req into c.groups.
func (c *converter) convert(req *collogspb.ExportLogsServiceRequest) {
	if c.fixed != "" {
		n := 0
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				n += len(sl.GetLogRecords())
			}
		}
		if n == 0 {
			return
		}
		c.groups = append(c.groups, group{stream: c.fixed, recs: make([]record.Record, 0, n)})
	}
	var res []record.KV
	for _, rl := range req.GetResourceLogs() {
		res = dedupKVs(appendKVs(res[:0], "", rl.GetResource().GetAttributes()))
		resStream := ""
		if c.fixed == "" {
			if v, ok := lookup(res, c.cfg.StreamAttribute); ok {
				resStream = c.cfg.streamOf(v, true)
			}
		}
		for _, sl := range rl.GetScopeLogs() {
			c.convertScope(sl, res, resStream)
		}
	}
}

// convertScope converts the records of one scope. res is their resource
// attributes; resStream their stream when the resource names it.
func (c *converter) convertScope(sl *logspb.ScopeLogs, res []record.KV, resStream string) {
	lrs := sl.GetLogRecords()
	if len(lrs) == 0 {
		return
	}
	scope := scopeKVs(sl.GetScope())
	// Each record gets its own copy of the resource and its own
	// attributes (processors change them in place), cut from one
	// allocation per scope; each slice's capacity ends at its length, so
	// that appending to one never writes into the next.
	resCopies := make([]record.KV, len(res)*len(lrs))
	n := 0
	for _, lr := range lrs {
		n += len(lr.GetAttributes())
	}
	attrs := make([]record.KV, 0, n+len(lrs)*len(scope))
	for _, lr := range lrs {
		var r record.Record
		start := len(attrs)
		attrs = appendKVs(attrs, "", lr.GetAttributes())
		if e := lr.GetEventName(); e != "" {
			attrs = append(attrs, record.KV{Key: AttrEventName, Value: e})
		}
		attrs = append(attrs, scope...)
		attrs = attrs[:start+len(dedupKVs(attrs[start:]))]
		r.Attributes = attrs[start:len(attrs):len(attrs)]
		if len(res) > 0 {
			r.Resource = resCopies[:len(res):len(res)]
			copy(r.Resource, res)
			resCopies = resCopies[len(res):]
		}
		err := c.fill(&r, lr)
		stream := c.fixed
		if stream == "" {
			stream = resStream
			if stream == "" {
				v, ok := lookup(r.Attributes, c.cfg.StreamAttribute)
				stream = c.cfg.streamOf(v, ok)
			}
		}
		g := c.group(stream)
		if err != nil {
			if g.rejects == nil {
				g.rejects = make([]error, len(g.recs), cap(g.recs))
			}
			c.rejected++
			if c.firstReject == nil {
				c.firstReject = err
			}
		}
		g.recs = append(g.recs, r)
		if g.rejects != nil {
			g.rejects = append(g.rejects, err)
		}
		c.n++
	}
}

// group returns the group of a stream, made on first use.
func (c *converter) group(stream string) *group {
	for i := range c.groups {
		if c.groups[i].stream == stream {
			return &c.groups[i]
		}
	}
	c.groups = append(c.groups, group{stream: stream})
	return &c.groups[len(c.groups)-1]
}

// fill copies what a log record holds beside its attributes into r. A
// value r cannot hold (a time past the year 2262, an id of the wrong
// length) is left at its zero value and named in the error, which names
// the record by its index in the request; the rest is copied all the
// same, so that the record's dead letter keeps it.
func (c *converter) fill(r *record.Record, lr *logspb.LogRecord) error {
	var err error
	r.Timestamp, err = wireTime(lr.GetTimeUnixNano(), "time_unix_nano", err)
	r.ObservedTimestamp, err = wireTime(lr.GetObservedTimeUnixNano(), "observed_time_unix_nano", err)
	if r.Timestamp == 0 {
		// OTLP: a record without a time happened when it was observed;
		// without either, ingest takes the time it arrived.
		r.Timestamp = r.ObservedTimestamp
	}
	r.SeverityNumber = int32(lr.GetSeverityNumber())
	r.SeverityText = lr.GetSeverityText()
	if b := lr.GetBody(); b != nil {
		r.Body = valueText(b)
	}
	r.Flags = lr.GetFlags()
	err = c.id(r.TraceID[:], lr.GetTraceId(), "trace_id", err)
	err = c.id(r.SpanID[:], lr.GetSpanId(), "span_id", err)
	if err != nil {
		return fmt.Errorf("log record %d: %w", c.n, err)
	}
	return nil
}

// maxShownID bounds the bytes of a malformed id an error shows.
const maxShownID = 64

// id copies an id of len(dst) bytes from its wire form into dst, or
// adds why it cannot to err. An empty id is absent: dst stays zero.
func (c *converter) id(dst, wire []byte, name string, err error) error {
	if len(wire) == 0 {
		return err
	}
	if c.hexIDs {
		// The JSON decoder read the hex text as base64; encoding the
		// bytes again gives the text back exactly when it was hex of
		// the right length (see decodeJSON).
		text := base64.RawStdEncoding.EncodeToString(wire)
		if len(text) == 2*len(dst) {
			if _, herr := hex.Decode(dst, []byte(text)); herr == nil {
				return err
			}
		}
		clear(dst)
		if len(text) > 2*maxShownID {
			text = text[:2*maxShownID] + "..."
		}
		return joinErr(err, fmt.Errorf("%s %q is not %d hex digits", name, text, 2*len(dst)))
	}
	if len(wire) != len(dst) {
		shown := wire
		if len(shown) > maxShownID {
			shown = shown[:maxShownID]
		}
		return joinErr(err, fmt.Errorf("%s %x has %d bytes; want %d", name, shown, len(wire), len(dst)))
	}
	copy(dst, wire)
	return err
}

// wireTime converts a wire timestamp, or returns 0 and adds its error
// to err.
func wireTime(ns uint64, name string, err error) (int64, error) {
	if ns > math.MaxInt64 {
		return 0, joinErr(err, fmt.Errorf("%w: %s %d is past the year 2262", record.ErrInvalidTimestamp, name, ns))
	}
	return int64(ns), err
}

// joinErr returns the errors of one record as one, "; " between them.
func joinErr(prev, err error) error {
	if prev == nil {
		return err
	}
	return fmt.Errorf("%w; %w", prev, err)
}

// scopeKVs returns the attributes that carry a record's instrumentation
// scope: its name, version and attributes.
func scopeKVs(s *commonpb.InstrumentationScope) []record.KV {
	if s == nil {
		return nil
	}
	var out []record.KV
	if s.GetName() != "" {
		out = append(out, record.KV{Key: AttrScopeName, Value: s.GetName()})
	}
	if s.GetVersion() != "" {
		out = append(out, record.KV{Key: AttrScopeVersion, Value: s.GetVersion()})
	}
	return appendKVs(out, "", s.GetAttributes())
}

// lookup returns the value of the first attribute named k.
func lookup(kvs []record.KV, k string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return "", false
}

// dedupKVs drops every attribute whose key an earlier one has, in
// place: a record's own attributes come before its scope's, and a key
// sent twice (or both as "a.b" and nested as b in a) keeps its first
// value.
func dedupKVs(kvs []record.KV) []record.KV {
	if len(kvs) < 2 {
		return kvs
	}
	if len(kvs) <= 16 {
		out := kvs[:1]
	small:
		for _, kv := range kvs[1:] {
			for _, o := range out {
				if o.Key == kv.Key {
					continue small
				}
			}
			out = append(out, kv)
		}
		return out
	}
	seen := make(map[string]struct{}, len(kvs))
	out := kvs[:0]
	for _, kv := range kvs {
		if _, dup := seen[kv.Key]; dup {
			continue
		}
		seen[kv.Key] = struct{}{}
		out = append(out, kv)
	}
	return out
}

package jsonl

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

// Bounds of one line's JSON object.
const (
	// MaxDepth bounds the nesting of a line's object; the object itself
	// is at depth 1.
	MaxDepth = 16
	// MaxFields bounds the members of a line's object, nested ones
	// counted.
	MaxFields = 1024
)

// Params say how the fields of a line map to a record.
type Params struct {
	// MsgFields name the fields that hold the body, first first.
	MsgFields []string
	// TimeFields name the fields that hold the timestamp, first first.
	TimeFields []string
	// StreamFields become resource attributes; the value of the first
	// one picks the stream when Stream is "".
	StreamFields []string
	// IgnoreFields are dropped; a name ending in * drops every field
	// with that prefix.
	IgnoreFields []string
	// Stream is the stream named by the request, or "".
	Stream string
	// DefaultStream takes lines whose stream is not named otherwise.
	DefaultStream string
	// MaxLineBytes bounds a line.
	MaxLineBytes int
}

// severityFields name the fields whose value is the severity text,
// first first.
var severityFields = []string{"level", "severity", "log.level", "severity_text"}

// line is one decoded line.
type line struct {
	stream string
	rec    record.Record
	err    error // why the line cannot be stored as it is
}

// decode splits body into lines and decodes each non-blank one. A line
// that cannot be read is returned with its error and its text as the
// body; only more than httpin.MaxRecords lines fail the request.
func decode(body []byte, p *Params) ([]line, error) {
	var out []line
	for len(body) > 0 {
		var l []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			l, body = body, nil
		}
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		if len(out) == httpin.MaxRecords {
			return nil, httpin.TooManyRecords()
		}
		out = append(out, decodeLine(l, p))
	}
	return out, nil
}

func decodeLine(text []byte, p *Params) line {
	fallback := p.Stream
	if fallback == "" {
		fallback = p.DefaultStream
	}
	bad := func(err error) line {
		return line{stream: fallback, rec: record.Record{Body: string(text)}, err: err}
	}
	if len(text) > p.MaxLineBytes {
		return bad(fmt.Errorf("line has %d bytes; the limit is %d", len(text), p.MaxLineBytes))
	}
	kvs, err := httpin.Flatten(nil, text, MaxDepth, MaxFields)
	if err != nil {
		return bad(fmt.Errorf("line is not a JSON object within the limits: %w", err))
	}
	var r record.Record
	kvs = slices.DeleteFunc(kvs, func(kv record.KV) bool { return ignored(kv.Key, p.IgnoreFields) })
	if i := firstOf(kvs, p.MsgFields); i >= 0 {
		r.Body = kvs[i].Value
		kvs = slices.Delete(kvs, i, i+1)
	}
	if i := firstOf(kvs, p.TimeFields); i >= 0 {
		ts, err := parseTime(kvs[i].Value)
		if err != nil {
			r.Attributes = kvs
			return line{stream: fallback, rec: r, err: fmt.Errorf("field %q: %w", kvs[i].Key, err)}
		}
		r.Timestamp = ts
		kvs = slices.Delete(kvs, i, i+1)
	}
	if i := firstOf(kvs, severityFields); i >= 0 {
		r.SeverityText = kvs[i].Value
		r.SeverityNumber = record.ParseSeverity(r.SeverityText)
	}
	stream := p.Stream
	for _, f := range p.StreamFields {
		if i := firstOf(kvs, []string{f}); i >= 0 {
			r.Resource = append(r.Resource, kvs[i])
			if stream == "" {
				stream, _ = record.StreamNameFrom(kvs[i].Value)
			}
			kvs = slices.Delete(kvs, i, i+1)
		}
	}
	if stream == "" {
		stream = p.DefaultStream
	}
	r.Attributes = kvs
	return line{stream: stream, rec: r}
}

func firstOf(kvs []record.KV, names []string) int {
	for _, n := range names {
		for i, kv := range kvs {
			if kv.Key == n {
				return i
			}
		}
	}
	return -1
}

func ignored(key string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(key, prefix) {
				return true
			}
		} else if key == p {
			return true
		}
	}
	return false
}

// parseTime reads a timestamp: RFC 3339 text, or a Unix time whose unit
// follows from its size (seconds below 1e11, milliseconds below 1e14,
// microseconds below 1e17, nanoseconds above), with a fraction allowed
// for seconds. "" and "0" mean none: the record gets its arrival time.
func parseTime(v string) (int64, error) {
	if v == "" || v == "0" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("timestamp %s is before 1970", v)
		}
		unit := int64(1)
		switch {
		case n < 1e11:
			unit = 1e9
		case n < 1e14:
			unit = 1e6
		case n < 1e17:
			unit = 1e3
		}
		if n > math.MaxInt64/unit {
			return 0, fmt.Errorf("timestamp %s is after 2262", v)
		}
		return n * unit, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f >= 1e11 || math.IsNaN(f) {
			return 0, fmt.Errorf("timestamp %s: a fractional Unix time must be seconds since 1970", v)
		}
		if f >= 9223372036 { // whole seconds to 2262; more overflows int64 nanoseconds
			return 0, fmt.Errorf("timestamp %s is after 2262", v)
		}
		return int64(math.Round(f * 1e9)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: want RFC 3339 or a Unix time", v)
	}
	if t.Year() < 1970 || t.Year() > 2261 {
		return 0, fmt.Errorf("timestamp %q is outside 1970 to 2261", v)
	}
	return t.UnixNano(), nil
}

// DecodeLine decodes one JSON object as the endpoints decode a line, for
// the sources that receive one object a message (ingest/kafka,
// ingest/amqp, ingest/sqs). p.MsgFields and p.TimeFields empty mean
// none. err, when not nil, says why the text cannot be stored as it is:
// rec then holds the text as its body and belongs in the dead-letter
// stream. It is safe for concurrent use.
func DecodeLine(text []byte, p *Params) (stream string, rec record.Record, err error) {
	l := decodeLine(bytes.TrimSpace(text), p)
	return l.stream, l.rec, l.err
}

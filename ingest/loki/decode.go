package loki

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/protolimit"
	"github.com/weirlabs/weir/internal/record"
)

// ErrMalformed reports a push body that cannot be decoded; the request
// fails whole.
var ErrMalformed = errors.New("malformed push request")

// maxJSONDepth bounds the nesting of a JSON push: the request, streams,
// a stream, its labels or values, an entry and its structured metadata
// make six levels.
const maxJSONDepth = 8

// pushStream is one stream of a push request, decoded.
type pushStream struct {
	labels    []record.KV
	rawLabels string // the protobuf labels string, kept for dead letters
	labelErr  error  // why the labels could not be read
	entries   []entry
}

// entry is one log line of a stream.
type entry struct {
	ts   int64 // ns since the epoch; 0 = none sent
	line string
	meta []record.KV // structured metadata
	err  error       // why the entry cannot be stored as it is
}

// decodeProto decodes a logproto.PushRequest:
//
//	PushRequest       { repeated StreamAdapter streams = 1; }
//	StreamAdapter     { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
//	EntryAdapter      { google.protobuf.Timestamp timestamp = 1; string line = 2;
//	                    repeated LabelPairAdapter structuredMetadata = 3; }
//	LabelPairAdapter  { string name = 1; string value = 2; }
//	Timestamp         { int64 seconds = 1; int32 nanos = 2; }
//
// The nesting is fixed, so each level is a loop of its own. Unknown
// fields are skipped, except groups, which the format never holds.
func decodeProto(b []byte) ([]pushStream, error) {
	var out []pushStream
	entries := 0
	err := fields(b, "PushRequest", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 {
			return nil
		}
		if typ != protowire.BytesType {
			return wrongType("PushRequest.streams")
		}
		s, err := decodeStream(v, &entries)
		if err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// decodeStream decodes a StreamAdapter; entries counts the entries of
// the request, at most httpin.MaxRecords.
func decodeStream(b []byte, entries *int) (pushStream, error) {
	var s pushStream
	err := fields(b, "StreamAdapter", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return wrongType("StreamAdapter.labels")
			}
			s.rawLabels = string(v)
		case 2:
			if typ != protowire.BytesType {
				return wrongType("StreamAdapter.entries")
			}
			if *entries++; *entries > httpin.MaxRecords {
				return httpin.TooManyRecords()
			}
			e, err := decodeEntry(v)
			if err != nil {
				return err
			}
			s.entries = append(s.entries, e)
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	s.labels, s.labelErr = parseLabels(s.rawLabels, MaxLabels)
	return s, nil
}

func decodeEntry(b []byte) (entry, error) {
	var e entry
	err := fields(b, "EntryAdapter", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return wrongType("EntryAdapter.timestamp")
			}
			ts, err := decodeTimestamp(v)
			if err != nil {
				return err
			}
			e.ts = ts
			if ts < 0 {
				e.ts, e.err = 0, fmt.Errorf("timestamp %s is outside 1970 to 2262", tsText(v))
			}
		case 2:
			if typ != protowire.BytesType {
				return wrongType("EntryAdapter.line")
			}
			e.line = string(v)
		case 3:
			if typ != protowire.BytesType {
				return wrongType("EntryAdapter.structuredMetadata")
			}
			var kv record.KV
			err := fields(v, "LabelPairAdapter", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num != 1 && num != 2 {
					return nil
				}
				if typ != protowire.BytesType {
					return wrongType("LabelPairAdapter")
				}
				if num == 1 {
					kv.Key = string(v)
				} else {
					kv.Value = string(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			e.meta = append(e.meta, kv)
		}
		return nil
	})
	return e, err
}

// decodeTimestamp returns a google.protobuf.Timestamp in ns since the
// epoch, or -1 when it lies outside what an int64 of ns holds (or has
// nanos outside 0..999,999,999).
func decodeTimestamp(b []byte) (int64, error) {
	var sec, nanos int64
	err := fields(b, "Timestamp", func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
		if num != 1 && num != 2 {
			return nil
		}
		if typ != protowire.VarintType {
			return wrongType("Timestamp")
		}
		if num == 1 {
			sec = int64(x)
		} else {
			nanos = int64(int32(x))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if sec < 0 || nanos < 0 || nanos > 999_999_999 || sec > (math.MaxInt64-nanos)/1e9 {
		return -1, nil
	}
	return sec*1e9 + nanos, nil
}

// tsText names a timestamp that could not be read, for its error.
func tsText(b []byte) string {
	var sec, nanos uint64
	_ = fields(b, "Timestamp", func(num protowire.Number, _ protowire.Type, _ []byte, x uint64) error {
		if num == 1 {
			sec = x
		} else if num == 2 {
			nanos = x
		}
		return nil
	})
	return fmt.Sprintf("{seconds: %d, nanos: %d}", int64(sec), int32(nanos))
}

// fields calls fn for each field of one message's wire bytes: v holds a
// length-delimited field's bytes, x a varint's or a fixed field's value.
// A group or a truncated field is malformed.
func fields(b []byte, msg string, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %s: %v", ErrMalformed, msg, protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v []byte
			x uint64
		)
		switch typ {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x32 uint32
			x32, n = protowire.ConsumeFixed32(b)
			x = uint64(x32)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("%w: %s: field %d has wire type %d, which this format never uses", ErrMalformed, msg, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("%w: %s: field %d: %v", ErrMalformed, msg, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

func wrongType(field string) error {
	return fmt.Errorf("%w: %s has the wrong wire type", ErrMalformed, field)
}

// jsonPush is Loki's JSON push body.
type jsonPush struct {
	Streams []struct {
		Stream map[string]string `json:"stream"`
		Values []json.RawMessage `json:"values"`
	} `json:"streams"`
}

// decodeJSON decodes a JSON push:
//
//	{"streams": [{"stream": {"label": "value"},
//	  "values": [["<ns since the epoch, as a string>", "<line>", {"<metadata>": "<value>"}]]}]}
//
// A body that is not of this shape fails whole; an entry whose
// timestamp, line or metadata is not of its type is kept with its error,
// its line being the entry's JSON text.
func decodeJSON(b []byte) ([]pushStream, error) {
	if err := protolimit.CheckJSON(b, maxJSONDepth); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Entries are the arrays in the values arrays (depth 4): counted
	// before encoding/json builds them.
	if protolimit.CheckJSONRecords(b, 4, httpin.MaxRecords) != nil {
		return nil, httpin.TooManyRecords()
	}
	var p jsonPush
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: JSON: %v", ErrMalformed, err)
	}
	entries := 0
	for _, js := range p.Streams {
		if entries += len(js.Values); entries > httpin.MaxRecords {
			return nil, httpin.TooManyRecords()
		}
	}
	out := make([]pushStream, len(p.Streams))
	for i, js := range p.Streams {
		s := &out[i]
		if len(js.Stream) > MaxLabels {
			s.labelErr = fmt.Errorf("%w: stream %d has %d labels; the limit is %d", ErrLabels, i, len(js.Stream), MaxLabels)
		}
		for k, v := range js.Stream {
			s.labels = append(s.labels, record.KV{Key: k, Value: v})
		}
		slices.SortFunc(s.labels, func(a, b record.KV) int { return strings.Compare(a.Key, b.Key) })
		s.entries = make([]entry, len(js.Values))
		for j, raw := range js.Values {
			s.entries[j] = jsonEntry(raw)
		}
	}
	return out, nil
}

// jsonEntry reads one ["ns", "line", {metadata}] array.
func jsonEntry(raw json.RawMessage) entry {
	bad := func(format string, args ...any) entry {
		return entry{line: string(raw), err: fmt.Errorf(format, args...)}
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts) < 2 || len(parts) > 3 {
		return bad("an entry must be [\"<ns>\", \"<line>\"] or [\"<ns>\", \"<line>\", {metadata}]")
	}
	var e entry
	var tsText string
	if err := json.Unmarshal(parts[0], &tsText); err != nil {
		return bad("timestamp %s: want ns since the epoch as a string", parts[0])
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || ts < 0 {
		return bad("timestamp %q: want ns since the epoch (1970 to 2262) as a string", tsText)
	}
	e.ts = ts
	if err := json.Unmarshal(parts[1], &e.line); err != nil {
		return bad("line %s: want a string", parts[1])
	}
	if len(parts) == 3 {
		var meta map[string]string
		if err := json.Unmarshal(parts[2], &meta); err != nil {
			return bad("structured metadata %s: want an object of strings", parts[2])
		}
		for k, v := range meta {
			e.meta = append(e.meta, record.KV{Key: k, Value: v})
		}
		slices.SortFunc(e.meta, func(a, b record.KV) int { return strings.Compare(a.Key, b.Key) })
	}
	return e
}

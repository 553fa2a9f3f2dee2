package brokerin

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/weirlabs/weir/ingest/jsonl"
	"github.com/weirlabs/weir/internal/record"
)

// Params say how a message becomes a record.
type Params struct {
	// Stream takes the records whose stream is not named otherwise.
	Stream string
	// StreamFrom, when not "", names the attribute (a broker attribute
	// such as kafka.header.stream, or a field of a JSON value) whose
	// value, as record.StreamNameFrom makes it a stream name, picks the
	// stream; a message without a usable one goes to Stream.
	StreamFrom string
	// MaxMessageBytes bounds a message's value; a longer one is cut to
	// the bound and dead-lettered.
	MaxMessageBytes int
}

// msgFields and timeFields are the JSON lines endpoint's defaults.
var (
	msgFields  = []string{"_msg", "message", "msg"}
	timeFields = []string{"_time", "time", "timestamp"}
)

// Decode turns a message into a record. A value that is a JSON object
// is read as the JSON lines endpoint reads a line (ingest/jsonl: nested
// objects flatten to dotted keys, a message field becomes the body, a
// time field the timestamp, a level field the severity), within
// jsonl.MaxDepth and jsonl.MaxFields; any other value is the body as it
// is. meta are the broker's attributes of the message (topic, key,
// headers); they come first among the record's attributes. reject, when
// not nil, says why the message cannot be stored as it is: the record
// then holds what could be kept and belongs in the dead-letter stream.
func Decode(value []byte, meta []record.KV, p *Params) (stream string, rec record.Record, reject error) {
	stream = p.Stream
	if len(value) > p.MaxMessageBytes {
		rec = record.Record{Body: string(value[:p.MaxMessageBytes]), Attributes: meta}
		return stream, rec, fmt.Errorf("message has %d bytes; the limit is %d", len(value), p.MaxMessageBytes)
	}
	trimmed := bytes.TrimSpace(value)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		jp := jsonl.Params{MsgFields: msgFields, TimeFields: timeFields, DefaultStream: p.Stream, MaxLineBytes: p.MaxMessageBytes}
		_, rec, reject = jsonl.DecodeLine(trimmed, &jp)
		if len(meta) > 0 {
			rec.Attributes = append(slices.Clip(meta), rec.Attributes...)
		}
	} else {
		rec = record.Record{Body: string(value), Attributes: meta}
	}
	if p.StreamFrom != "" && reject == nil {
		for _, kv := range rec.Attributes {
			if kv.Key == p.StreamFrom {
				if s, err := record.StreamNameFrom(kv.Value); err == nil {
					stream = s
				}
				break
			}
		}
	}
	return stream, rec, reject
}

package syslog

import (
	"fmt"
	"slices"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

// converter turns syslog messages into records. It is safe for
// concurrent use.
type converter struct {
	rfc5424, rfc3164 parse.Parser
	times            *parse.TimeParser
	stream           string
	fromApp          bool
}

func newConverter(stream string, fromApp bool) *converter {
	tp, err := parse.NewTimeParser(parse.TimeConfig{})
	if err != nil {
		panic(err) // the automatic layouts are valid
	}
	return &converter{rfc5424: parse.Syslog5424(), rfc3164: parse.Syslog3164(), times: tp, stream: stream, fromApp: fromApp}
}

// is5424 reports whether msg starts like RFC 5424: "<PRI>" and a
// version number followed by a space.
func is5424(msg string) bool {
	i := 0
	if i >= len(msg) || msg[i] != '<' {
		return false
	}
	for i++; i < len(msg) && i < 5 && msg[i] >= '0' && msg[i] <= '9'; i++ {
	}
	if i >= len(msg) || msg[i] != '>' {
		return false
	}
	i++
	v := i
	for i < len(msg) && i < v+3 && msg[i] >= '0' && msg[i] <= '9' {
		i++
	}
	return i > v && msg[v] != '0' && i < len(msg) && msg[i] == ' '
}

// convert returns the record of one message and its stream. A message
// neither parser reads is kept whole as the body with a reject, for the
// dead-letter stream. peer, when not empty, is the sender's address.
func (c *converter) convert(raw []byte, peer string) (rec record.Record, stream string, reject error) {
	msg := string(raw)
	stream = c.stream
	p, format := c.rfc3164, "RFC 3164"
	if is5424(msg) {
		p, format = c.rfc5424, "RFC 5424"
	}
	fields, err := p.Parse(nil, msg)
	if err != nil {
		rec.Body = msg
		if peer != "" {
			rec.Attributes = []record.KV{{Key: "client.address", Value: peer}}
		}
		return rec, stream, fmt.Errorf("unparseable syslog message (read as %s): %w", format, err)
	}
	app := ""
	for _, kv := range fields {
		switch kv.Key {
		case "message":
			rec.Body = kv.Value
		case "timestamp":
			if ns, err := c.times.Parse(kv.Value); err == nil {
				rec.Timestamp = ns
			} else {
				rec.Attributes = append(rec.Attributes, record.KV{Key: "syslog.timestamp", Value: kv.Value})
			}
		case "syslog.severity":
			rec.SeverityNumber, rec.SeverityText = parse.Severity(kv.Value)
			rec.Attributes = append(rec.Attributes, kv)
		case "host":
			rec.Resource = append(rec.Resource, record.KV{Key: "host.name", Value: kv.Value})
		case "app":
			app = kv.Value
			rec.Resource = append(rec.Resource, record.KV{Key: "service.name", Value: kv.Value})
			rec.Attributes = append(rec.Attributes, record.KV{Key: "syslog.appname", Value: kv.Value})
		case "procid", "msgid":
			rec.Attributes = append(rec.Attributes, record.KV{Key: "syslog." + kv.Key, Value: kv.Value})
		default: // syslog.facility, sd.<id>.<param>
			rec.Attributes = append(rec.Attributes, kv)
		}
	}
	if peer != "" {
		rec.Attributes = append(rec.Attributes, record.KV{Key: "client.address", Value: peer})
	}
	// Processors may append to the slices; they must not write into
	// each other's arrays when a record is submitted again.
	rec.Attributes, rec.Resource = slices.Clip(rec.Attributes), slices.Clip(rec.Resource)
	if c.fromApp && app != "" {
		if s, err := record.StreamNameFrom(app); err == nil {
			stream = s
		}
	}
	return rec, stream, nil
}

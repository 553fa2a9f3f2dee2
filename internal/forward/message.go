package forward

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/record"
)

// Header keys of every message.
const (
	HeaderTenant    = "weir.tenant"
	HeaderStream    = "weir.stream"
	HeaderPartition = "weir.partition"
	HeaderOffset    = "weir.offset"
)

// Message is the JSON value of a forwarded record (docs/forward.md).
// Attributes and resource attributes become objects; when a key repeats,
// the last value wins, as in queries.
type Message struct {
	// Timestamp is RFC 3339 with nanoseconds in UTC; empty when unknown.
	Timestamp         string            `json:"timestamp,omitempty"`
	ObservedTimestamp string            `json:"observed_timestamp,omitempty"`
	SeverityText      string            `json:"severity_text,omitempty"`
	SeverityNumber    int32             `json:"severity_number"`
	Body              string            `json:"body"`
	ServiceName       string            `json:"service_name,omitempty"`
	Attributes        map[string]string `json:"attributes,omitempty"`
	Resource          map[string]string `json:"resource,omitempty"`
	// TraceID and SpanID are lower-case hex; empty when absent.
	TraceID string `json:"trace_id,omitempty"`
	SpanID  string `json:"span_id,omitempty"`
	Flags   uint32 `json:"flags,omitempty"`
	// Where the record is stored in weir.
	Tenant    string `json:"tenant"`
	Stream    string `json:"stream"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// NewMessage returns the message of a record of tenant's stream.
func NewMessage(tenant, stream string, pos consume.Position, r *record.Record) Message {
	m := Message{
		Timestamp:         rfc3339(r.Timestamp),
		ObservedTimestamp: rfc3339(r.ObservedTimestamp),
		SeverityText:      r.SeverityText,
		SeverityNumber:    r.SeverityNumber,
		Body:              r.Body,
		ServiceName:       r.ServiceName(),
		Attributes:        kvMap(r.Attributes),
		Resource:          kvMap(r.Resource),
		Flags:             r.Flags,
		Tenant:            tenant,
		Stream:            stream,
		Partition:         pos.Partition,
		Offset:            pos.Offset,
	}
	if r.TraceID != ([16]byte{}) {
		m.TraceID = hex.EncodeToString(r.TraceID[:])
	}
	if r.SpanID != ([8]byte{}) {
		m.SpanID = hex.EncodeToString(r.SpanID[:])
	}
	return m
}

func rfc3339(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

func kvMap(kvs []record.KV) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// kafkaRecord returns the Kafka record of a consumed record: the message
// as value, the service name as key (so one service's records keep
// their order within a Kafka partition; no key without one) and the
// position as headers.
func kafkaRecord(tenant, stream string, cr *consume.Record) (*kgo.Record, error) {
	e, err := encode(tenant, stream, cr)
	if err != nil {
		return nil, err
	}
	kr := &kgo.Record{Value: e.value, Headers: make([]kgo.RecordHeader, len(e.headers))}
	for i, h := range e.headers {
		kr.Headers[i] = kgo.RecordHeader{Key: h.key, Value: []byte(h.value)}
	}
	if e.service != "" {
		kr.Key = []byte(e.service)
	}
	return kr, nil
}

// encoded is a record as every broker's message carries it.
type encoded struct {
	// value is the JSON Message.
	value []byte
	// service is the record's service name, "" without one.
	service string
	// headers are the HeaderTenant, HeaderStream, HeaderPartition and
	// HeaderOffset headers, their values as text.
	headers [4]header
}

type header struct{ key, value string }

// encode returns the message of a consumed record of tenant's stream.
func encode(tenant, stream string, cr *consume.Record) (encoded, error) {
	m := NewMessage(tenant, stream, cr.Position, &cr.Record)
	v, err := json.Marshal(&m)
	if err != nil {
		return encoded{}, err
	}
	return encoded{value: v, service: m.ServiceName, headers: [4]header{
		{HeaderTenant, tenant},
		{HeaderStream, stream},
		{HeaderPartition, strconv.FormatInt(int64(cr.Partition), 10)},
		{HeaderOffset, strconv.FormatInt(cr.Offset, 10)},
	}}, nil
}

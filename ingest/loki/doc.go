// Package loki serves Grafana Loki's push API, POST /loki/api/v1/push,
// so that Promtail, Grafana Alloy, Vector, Fluent Bit and Loki's client
// libraries can ship to weir unchanged. It decodes Loki's documented wire
// format itself (protobuf logproto.PushRequest in a snappy block, or JSON,
// optionally gzip-compressed) without importing Loki, turns each entry
// into a record.Record at the edge and hands the records, grouped by
// weir stream, to ingest's Submit.
//
// Every decode is bounded before it runs: the body (compressed and
// decompressed, the snappy length header checked before decoding), the
// labels of a stream, and the nesting of JSON; the protobuf decoder reads
// the four fixed levels of the format in loops, without recursion. What
// cannot be decoded fails the request with 400; an entry whose labels or
// timestamp are invalid goes to the dead-letter stream with the reason
// and the rest are stored. docs/ingest-protocols.md describes the
// mapping.
package loki

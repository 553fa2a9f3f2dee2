// Package hec serves Splunk's HTTP Event Collector API, so that Splunk
// forwarders, Splunk logging libraries, Vector, Fluent Bit and the
// OpenTelemetry Collector's splunk_hec exporter can ship to weir:
// /services/collector/event takes concatenated JSON event objects,
// /services/collector/raw lines of text, and /services/collector/health
// answers whether the collector is up. Events become record.Records at
// the edge and go, grouped by stream (the event's index), to ingest's
// Submit; answers have HEC's shape, {"text": "Success", "code": 0}.
//
// Bounds: the body, before and after gzip decompression, and each
// event's nesting and field count. An event that cannot be stored as it
// is (no event field, a bad time, fields that are not an object) goes to
// the dead-letter stream with the reason and the others are stored; text
// that is not JSON ends the events of a request, and is dead-lettered as
// it is. docs/ingest-protocols.md describes the mapping.
package hec

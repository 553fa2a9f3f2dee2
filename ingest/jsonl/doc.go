// Package jsonl ingests newline-delimited JSON over HTTP: one JSON object
// a line, as VictoriaLogs' POST /insert/jsonline takes it (its query
// arguments _msg_field, _time_field, _stream_fields, ignore_fields and
// debug, or their VL-* headers), and weir's own POST /v1/ingest/jsonl
// for scripts and curl. Both share one decoder: nested objects flatten to
// dotted attribute keys, a message field becomes the body, a time field
// the timestamp, a level or severity field the severity, and stream
// fields become resource attributes and may pick the stream.
//
// Bounds: the body, before and after gzip decompression; each line's
// length, nesting depth and field count. A line that is not a JSON
// object within them goes to the dead-letter stream with its text and
// the reason; the other lines are stored. docs/ingest-protocols.md
// describes the arguments and the answers.
package jsonl

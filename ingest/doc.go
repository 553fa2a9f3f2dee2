// Package ingest is weir's front door: the Connect IngestService (Connect,
// gRPC and gRPC-Web on one handler). It validates requests, converts the
// wire records, or the Arrow IPC stream of a batch sent in columns
// (docs/ingest-arrow.md), into record.Batch at the edge and pushes them
// into the buffer. Generated protobuf types and Arrow memory go no deeper
// than this package.
//
// Its codecs check each request's nesting and message count before the
// (recursive) decoders run (MaxValueDepth, MaxMessageDepth). What belongs
// to a request (stream name, size, shape) fails it whole; a record that
// holds a value weir cannot store goes to the dead-letter stream and the
// rest of its batch is kept.
package ingest

// Package ingest is weir's front door: the Connect IngestService (Connect,
// gRPC and gRPC-Web on one handler). It validates requests, converts the
// wire records, or the Arrow IPC stream of a batch sent in columns
// (docs/ingest-arrow.md), into record.Batch at the edge and pushes them
// into the buffer. Generated protobuf types and Arrow memory go no deeper
// than this package.
package ingest

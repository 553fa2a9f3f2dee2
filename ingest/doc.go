// Package ingest is weir's front door: the Connect IngestService (Connect,
// gRPC and gRPC-Web on one handler). It validates requests, converts the
// wire records into record.Batch at the edge and pushes them into the
// buffer. Generated protobuf types go no deeper than this package.
package ingest

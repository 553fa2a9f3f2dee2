// Package otlp receives OpenTelemetry logs: the OTLP/gRPC LogsService
// (opentelemetry.proto.collector.logs.v1.LogsService/Export, served by
// connect-go beside weir's own services, so gRPC, gRPC-Web and Connect
// clients all reach it) and OTLP/HTTP (POST /v1/logs, binary protobuf or
// OTLP's JSON mapping, optionally gzip-compressed).
//
// It sits at the edge of the pipeline, beside ingest's Connect handlers:
// it decodes a request within bounds checked before the decoder runs
// (the request size before and after decompression, the nesting of
// attribute values, the count of messages; see internal/protolimit),
// converts every log record to a record.Record, chooses each record's
// stream (Config), and hands the records of each stream to
// ingest.Service.Submit, which buffers them and returns once they
// reached the acknowledgement level. Generated OTLP types go no deeper
// than this package.
//
// A record weir cannot store as sent (a trace id of the wrong length, a
// timestamp past the year 2262, a value that fails validation) goes to
// the dead-letter stream with its reason, the rest of the request is
// stored, and the answer is OTLP's partial success naming how many
// records were rejected. What belongs to the request (its size, shape,
// encoding, ack level or stream header) fails it whole.
package otlp

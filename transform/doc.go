// Package transform runs the processors of each stream (parse, timestamp,
// severity, filter, redact, sample, route, pattern, …) over the records
// pushed to it, at ingest, before they are buffered: a Pipeline. Records
// that fail validation or a processor go to the dead-letter stream
// (logschema.DeadLetterStream) with the reason; docs/transforms.md
// documents the processors.
//
// After the buffer, package transform/arrowbatch builds each stream
// partition's records into the Arrow batches the sink writes.
package transform

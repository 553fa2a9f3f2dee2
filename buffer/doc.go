// Package buffer holds record batches between ingest and transform.
//
// Ingest handlers Push batches; the buffer queues them in bounded lock-free
// rings (see Ring) and hands them, one goroutine per ring, to a Consumer
// (the transform stage's batcher for that stream partition):
//
//	ingest handlers --Push--> Buffer: per stream, Config.Partitions rings --Consume/Tick/Close--> Consumer
//
// A stream (tenant, stream name) is created on its first Push with
// Config.Partitions partitions. A batch is split across partitions by a
// stable hash (FNV-1a) of each record's service name, so the records of a
// service keep their order and their partition across restarts. The
// consumer goroutine numbers the records of each partition with contiguous
// offsets, starting from Deps.FirstOffset.
//
// The buffer is bounded in records and bytes across all streams, and in
// batches per ring. A Push that does not fit waits, up to its context's
// deadline, for consumers to free room, and then fails with ErrFull; this
// is how back-pressure from the sink reaches clients. A batch is queued
// whole or not at all.
//
// Shutdown stops new pushes, lets every consumer drain its ring and calls
// Close on it. Start the consumer side first and shut the buffer down
// before it, so nothing queued is lost.
package buffer

// Package arrowipc reads Arrow IPC streams held in memory safely: a
// message reader that checks each message's metadata before arrow-go
// parses it (bounding nesting and vector lengths), and an allocator that
// bounds what decoding may allocate. ingest reads clients' arrow_ipc
// payloads through it, and internal/record the columnar batches of the
// write-ahead log.
package arrowipc

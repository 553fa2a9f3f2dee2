// Package wal is weir's write-ahead log: an append-only sequence of opaque
// records, one log per stream partition, that the buffer writes every
// accepted batch to before it acknowledges the batch as durable.
//
//	buffer (partition mutex) --Append--> Log --write(2)--> segment file
//	producers               --Sync----> Log <--fdatasync-- syncer goroutine (group commit)
//	restart                 --Replay--> Log --records after a Pos--> buffer
//
// A Log is a directory of numbered segment files. Append frames a payload
// (length, CRC-32C) and writes it to the current segment without syncing;
// Sync waits until a position is durable. Under SyncEvery, concurrent
// Syncs share fsyncs: one fsync is in flight at a time and covers every
// record appended before it started (group commit). Under SyncInterval a
// background goroutine syncs on a timer instead. Open recovers from a
// crash by truncating a torn tail of the last segment and refuses, with a
// *CorruptionError, to open a log damaged anywhere else; with
// Options.SkipDamage it opens it instead, passing over each damaged span
// (listed by Damage, reported in place by Scan) and keeping every record
// around it.
//
// A failed write is undone (the segment is truncated back, a new segment
// removed) and the log stays usable: a full disk makes Append fail with
// ErrNoSpace until space is freed. An fsync error is fatal: the log
// reports it from every later call and never retries. The on-disk format and the guarantees are documented in
// docs/wal.md.
package wal

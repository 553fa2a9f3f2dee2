// Package consume reads streams like queues: a subscription starts at a
// position (the earliest record, the latest, an offset per partition or a
// time) and reads the stored records and then the live ones in offset
// order per partition, each exactly once. Consumer groups share a
// stream's partitions among their members and commit their progress to
// files under the data directory.
//
// It sits on the read side of the pipeline, beside query: it reads what
// queries see through a Source (the query engine's ScanPartition over
// published and staged records) and learns from the buffer's marks how
// far each partition has got. cmd/weir wires both and serves it as
// weir.v1.SubscribeService. The guarantees and their reasons are in
// docs/consume.md.
package consume

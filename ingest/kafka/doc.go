// Package kafka consumes records from Kafka topics into weir: a Source
// joins a consumer group on its configured topics (franz-go) and hands
// each polled batch to the pipeline through ingest.Service.Submit, at
// Config.Level, in the source's tenant.
//
// Delivery is at-least-once. Offsets are committed only after every
// record polled up to them reached the acknowledgement level (Durable by
// default: in weir's write-ahead log), never automatically, and the group
// cannot rebalance between a poll and its commit (BlockRebalanceOnPoll),
// so a crash of weir, a broker restart or a rebalance never loses a
// record; the records of a batch that was stored but not committed when
// weir died are read again by whoever owns the partition next.
//
// A message value that is a JSON object is read as the JSON lines
// endpoint reads a line (ingest/jsonl), within its nesting and field
// bounds; any other value is the body. The topic, partition, offset,
// key and headers become attributes (kafka.topic, kafka.partition,
// kafka.offset, kafka.key, kafka.header.NAME). A value over
// Config.MaxMessageBytes or a JSON object past the bounds goes to the
// dead-letter stream with its text and the reason.
//
// Submit errors that mean backpressure or unavailability are retried
// with backoff, holding the batch (and the group's rebalance) until it
// is taken; a permanent refusal drops the batch with a counted error,
// since Kafka has no way to hand a message back.
//
// Start connects and starts the one goroutine that polls, submits and
// commits; Shutdown stops polling, finishes the batch in hand, commits
// it and leaves the group.
package kafka

// Package forward publishes a stream's stored records to a Kafka topic.
//
// A Forwarder is a built-in consumer group of internal/consume (named
// forward.<name>): it subscribes to the stream from the group's committed
// position, produces each batch to the topic with an idempotent franz-go
// producer that waits for every in-sync replica (acks=all), and commits
// the batch's offsets only once Kafka has acknowledged it. Delivery is
// at least once: after a crash or a failed produce the records past the
// last commit are produced again.
//
// It sits on the read side of the pipeline, after the processors: it
// reads what queries see, so a slow or unreachable Kafka only makes it
// lag (the group's lag metric) and never holds up ingest. The message
// format is documented in docs/forward.md.
package forward

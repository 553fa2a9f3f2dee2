// Package forward publishes a stream's stored records to a Kafka topic
// or a RabbitMQ exchange.
//
// A Forwarder is a built-in consumer group of internal/consume (named
// forward.<name>): it subscribes to the stream from the group's committed
// position, publishes each batch through a producer, and commits the
// batch's offsets only once the broker has acknowledged all of it. The
// Kafka producer (New) is an idempotent franz-go producer that waits for
// every in-sync replica (acks=all); the RabbitMQ producer (NewAMQP)
// publishes persistent, mandatory messages on a channel in confirm mode
// and waits for every confirm. Delivery is at least once: after a crash
// or a failed publish the records past the last commit are published
// again.
//
// It sits on the read side of the pipeline, after the processors: it
// reads what queries see, so a slow or unreachable broker only makes it
// lag (the group's lag metric) and never holds up ingest. The message
// format is documented in docs/forward.md.
package forward

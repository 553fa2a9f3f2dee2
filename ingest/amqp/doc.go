// Package amqp consumes records from a RabbitMQ queue (AMQP 0-9-1,
// github.com/rabbitmq/amqp091-go) into weir: a Source consumes one
// queue with a prefetch window (Qos), gathers deliveries into batches
// and hands them to the pipeline through ingest.Service.Submit, at
// Config.Level, in the source's tenant. Several sources, in one weir or
// in several, may consume one queue: RabbitMQ spreads the messages
// among them (competing consumers).
//
// A delivery is acknowledged only after its record reached the
// acknowledgement level. Deliveries the pipeline refuses for good (a
// record that fails validation and so cannot be stored, a value past the
// size or nesting bounds) are rejected without requeueing, which sends
// them to the queue's dead-letter exchange when it has one, with their
// bytes intact; deliveries that meet backpressure or an unavailable
// pipeline for longer than Config.RetryTimeout are requeued for any
// consumer to try again. A crash of weir leaves its deliveries
// unacknowledged, so RabbitMQ redelivers them: at-least-once.
//
// A message body that is a JSON object is read as the JSON lines
// endpoint reads a line (ingest/jsonl); any other body is the record's
// body. The exchange, routing key, message id, app id and headers become
// attributes (amqp.exchange, amqp.routing_key, amqp.message_id,
// amqp.app_id, amqp.header.NAME).
//
// Start starts the one goroutine that connects, consumes and submits;
// it reconnects with backoff when the connection or channel fails.
// Shutdown cancels the consumer, submits and acknowledges what was
// already delivered, and closes the connection.
package amqp

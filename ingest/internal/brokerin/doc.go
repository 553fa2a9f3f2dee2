// Package brokerin holds what weir's broker sources (ingest/kafka,
// ingest/amqp, ingest/sqs) share at the edge: turning a message into a
// record within size and nesting bounds, naming its stream, putting the
// source's tenant into the context its records are submitted with, and
// submitting with retries that tell backpressure from a permanent
// refusal. It keeps no state beyond the counters a source owns; every
// function is safe for concurrent use.
package brokerin

// Package sqs consumes records from an Amazon SQS queue (or one that
// speaks its API) into weir: a Source long-polls the queue with a few
// receivers, hands each received batch to the pipeline through
// ingest.Service.Submit, at Config.Level, in the source's tenant, and
// deletes the messages (DeleteMessageBatch) only once their records
// reached the acknowledgement level.
//
// While a batch is being submitted (backpressure is retried with
// backoff), its messages' visibility timeout is extended every half
// timeout (ChangeMessageVisibilityBatch), so no other consumer receives
// them meanwhile. A crash of weir leaves them undeleted: SQS delivers
// them again once the timeout passes (at-least-once). Messages the
// pipeline refuses for good are left undeleted and counted as rejected,
// so the queue's redrive policy moves them to its dead-letter queue
// after maxReceiveCount receives; a message body past the size or
// nesting bounds goes to weir's dead-letter stream with its text.
//
// A body that is a JSON object is read as the JSON lines endpoint reads
// a line (ingest/jsonl); any other body is the record's body. The message
// id, the queue's name and the message attributes become attributes
// (sqs.message_id, sqs.queue, sqs.attr.NAME); SentTimestamp is the
// record's time when the body gives none.
//
// Credentials, region and endpoint come from Config when set, else from
// the AWS SDK's standard chain (environment, shared files, instance
// role). Start starts Config.Receivers polling goroutines and one that
// reads the queue's depth for the Lag metric; Shutdown stops polling,
// finishes and deletes the batches in hand, and joins them all.
package sqs

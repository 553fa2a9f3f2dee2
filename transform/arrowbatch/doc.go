// Package arrowbatch is the second half of the transform stage, after the
// buffer: a Batcher normalises the records of one stream partition (a
// missing timestamp becomes the observed time; severity text and number
// fill each other in) and builds them into Arrow record batches of the
// log schema (logschema.Arrow, plus promoted attribute columns),
// partitioned by the hour of their timestamp. A batch is handed to the
// sink when it reaches a row count, a byte size or an age, whichever
// comes first.
//
// A Batcher serves one stream partition and is driven by one goroutine
// (the buffer's consumer for that partition); it needs no locks.
package arrowbatch

// Package tail fans the records leaving the transform stage out to live
// viewers. The pipeline calls Hub.Publish with each normalised batch;
// every Subscription filters them and queues what matches in a bounded
// queue. Tail is best effort by design: a viewer that reads too slowly
// loses records, counted and reported to it, and never slows ingest.
package tail

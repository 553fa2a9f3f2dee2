// Package tail fans the records leaving the transform stage out to live
// viewers. The pipeline calls Hub.Publish with each normalised batch;
// every Subscription filters them and queues what matches in a queue
// bounded per viewer and, across all viewers, by one byte budget. Tail
// is best effort by design: a viewer that reads too slowly loses
// records, counted and reported to it, and never slows ingest; one that
// stops reading is closed and frees its slot.
package tail

// Package sink is the last stage of weir's write path: it writes the Arrow
// record batches built by transform to Parquet files in the lake,
//
//	<Dir>/tenant=<t>/stream=<s>/date=YYYY-MM-DD/hour=HH/<ID>.parquet
//
// and publishes each file atomically (temporary hidden name, fsync,
// rename, directory fsync), so that readers such as the query layer's
// DuckDB never see a partial file. docs/format.md documents the layout and
// the file format.
//
// A Lake keeps one open file per Partition (tenant, stream, stream
// partition, hour; or date, for the day files that take the rows of
// hours long past, Config.DayFilesAfter) and publishes it by size, by age, on schema change,
// past MaxOpenFiles, and on Flush and Shutdown. An Observer (the buffer)
// learns which rows were staged into which file and when each file is
// durably published; only then may it forget those rows. At start-up the
// Lake deletes unpublished leftovers and reads the published files'
// footers, so that LastOffset tells the buffer where each stream partition
// continues.
//
// Each Write's batch is encoded once, with arrow-go's pqarrow writer, into
// a segment: a complete Parquet file beside the open file's final name,
// which the Observer (the query engine) links to make the rows queryable.
// A pool of encoders (Config.Encoders, one per core by default) encodes
// batches in parallel, also those of one stream partition, and commits
// them to their files in Write order (staging.go), so one busy stream
// uses every core while its rows keep their order.
// Publishing copies the segments' row groups into the published file byte
// for byte and writes one footer for them (parquet-go's thrift types
// decode and encode the footers); runs of small segments are merged
// first. Compaction (Lake.Compact) later rewrites published files sorted
// by service and time. bench/RESULTS.md ("Parquet encoding" and "Encode
// once, compaction, and the targets again") has the measurements behind
// these choices.
//
// Retention (Config.Retention, Lake.Retain, run by Start) removes files
// whose hour is older than their stream's period, and DeleteRows
// rewrites files without some of their records; both journal their
// decision first (.removed.json), so that a crash never brings removed
// records back (docs/lake.md).
//
// Memory: up to 2×Encoders batches are in flight (queued or being
// encoded), each holding its encoded pages (one row group, up to
// RowGroupRows rows) until its segment is written; an open file holds
// only the list of its segments, which live on disk (mostly in the page
// cache). Merging small segments decodes at most RowGroupRows rows at a
// time. MaxOpenFiles bounds the number of files.
package sink

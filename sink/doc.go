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
// partition, hour) and publishes it by size, by age, on schema change,
// past MaxOpenFiles, and on Flush and Shutdown. An Observer (the buffer)
// learns which rows were staged into which file and when each file is
// durably published; only then may it forget those rows. At start-up the
// Lake deletes unpublished leftovers and reads the published files'
// footers, so that LastOffset tells the buffer where each stream partition
// continues.
//
// Files are encoded with arrow-go's pqarrow writer directly from the Arrow
// batches; bench/RESULTS.md ("Parquet encoding") has the measurements that
// chose it over parquet-go.
//
// Memory: an open file holds its current row group in memory, as
// compressed pages plus one page in progress (up to 1 MiB) per column, so
// a busy file holds about RowGroupRows × 25 B (~3 MiB at the defaults,
// weir's log rows) plus up to ~15 MiB of pages in progress; files of
// quiet partitions hold only what they were given. MaxOpenFiles bounds
// the number of files.
package sink

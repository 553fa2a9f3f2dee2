// Package iceberg keeps an Apache Iceberg table per stream equal to the
// lake's files, so that Spark, Trino, Snowflake, DuckDB and any other
// Iceberg reader see a stream as a table without globbing directories.
//
// The tables reference weir's own Parquet files where the lake keeps
// them (sink.Lake.CommittedFiles, FileInfo.Location); nothing is copied.
// A Reconciler compares the lake's files with each table's current data
// files and commits the difference as one snapshot per table: an append
// for new files, an overwrite for files replaced (compaction, deletes)
// or removed (retention). It keeps no state of its own: after a crash
// the next pass computes the difference again, so a file is never
// listed twice nor lost. docs/lake.md ("Iceberg tables") documents the
// naming, the schema and how engines read the tables.
package iceberg

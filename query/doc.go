// Package query is weir's read side: an in-process DuckDB database that
// answers read-only SQL over every stream of the lake.
//
// The Engine keeps two sources behind one set of views. Published Parquet
// files are read in place; records the sink has staged into a file that is
// not yet published are written as small Parquet segments under the data
// directory's staging/ folder. When the sink publishes a file, the engine
// swaps its segments for the file in one view change, so a query sees
// every record exactly once, before and after a flush (docs/format.md).
//
// Views: "logs" covers every stream of the caller's tenant, with a
// "stream" column; each stream also gets a view of its own name. User
// SQL runs in a sandbox: only reading statements are accepted, and
// DuckDB may touch no file outside the data directory.
//
// This is the only weir package that links DuckDB (cgo).
package query

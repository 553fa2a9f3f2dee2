// Package query is weir's read side: an in-process DuckDB database that
// answers read-only SQL over every stream of the lake.
//
// The Engine keeps two sources behind one set of views. Published Parquet
// files are read in place; records the sink has staged into a file that is
// not yet published live in an in-memory table. When the sink publishes a
// file, the engine deletes that file's rows from the memory table and adds
// the file to the views in one transaction, so a query sees every record
// exactly once, before and after a flush.
//
// Views: "logs" covers every stream of the default tenant, with a "stream"
// column; each stream also gets a view of its own name. User SQL runs in a
// sandbox: only reading statements are accepted, and DuckDB may touch no
// file outside the data directory.
//
// This is the only weir package that links DuckDB (cgo).
package query

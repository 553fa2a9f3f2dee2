// Package bench is weir's load generator and reporter. Run drives a weir
// server (or the in-process Discard server, which acks without storing, to
// measure the ceiling of the client and the RPC layer) through the same
// Connect clients users use, and measures accepted throughput, ack latency,
// end-to-end freshness (from ack until a record is visible to SQL) and the
// server's CPU and memory.
//
// The package reads no flags or environment: cmd/weir's bench subcommand
// builds a Config and prints the Report.
package bench

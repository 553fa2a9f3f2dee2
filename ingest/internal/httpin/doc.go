// Package httpin holds what weir's plain-HTTP ingest protocols (Loki
// push, JSON lines, Splunk HEC) share at the edge: reading a request body
// within a bound that holds after decompression, naming a stream from a
// value a shipper sent, reading the acknowledgement level a request asks
// for, and flattening a JSON object into attributes within a nesting
// bound. It keeps no state; every function is safe for concurrent use.
package httpin

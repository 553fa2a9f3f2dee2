// Package esbulk is weir's Elasticsearch-compatible ingest endpoint: the
// _bulk API that Filebeat, Vector, Fluent Bit, rsyslog's omelasticsearch,
// Logstash and the Elasticsearch clients write to, and the few read-only
// endpoints they probe before they write (cluster info, license, health,
// templates and policies), answered so that they go on to send.
//
// A bulk request's NDJSON is decoded at the edge (Decode): each index or
// create action with its source document becomes a record.Record of the
// stream its index names (record.StreamNameFrom), the document flattened to
// dotted attributes with message, @timestamp, the level and the ECS
// resource fields (service.*, host.*, ...) mapped to the record's own
// fields. The records go down the path of every push through
// ingest.Service.Submit and are answered, per item and in request order,
// in the shape Elasticsearch answers: 201 for each stored (or
// dead-lettered) document, 400 for a line weir cannot read or an action
// it does not support, and 429 with Retry-After for the whole request
// when the buffer stays full, which the clients retry.
//
// Bounds: the body (after gzip) is at most Config.MaxBodyBytes, each
// line is checked for nesting before it is decoded, and the fields of a
// document are bounded (Config.MaxFields); docs/ingest-protocols.md
// gives the mapping and what each shipper needs.
package esbulk

// Package syslog receives syslog messages (RFC 5424 and RFC 3164) over
// TCP, optionally TLS, and UDP, and hands them to the pipeline through
// ingest.Service.Submit.
//
// A TCP stream is framed by octet counting ("LEN SP MSG", RFC 6587) or
// one message per line, picked by the stream's first byte (Reader); a
// UDP datagram is one message. Each message is read with transform/parse's
// syslog parsers: host and app-name become the resource's host.name and
// service.name, PRI's severity the record's severity, the rest
// attributes (syslog.facility, syslog.procid, syslog.msgid,
// sd.<id>.<param>). A message neither parser reads, or one cut to the
// size bound, goes to the dead-letter stream with its raw text.
//
// Records are batched per connection (Config.BatchRecords or
// BatchDelay) and submitted at Config.Level. A TCP connection whose
// batch meets backpressure is not read until the batch is taken, which
// slows its sender; UDP senders cannot be slowed, so UDP batches the
// pipeline cannot take are dropped and counted (Stats.UDPDropped).
//
// Server.Start binds the listeners; every goroutine it starts (accept
// loop, one per connection, the UDP reader and its submitter) is joined
// by Shutdown, which first reads what connected senders have sent.
package syslog

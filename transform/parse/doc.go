// Package parse turns text log lines into fields. It sits in front of the
// pipeline, where a line read from a file, socket or HTTP body becomes a
// record.Record: a Parser appends the fields it finds (record.KV, values as
// text) to the record's attributes, a TimeParser turns the "timestamp"
// field into Record.Timestamp and Severity turns a level into
// Record.SeverityNumber and SeverityText.
//
// Formats: JSON objects, logfmt, syslog (RFC 5424 and RFC 3164/BSD),
// Apache/Nginx common and combined access logs, regular expressions with
// named groups, and Auto, which picks one of them per line.
//
// Field names are shared across formats: free text goes to "message", the
// timestamp (raw, unconverted text) to "timestamp", the source host to
// "host", the program to "app" and its process id to "procid". Fields whose
// value the format marks as absent ("-" in syslog and access logs, null in
// JSON) are left out rather than appended empty.
//
// Fields are substrings of the input line wherever the value appears in it
// verbatim, so they keep the line's memory alive; text the parser has to
// build (unescaped strings, dotted JSON keys, "sd.<id>.<param>" keys) goes
// into one block allocated per line (more only when that text outgrows the
// line). Parsers never keep a reference to dst or line after Parse
// returns. A line is one line without its
// terminator; a trailing "\n" or "\r\n" is ignored.
//
// When one line yields the same key twice (duplicate JSON or logfmt keys,
// repeated syslog SD parameters, "a.b" next to {"a":{"b":…}}), the last
// value wins: only the last occurrence is kept.
package parse

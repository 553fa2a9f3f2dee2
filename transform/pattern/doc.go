// Package pattern mines log templates: it gives each message the id of
// its cluster and the cluster's template, the message with its variable
// parts (numbers, ids, addresses, paths, and words seen to vary) replaced
// by <*>. The transform stage stores both with every record, and the
// dashboard's "top errors" view groups by the id.
//
// A Miner learns online, in one pass, after the Drain algorithm: see
// Miner. A hand-written classifier masks the common variables before
// clustering, without regular expressions; Config.Masks adds regular
// expressions for what a particular log source needs beyond that.
//
// Ids are stable: a cluster keeps its id while its template generalises,
// Snapshot and Restore carry ids across restarts, and independent Miners
// derive the same id for a cluster started by the same masked message.
//
// Everything is bounded: the clusters kept (least recently matched
// forgotten first), the clusters compared per message, and the bytes and
// tokens of a message that count. loghub_test.go measures grouping
// accuracy on the Loghub samples in testdata/loghub.
package pattern

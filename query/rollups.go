package query

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Rollups (docs/format.md, "Rollups" and "SQL views"): compacted files
// carry the counts of their rows by minute, service, severity and
// pattern id, and their most frequent bodies, in their footer
// (sink.FileInfo.Rollup). Two views answer from those for the files that
// have them and scan only the others, so a dashboard's counts cost time
// in the minutes and files of the lake rather than in its rows:
//
//   - log_counts: stream, minute, date, service_name, severity_number,
//     severity_text, pattern_id, n. sum(n) over any grouping of these
//     columns equals count(*) over the same grouping of the logs view,
//     with minute the start of the record's minute, date its partition's
//     date (the UTC date of minute) and pattern_id its
//     attributes['pattern.id']. A condition on date lets the part that
//     scans files skip other dates' directories, as it does in logs.
//   - log_messages: stream, body, n. For files without a rollup n counts
//     every body; for those with one, it counts each file's
//     sink.RollupTopBodies most frequent bodies only.
//
// Parsing footers at every query would cost more than the counts save,
// so the catalog loads each listed file's rollup once into two tables
// (weir_rollups.counts and weir_rollups.messages, keyed by file path) in
// the same transaction as the view change that lists the file, and
// deletes them in the one that drops it: a query sees the rollups of
// exactly the files its views list.
//
// The rows without a rollup (files not compacted yet, staged segments)
// are one view of the whole tenant, weir_rollups.hot, a single scan like
// logs' that lists every such file of every stream; log_counts and
// log_messages are the counted rows of that view and the rollup tables.
// Their own text never changes: a change recreates the hot view with
// the stream views and logs, and a new stream costs no more than a new
// file. (Views per stream, unioned, made every new stream rebind the
// union of all of them, 0.7 s at 1,024 streams, and a query of
// log_counts bind it again: bench/RESULTS.md, "Many streams, and times
// spread over years".)

const (
	countsView    = "log_counts"
	messagesView  = "log_messages"
	rollupSchema  = "weir_rollups"
	countsTable   = "memory." + rollupSchema + ".counts"
	messagesTable = "memory." + rollupSchema + ".messages"
	hotView       = "memory." + rollupSchema + ".hot"
)

// rollupSchemaStmts create the rollup tables, the hot view (empty until
// the first change) and log_counts and log_messages over them.
var rollupSchemaStmts = []string{
	"CREATE SCHEMA IF NOT EXISTS memory." + rollupSchema,
	"CREATE TABLE IF NOT EXISTS " + countsTable + ` (file VARCHAR, "stream" VARCHAR, "minute" TIMESTAMPTZ, "date" DATE, service_name VARCHAR, severity_number INTEGER, severity_text VARCHAR, pattern_id VARCHAR, n BIGINT)`,
	"CREATE TABLE IF NOT EXISTS " + messagesTable + ` (file VARCHAR, "stream" VARCHAR, body VARCHAR, n BIGINT)`,
	"CREATE OR REPLACE VIEW " + hotView + " AS " + emptyView,
	"CREATE OR REPLACE VIEW " + countsView + ` AS SELECT "stream", to_timestamp((epoch_ms("timestamp") // 60000) * 60) AS "minute", "date", service_name, severity_number, severity_text, attributes['pattern.id'] AS pattern_id, count(*) AS n FROM ` + hotView + ` GROUP BY ALL
		UNION ALL SELECT "stream", "minute", "date", service_name, severity_number, severity_text, pattern_id, n FROM ` + countsTable,
	"CREATE OR REPLACE VIEW " + messagesView + ` AS SELECT "stream", body, count(*) AS n FROM ` + hotView + ` GROUP BY ALL
		UNION ALL SELECT "stream", body, n FROM ` + messagesTable,
}

// rollupJSONType is the part of the weir.rollup footer value
// (sink/rollup.go, docs/format.md "Rollups") the tables take, of both
// versions: version 1's counts, an object each, and version 2's parallel
// arrays. A document of one version has none of the other's fields.
const rollupJSONType = `{"counts": [{"m": "BIGINT", "s": "VARCHAR", "sn": "INTEGER", "st": "VARCHAR", "p": "VARCHAR", "n": "BIGINT"}], ` +
	`"m0": "BIGINT", "m": ["BIGINT"], "s": ["INTEGER"], "sn": ["INTEGER"], "st": ["INTEGER"], "p": ["INTEGER"], "n": ["BIGINT"], ` +
	`"services": ["VARCHAR"], "severity_texts": ["VARCHAR"], "patterns": ["VARCHAR"], "bodies": [{"b": "VARCHAR", "n": "BIGINT"}]}`

// rollupInsertStmts returns the statements that add the rollups of the
// given files (by stream) to the rollup tables: one INSERT per table.
// Counts come from version 1's objects, unnested, and from version 2's
// arrays, unnested side by side (DuckDB unnests the lists of one SELECT
// together, and an absent "p" gives NULL pattern ids) with their
// dictionaries indexed from 1; a document of one version yields no rows
// in the other's SELECT. Each SELECT parses the footers as it reads
// them, so that only a file's rows are held at once (the tenant's
// memory_limit bounds these statements).
//
// One INSERT per table, because DuckDB 1.5.5 loses the rows of an
// INSERT of more than a row group (122,880 rows) that follows, in the
// same transaction, an INSERT into the same table that read footers and
// added none: the commit succeeds and the rows are gone
// (bench/RESULTS.md, "Rollups in columns"; TestRollupLoadOneInsert).
func rollupInsertStmts(files map[string][]string) []string {
	streams := slices.Sorted(maps.Keys(files))
	var counts, bodies []string
	for _, stream := range streams {
		docs := fmt.Sprintf("SELECT file_name, from_json(decode(value), %s) AS d FROM system.main.parquet_kv_metadata([%s]) WHERE decode(key) = 'weir.rollup'",
			quoteString(rollupJSONType), quoteList(files[stream]))
		qs := quoteString(stream)
		counts = append(counts,
			"SELECT file_name, "+qs+", to_timestamp(r.m / 1000) AS t, CAST(t AS DATE), r.s, r.sn, r.st, r.p, r.n FROM (SELECT file_name, unnest(d.counts) AS r FROM ("+docs+"))",
			"SELECT file_name, "+qs+", to_timestamp((m0 + m) * 60) AS t, CAST(t AS DATE), sv[s + 1], sn, stv[st + 1], pv[p + 1], n "+
				"FROM (SELECT file_name, d.m0 AS m0, d.services AS sv, d.severity_texts AS stv, d.patterns AS pv, "+
				"unnest(d.m) AS m, unnest(d.s) AS s, unnest(d.sn) AS sn, unnest(d.st) AS st, unnest(d.p) AS p, unnest(d.n) AS n FROM ("+docs+"))")
		bodies = append(bodies, "SELECT file_name, "+qs+", r.b, r.n FROM (SELECT file_name, unnest(d.bodies) AS r FROM ("+docs+"))")
	}
	return []string{
		"INSERT INTO " + countsTable + " " + strings.Join(counts, " UNION ALL "),
		"INSERT INTO " + messagesTable + " " + strings.Join(bodies, " UNION ALL "),
	}
}

// rollupLoad is a change to the rollup tables: the files whose rollups
// a view change loads and drops.
type rollupLoad struct {
	add  map[string]string // path to stream
	drop map[string]bool
	defs map[string]string // the views it recreates: name to SELECT
}

// rollupLoadStmtsLocked returns the statements that load the rollups
// of the given streams' newly listed files and drop those of files they
// no longer list, which it records in c.load for commitLoadLocked: at
// most one DELETE and one INSERT per table (rollupInsertStmts). mu and
// ddl must be held.
func (c *catalog) rollupLoadStmtsLocked(streams []string) []string {
	add := map[string][]string{} // stream to files
	var drop []string
	for _, stream := range streams {
		var covered []string
		for _, p := range c.pathsLocked(stream) {
			if c.rolled[p] {
				covered = append(covered, p)
				if c.loaded[p] == "" {
					add[stream] = append(add[stream], p)
				}
			}
		}
		for p, s := range c.loaded {
			if s == stream && !slices.Contains(covered, p) {
				drop = append(drop, p)
			}
		}
		sort.Strings(add[stream])
	}
	sort.Strings(drop)
	var stmts []string
	if len(drop) > 0 {
		list := quoteList(drop)
		stmts = append(stmts,
			"DELETE FROM "+countsTable+" WHERE file IN ("+list+")",
			"DELETE FROM "+messagesTable+" WHERE file IN ("+list+")")
		if c.load.drop == nil {
			c.load.drop = map[string]bool{}
		}
		for _, p := range drop {
			c.load.drop[p] = true
		}
	}
	if len(add) > 0 {
		stmts = append(stmts, rollupInsertStmts(add)...)
		if c.load.add == nil {
			c.load.add = map[string]string{}
		}
		for stream, files := range add {
			for _, p := range files {
				c.load.add[p] = stream
			}
		}
	}
	return stmts
}

// hotViewStmtsLocked appends to stmts the DDL that makes the hot view
// list every file and staged segment of the tenant whose rollup the
// rollup tables will not hold once the recorded change (c.load) commits,
// unless it lists those already. Every listed row is then counted once,
// by the tables or by the view, even for a stream whose rollups this
// change does not load. mu and ddl must be held.
func (c *catalog) hotViewStmtsLocked(stmts []string) []string {
	names, wide := c.logsStreamsLocked(nil)
	var hot []string
	for _, s := range names {
		for _, p := range c.pathsLocked(s) {
			_, adding := c.load.add[p]
			if !adding && (c.loaded[p] == "" || c.load.drop[p]) {
				hot = append(hot, p)
			}
		}
	}
	return c.defineLocked(stmts, hotView, viewQuery(hot, wide, c.schemaFiles[allStreams].path))
}

// defineLocked appends to stmts the DDL that makes view name select def,
// unless the last committed change left it so, and records the
// definition in c.load. mu must be held.
func (c *catalog) defineLocked(stmts []string, name, def string) []string {
	if c.viewDefs[name] == def {
		return stmts
	}
	if c.load.defs == nil {
		c.load.defs = map[string]string{}
	}
	c.load.defs[name] = def
	return append(stmts, "CREATE OR REPLACE VIEW "+name+" AS "+def)
}

// commitLoadLocked applies the recorded change to the rollup tables to
// c.loaded once its statements committed (ok), and forgets it either
// way. mu must be held.
func (c *catalog) commitLoadLocked(ok bool) {
	if ok {
		for p := range c.load.drop {
			delete(c.loaded, p)
		}
		for p, s := range c.load.add {
			c.loaded[p] = s
		}
		for name, def := range c.load.defs {
			c.viewDefs[name] = def
		}
	}
	c.load = rollupLoad{}
}

func quoteList(ss []string) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteString(s))
	}
	return b.String()
}

// readsAllStreams reports whether a table of that name reads every
// stream of the tenant: the logs view and the rollup views.
func readsAllStreams(name string) bool {
	for _, v := range reservedViews {
		if strings.EqualFold(name, v) {
			return true
		}
	}
	return false
}

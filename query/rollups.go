package query

import (
	"fmt"
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
// exactly the files its views list. Each stream has its views in two
// schemas of their own (weir_counts and weir_messages, named for the
// stream); the tenant-wide views are their union, rebuilt with the logs
// view.
//
// A stream's rollup views do not restate its files. Until some file of
// the stream has a rollup, they count the rows of the stream's own view;
// after, the rows of its hot view (schema weir_hot, named for the
// stream), which lists the files without a rollup. Their text therefore
// changes only when the stream gains its first rollup or loses its last,
// and a staged segment or a publish recreates one view (the stream's,
// or the stream's and its hot view) rather than three: each CREATE VIEW
// makes DuckDB bind the query, listing and opening every file it names.

const (
	countsView     = "log_counts"
	messagesView   = "log_messages"
	countsSchema   = "weir_counts"
	messagesSchema = "weir_messages"
	hotSchema      = "weir_hot"
	rollupSchema   = "weir_rollups"
	countsTable    = "memory." + rollupSchema + ".counts"
	messagesTable  = "memory." + rollupSchema + ".messages"
)

// rollupSchemaStmts create the schemas of the per-stream rollup views
// and the rollup tables.
var rollupSchemaStmts = []string{
	"CREATE SCHEMA IF NOT EXISTS memory." + countsSchema,
	"CREATE SCHEMA IF NOT EXISTS memory." + messagesSchema,
	"CREATE SCHEMA IF NOT EXISTS memory." + hotSchema,
	"CREATE SCHEMA IF NOT EXISTS memory." + rollupSchema,
	"CREATE TABLE IF NOT EXISTS " + countsTable + ` (file VARCHAR, "stream" VARCHAR, "minute" TIMESTAMPTZ, "date" DATE, service_name VARCHAR, severity_number INTEGER, severity_text VARCHAR, pattern_id VARCHAR, n BIGINT)`,
	"CREATE TABLE IF NOT EXISTS " + messagesTable + ` (file VARCHAR, "stream" VARCHAR, body VARCHAR, n BIGINT)`,
}

// rollupJSONType is the part of the weir.rollup footer value
// (sink/rollup.go) the tables take.
const rollupJSONType = `{"counts": [{"m": "BIGINT", "s": "VARCHAR", "sn": "INTEGER", "st": "VARCHAR", "p": "VARCHAR", "n": "BIGINT"}], "bodies": [{"b": "VARCHAR", "n": "BIGINT"}]}`

const (
	emptyCounts   = `SELECT NULL::VARCHAR AS "stream", NULL::TIMESTAMPTZ AS "minute", NULL::DATE AS "date", NULL::VARCHAR AS service_name, NULL::INTEGER AS severity_number, NULL::VARCHAR AS severity_text, NULL::VARCHAR AS pattern_id, NULL::BIGINT AS n WHERE false`
	emptyMessages = `SELECT NULL::VARCHAR AS "stream", NULL::VARCHAR AS body, NULL::BIGINT AS n WHERE false`
)

// rollupLoad is a change to the rollup tables: the files whose rollups
// a view change loads and drops.
type rollupLoad struct {
	add  map[string]string // path to stream
	drop []string
	defs map[string]string // the rollup and hot views it recreates: name to SELECT
}

// rollupViewStmtsLocked returns the DDL of stream's log_counts and
// log_messages parts, preceded by the statements that load the rollups
// of its newly listed files and drop those of files it no longer lists,
// which it records in c.load for commitLoadLocked. Views whose text has
// not changed since the last committed change are left as they are. mu
// and ddl must be held.
func (c *catalog) rollupViewStmtsLocked(stream string) []string {
	var covered, hot, add []string
	for _, p := range c.pathsLocked(stream) {
		if c.rolled[p] {
			covered = append(covered, p)
			if c.loaded[p] == "" {
				add = append(add, p)
			}
		} else {
			hot = append(hot, p)
		}
	}
	var drop []string
	for p, s := range c.loaded {
		if s == stream && !slices.Contains(covered, p) {
			drop = append(drop, p)
		}
	}
	sort.Strings(add)
	sort.Strings(drop)
	if c.load.add == nil {
		c.load.add = map[string]string{}
	}
	var stmts []string
	if len(drop) > 0 {
		list := quoteList(drop)
		stmts = append(stmts,
			"DELETE FROM "+countsTable+" WHERE file IN ("+list+")",
			"DELETE FROM "+messagesTable+" WHERE file IN ("+list+")")
		c.load.drop = append(c.load.drop, drop...)
	}
	if len(add) > 0 {
		docs := fmt.Sprintf("SELECT file_name, from_json(decode(value), %s) AS d FROM system.main.parquet_kv_metadata([%s]) WHERE decode(key) = 'weir.rollup'",
			quoteString(rollupJSONType), quoteList(add))
		qs := quoteString(stream)
		stmts = append(stmts,
			"INSERT INTO "+countsTable+" SELECT file_name, "+qs+", to_timestamp(r.m / 1000) AS m, CAST(m AS DATE), r.s, r.sn, r.st, r.p, r.n FROM (SELECT file_name, unnest(d.counts) AS r FROM ("+docs+"))",
			"INSERT INTO "+messagesTable+" SELECT file_name, "+qs+", r.b, r.n FROM (SELECT file_name, unnest(d.bodies) AS r FROM ("+docs+"))")
		for _, p := range add {
			c.load.add[p] = stream
		}
	}
	// The rows without a rollup: the stream's view (empty or not) while
	// it lists no covered file, else the hot view. A stream named like a
	// reserved view has no view of its own and reads its hot view.
	hotName := fmt.Sprintf("memory.%s.%s", hotSchema, quoteIdent(stream))
	hotRows, hotDef := hotName, emptyView
	if len(covered) == 0 && !slices.Contains(reservedViews, stream) {
		hotRows = viewName(stream)
	} else if len(hot) > 0 {
		hotDef = c.scanLocked(stream, hot)
	}
	// An unused hot view is emptied rather than left naming files that
	// may be gone.
	if hotRows == hotName || c.rollupDefs[hotName] != "" {
		stmts = c.defineLocked(stmts, hotName, hotDef)
	}
	counts, messages := rollupQueries(stream, len(covered) > 0, hotRows)
	stmts = c.defineLocked(stmts, fmt.Sprintf("memory.%s.%s", countsSchema, quoteIdent(stream)), counts)
	return c.defineLocked(stmts, fmt.Sprintf("memory.%s.%s", messagesSchema, quoteIdent(stream)), messages)
}

// defineLocked appends to stmts the DDL that makes view name select def,
// unless the last committed change left it so, and records the
// definition in c.load. mu must be held.
func (c *catalog) defineLocked(stmts []string, name, def string) []string {
	if c.rollupDefs[name] == def {
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
		for _, p := range c.load.drop {
			delete(c.loaded, p)
		}
		for p, s := range c.load.add {
			c.loaded[p] = s
		}
		for name, def := range c.load.defs {
			c.rollupDefs[name] = def
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

// rollupQueries returns the SELECTs behind a stream's log_counts and
// log_messages parts: the loaded rollups of its covered files, if it
// has any, and the rows of the view hotRows (files and staged segments
// without a rollup), counted.
func rollupQueries(stream string, covered bool, hotRows string) (counts, messages string) {
	qs := quoteString(stream)
	cparts := []string{`SELECT to_timestamp((epoch_ms("timestamp") // 60000) * 60) AS "minute", "date", service_name, severity_number, severity_text, attributes['pattern.id'] AS pattern_id, count(*) AS n FROM ` + hotRows + " GROUP BY ALL"}
	mparts := []string{"SELECT body, count(*) AS n FROM " + hotRows + " GROUP BY ALL"}
	if covered {
		cparts = append(cparts, `SELECT "minute", "date", service_name, severity_number, severity_text, pattern_id, n FROM `+countsTable+` WHERE "stream" = `+qs)
		mparts = append(mparts, `SELECT body, n FROM `+messagesTable+` WHERE "stream" = `+qs)
	}
	counts = `SELECT ` + qs + ` AS "stream", * FROM (` + strings.Join(cparts, " UNION ALL ") + ")"
	messages = `SELECT ` + qs + ` AS "stream", * FROM (` + strings.Join(mparts, " UNION ALL ") + ")"
	return counts, messages
}

// rollupUnionsLocked returns the SELECTs behind the tenant-wide
// log_counts and log_messages views. mu must be held.
func (c *catalog) rollupUnionsLocked() (counts, messages string) {
	names := make([]string, 0, len(c.streams))
	for s := range c.streams {
		names = append(names, s)
	}
	if len(names) == 0 {
		return emptyCounts, emptyMessages
	}
	sort.Strings(names)
	var cp, mp []string
	for _, s := range names {
		cp = append(cp, fmt.Sprintf("SELECT * FROM memory.%s.%s", countsSchema, quoteIdent(s)))
		mp = append(mp, fmt.Sprintf("SELECT * FROM memory.%s.%s", messagesSchema, quoteIdent(s)))
	}
	return strings.Join(cp, " UNION ALL "), strings.Join(mp, " UNION ALL ")
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

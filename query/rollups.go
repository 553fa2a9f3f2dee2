package query

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weirlabs/weir/sink"
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
// (weir_rollups.counts and weir_rollups.messages, keyed by a file id) in
// the same transaction as the view change that lists the file, and
// deletes them in the one that drops it: a query sees the rollups of
// exactly the files its views list. The tables live in the tenant's
// compressed in-memory database (catalogDB), and a change that altered
// them is followed by a checkpoint, which compresses what it added: a
// count takes ~2.6 bytes there against ~80 uncompressed, 60 days of 7
// services 3.4 MB against 101 MB (bench/RESULTS.md, "Rollups
// compressed"). DuckDB holds a transaction's new rows uncompressed until
// that checkpoint, so one change loads at most rollupLoadBudget counts;
// files it leaves for the next are counted by the hot view until then.
//
// The rows without a rollup (files not compacted yet, staged segments,
// and files whose rollups wait for a later change) are one view of the
// whole tenant, weir_rollups.hot, a single scan like logs' that lists
// every such file of every stream; log_counts and log_messages are the
// counted rows of that view and the rollup tables. Their own text never
// changes: a change recreates the hot view with the stream views and
// logs, and a new stream costs no more than a new file. (Views per
// stream, unioned, made every new stream rebind the union of all of
// them, 0.7 s at 1,024 streams, and a query of log_counts bind it again:
// bench/RESULTS.md, "Many streams, and times spread over years".)
const (
	countsView    = "log_counts"
	messagesView  = "log_messages"
	rollupSchema  = "weir_rollups"
	countsTable   = catalogDB + "." + rollupSchema + ".counts"
	messagesTable = catalogDB + "." + rollupSchema + ".messages"
	hotView       = catalogDB + "." + rollupSchema + ".hot"
)

// rollupLoadBudget bounds the counts one view change loads, by
// rollupCost: ~40 MB uncompressed until the checkpoint that follows the
// change, within the default memory_limit (Config.MemoryLimit) however
// many rollups a start finds.
const rollupLoadBudget = 1 << 19

// rollupCost is what loading f's rollup costs, in counts: its
// RollupCounts, or its rows when those are unknown (they bound them); 0
// for a file without a rollup.
func rollupCost(f sink.FileInfo) int64 {
	switch {
	case !f.Rollup:
		return 0
	case f.RollupCounts > 0:
		return int64(f.RollupCounts)
	default:
		return max(f.Rows, 1)
	}
}

// rollupSchemaStmts create the rollup tables, the hot view (empty until
// the first change) and log_counts and log_messages over them.
var rollupSchemaStmts = []string{
	"CREATE SCHEMA IF NOT EXISTS " + catalogDB + "." + rollupSchema,
	"CREATE TABLE IF NOT EXISTS " + countsTable + ` (file_id BIGINT, "stream" VARCHAR, "minute" TIMESTAMPTZ, "date" DATE, service_name VARCHAR, severity_number INTEGER, severity_text VARCHAR, pattern_id VARCHAR, n BIGINT)`,
	"CREATE TABLE IF NOT EXISTS " + messagesTable + ` (file_id BIGINT, "stream" VARCHAR, body VARCHAR, n BIGINT)`,
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
// given files (by stream) to the rollup tables, each file's rows under
// its id in ids: one INSERT per table.
// Counts come from version 1's objects, unnested, and from version 2's
// arrays, unnested side by side (DuckDB unnests the lists of one SELECT
// together, and an absent "p" gives NULL pattern ids) with their
// dictionaries indexed from 1; a document of one version yields no rows
// in the other's SELECT. Each SELECT parses the footers as it reads
// them, so that only a file's rows are held at once (the tenant's
// memory_limit bounds these statements): a file's id comes from a CASE
// over its path, as a join with the ids would have DuckDB hold every
// parsed footer for its hash table (the 60-day lake failed at
// memory_limit that way).
//
// One INSERT per table, because DuckDB 1.5.5 loses the rows of an
// INSERT of more than a row group (122,880 rows) that follows, in the
// same transaction, an INSERT into the same table that read footers and
// added none: the commit succeeds and the rows are gone
// (bench/RESULTS.md, "Rollups in columns"; TestRollupLoadOneInsert).
func rollupInsertStmts(files map[string][]string, ids map[string]int64) []string {
	streams := slices.Sorted(maps.Keys(files))
	var counts, bodies []string
	for _, stream := range streams {
		var id strings.Builder
		id.WriteString("CASE file_name")
		for _, p := range files[stream] {
			fmt.Fprintf(&id, " WHEN %s THEN %d", quoteString(p), ids[p])
		}
		id.WriteString(" END")
		docs := fmt.Sprintf("SELECT %s AS file_id, from_json(decode(value), %s) AS d FROM system.main.parquet_kv_metadata([%s]) WHERE decode(key) = 'weir.rollup'",
			id.String(), quoteString(rollupJSONType), quoteList(files[stream]))
		qs := quoteString(stream)
		counts = append(counts,
			"SELECT file_id, "+qs+", to_timestamp(r.m / 1000) AS t, CAST(t AS DATE), r.s, r.sn, r.st, r.p, r.n FROM (SELECT file_id, unnest(d.counts) AS r FROM ("+docs+"))",
			"SELECT file_id, "+qs+", to_timestamp((m0 + m) * 60) AS t, CAST(t AS DATE), sv[s + 1], sn, stv[st + 1], pv[p + 1], n "+
				"FROM (SELECT file_id, d.m0 AS m0, d.services AS sv, d.severity_texts AS stv, d.patterns AS pv, "+
				"unnest(d.m) AS m, unnest(d.s) AS s, unnest(d.sn) AS sn, unnest(d.st) AS st, unnest(d.p) AS p, unnest(d.n) AS n FROM ("+docs+"))")
		bodies = append(bodies, "SELECT file_id, "+qs+", r.b, r.n FROM (SELECT file_id, unnest(d.bodies) AS r FROM ("+docs+"))")
	}
	return []string{
		"INSERT INTO " + countsTable + " " + strings.Join(counts, " UNION ALL "),
		"INSERT INTO " + messagesTable + " " + strings.Join(bodies, " UNION ALL "),
	}
}

// rollupLoad is a change to the rollup tables: the files whose rollups
// a view change loads and drops.
type rollupLoad struct {
	add  map[string]loadedRollup // by path
	drop map[string]bool
	defs map[string]string // the views it recreates: name to SELECT
	// later are the streams with rollups left for a later change
	// (rollupLoadBudget).
	later []string
}

// loadedRollup is a file whose rollup the tables hold, or will once the
// change that loads it commits.
type loadedRollup struct {
	stream string
	id     int64 // file_id in the tables: paths are long, and the same in every row of the file
}

// altersTables reports whether the change adds or drops rollups.
func (l *rollupLoad) altersTables() bool { return len(l.add) > 0 || len(l.drop) > 0 }

// rollupLoadStmtsLocked returns the statements that load the rollups
// of the given streams' newly listed files, newest first and up to
// c.loadBudget counts (at least one file; none while a checkpoint is
// owed, see compress, or in addFiles' change; a suspect only alone, see
// suspectLoadLocked), and drop those of files they no longer list, which
// it records in c.load for commitLoadLocked: at most one DELETE and one
// INSERT per table (rollupInsertStmts). mu and ddl must be held.
func (c *catalog) rollupLoadStmtsLocked(streams []string) []string {
	add := map[string][]string{} // stream to files
	var drop []string
	listed := map[string]bool{}
	changing := make(map[string]bool, len(streams))
	budget := c.loadBudget
	if c.compressDue.Load() || c.deferLoads {
		budget = 0
	}
	// A change loads either no suspects or suspects only, at most as many
	// as the smallest room of those it takes (suspectLoadLocked).
	var taken, suspects int
	room := math.MaxInt
	for _, stream := range streams {
		changing[stream] = true
		var pending []string
		for _, p := range c.pathsLocked(stream) {
			if c.rolled[p] > 0 {
				listed[p] = true
				if _, ok := c.loaded[p]; !ok {
					pending = append(pending, p)
				}
			}
		}
		slices.SortFunc(pending, newestFirst)
		for _, p := range pending {
			cost := c.rolled[p]
			n, suspect := c.suspect[p]
			fits := cost <= budget || budget == c.loadBudget
			if suspect {
				fits = fits && taken == suspects && suspects < min(room, n)
			} else {
				fits = fits && suspects == 0
			}
			if fits {
				add[stream] = append(add[stream], p)
				budget -= min(cost, budget)
				taken++
				if suspect {
					suspects++
					room = min(room, n)
				}
				continue
			}
			c.load.later = append(c.load.later, stream)
			break
		}
		sort.Strings(add[stream])
	}
	for p, l := range c.loaded {
		if !listed[p] && changing[l.stream] {
			drop = append(drop, p)
		}
	}
	sort.Strings(drop)
	var stmts []string
	if len(drop) > 0 {
		ids := make([]string, len(drop))
		for i, p := range drop {
			ids[i] = strconv.FormatInt(c.loaded[p].id, 10)
		}
		list := strings.Join(ids, ", ")
		stmts = append(stmts,
			"DELETE FROM "+countsTable+" WHERE file_id IN ("+list+")",
			"DELETE FROM "+messagesTable+" WHERE file_id IN ("+list+")")
		if c.load.drop == nil {
			c.load.drop = map[string]bool{}
		}
		for _, p := range drop {
			c.load.drop[p] = true
		}
	}
	if len(add) > 0 {
		if c.load.add == nil {
			c.load.add = map[string]loadedRollup{}
		}
		ids := map[string]int64{}
		for _, stream := range slices.Sorted(maps.Keys(add)) {
			for _, p := range add[stream] {
				c.lastFileID++
				ids[p] = c.lastFileID
				c.load.add[p] = loadedRollup{stream: stream, id: c.lastFileID}
			}
		}
		stmts = append(stmts, rollupInsertStmts(add, ids)...)
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
			if _, loaded := c.loaded[p]; !adding && (!loaded || c.load.drop[p]) {
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
// way; the rollups of a change that failed are suspects
// (suspectLoadLocked). Streams with rollups left to load are kept in
// c.later, for the view loop to load once the tables are compressed
// (resumeLoadsLocked); Sync waits for them. mu must be held.
func (c *catalog) commitLoadLocked(ok bool) {
	if !ok && len(c.load.add) > 0 {
		c.suspectLoadLocked()
	}
	if ok {
		for p := range c.load.add {
			delete(c.suspect, p)
			delete(c.gaveUp, p)
		}
		for _, s := range c.load.later {
			if !slices.Contains(c.later, s) {
				c.later = append(c.later, s)
			}
		}
		for p := range c.load.drop {
			delete(c.loaded, p)
		}
		for p, l := range c.load.add {
			c.loaded[p] = l
		}
		for name, def := range c.load.defs {
			c.viewDefs[name] = def
		}
	}
	c.load = rollupLoad{}
}

// suspectLoadLocked records that the change loading c.load.add failed.
// Its files become suspects that a change loads with at most half as
// many files as the failed one (rounded up), so that a file whose rollup
// does not load (a footer that does not parse, say) is found in as many
// changes as halvings, while neither the views nor the others' rollups
// wait for it. A suspect that fails alone is counted from its rows
// (its cost set to 0) until retryRollupsLocked tries it again. mu must
// be held.
func (c *catalog) suspectLoadLocked() {
	n := len(c.load.add)
	for p, l := range c.load.add {
		if _, ok := c.suspect[p]; !ok || n > 1 {
			room := (n + 1) / 2
			if r, ok := c.suspect[p]; ok {
				room = min(room, r)
			}
			c.suspect[p] = room
			continue
		}
		delete(c.suspect, p)
		g := c.gaveUp[p]
		g.stream, g.cost = l.stream, c.rolled[p]
		g.wait = min(max(2*g.wait, c.rollupRetry), rollupRetryMax)
		g.at = time.Now().Add(g.wait)
		c.gaveUp[p] = g
		c.rolled[p] = 0
		c.log.Warn("query: a file's rollup cannot be loaded; its rows are counted from the file until it is tried again",
			"path", p, "retry_in", g.wait)
	}
}

// gaveUpRollup is a file whose rollup failed to load alone: its stream,
// its rollupCost, and when it is tried again after how long a wait.
type gaveUpRollup struct {
	stream string
	cost   int64
	at     time.Time
	wait   time.Duration
}

// The wait before a rollup that failed alone is tried again: doubling
// from rollupRetryMin (catalog.rollupRetry) at each failure, up to
// rollupRetryMax. A failure can pass (a query held the memory at that
// moment) and the file's rows are counted meanwhile, only more slowly.
const (
	rollupRetryMin = time.Minute
	rollupRetryMax = time.Hour
)

// nextRollupRetryLocked returns when the next given-up rollup is due to
// be tried again, if any. mu must be held.
func (c *catalog) nextRollupRetryLocked() (time.Time, bool) {
	var next time.Time
	for p, g := range c.gaveUp {
		if c.rolled[p] > 0 {
			continue // being tried again
		}
		if next.IsZero() || g.at.Before(next) {
			next = g.at
		}
	}
	return next, !next.IsZero()
}

// retryRollupsLocked gives the given-up rollups due at now their cost
// back, as suspects loaded alone, and marks their streams changed; it
// forgets suspects and given-up files no longer listed. mu must be held.
func (c *catalog) retryRollupsLocked(now time.Time) {
	for p, g := range c.gaveUp {
		if _, ok := c.rolled[p]; !ok {
			delete(c.gaveUp, p)
			continue
		}
		if g.at.After(now) || c.rolled[p] > 0 {
			continue
		}
		c.rolled[p] = g.cost
		c.suspect[p] = 1
		c.changedLocked(g.stream)
	}
	for p := range c.suspect {
		if _, ok := c.rolled[p]; !ok {
			delete(c.suspect, p)
		}
	}
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

package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Export reads one stream's records between two times, optionally
// filtered by a SQL predicate, hour by hour: ExportPlan counts the rows
// of each hour, ExportHour writes one hour's rows. Both run as user
// queries (a query slot, the tenant's sandboxed database, the memory
// limit); the predicate passes the same sandbox as /v1/sql and must be
// a predicate and nothing else. An hour is bounded by the engine's
// MaxTimeout but not by MaxRows: an export is meant to read everything
// it selects, and its rows stream through the ResultWriter.

// ExportSpec selects the records to export.
type ExportSpec struct {
	// Tenant owns the stream; "" is the default tenant.
	Tenant string
	Stream string
	// From and To bound the records' timestamps: From <= timestamp < To.
	From, To time.Time
	// Where is a SQL predicate over the stream's columns, such as
	// "severity_number >= 17 AND body LIKE '%timeout%'"; "" selects
	// every record.
	Where string
}

// ExportHour is an hour partition with records to export.
type ExportHour struct {
	Hour time.Time // UTC, on the hour
	Rows uint64
}

// ErrUnknownStream marks an export of a stream without a view.
var ErrUnknownStream = errors.New("unknown stream")

// predicateTable is the table name the predicate check parses the
// predicate against; it never runs.
const predicateTable = "weir_export_predicate"

// ExportPlan returns the hours from spec.From to spec.To that hold
// selected records, oldest first, with their row counts at the time of
// the call. Errors are those of Run; an unknown stream is ErrInvalid
// wrapping ErrUnknownStream.
func (e *Engine) ExportPlan(ctx context.Context, spec ExportSpec) ([]ExportHour, error) {
	from, where, err := e.exportSQL(spec)
	if err != nil {
		return nil, err
	}
	q := `SELECT "date", "hour", count(*) AS n FROM ` + from + " WHERE " + where + " GROUP BY ALL ORDER BY ALL"
	var plan planWriter
	if _, err := e.run(ctx, q, Options{Tenant: spec.Tenant}, math.MaxInt64-1, e.cfg.MaxTimeout, predicateCheck(spec.Where), &plan); err != nil {
		return nil, err
	}
	return plan.hours, plan.err
}

// ExportHour writes the selected records of one hour (as returned by
// ExportPlan) to w, in timestamp order, without the date and hour
// columns (they name the hour). It returns the rows written.
func (e *Engine) ExportHour(ctx context.Context, spec ExportSpec, hour time.Time, w ResultWriter) (uint64, error) {
	from, where, err := e.exportSQL(spec)
	if err != nil {
		return 0, err
	}
	hour = hour.UTC().Truncate(time.Hour)
	q := fmt.Sprintf(`SELECT * EXCLUDE ("date", "hour") FROM %s WHERE "date" = DATE '%s' AND "hour" = %d AND %s ORDER BY "timestamp"`,
		from, hour.Format("2006-01-02"), hour.Hour(), where)
	st, err := e.run(ctx, q, Options{Tenant: spec.Tenant}, math.MaxInt64-1, e.cfg.MaxTimeout, predicateCheck(spec.Where), w)
	return st.Rows, err
}

// exportSQL returns the FROM and WHERE parts of an export's queries.
func (e *Engine) exportSQL(spec ExportSpec) (from, where string, err error) {
	if !spec.From.Before(spec.To) {
		return "", "", fmt.Errorf("%w: the time range is empty: from %s is not before to %s", ErrInvalid, spec.From.Format(time.RFC3339), spec.To.Format(time.RFC3339))
	}
	if !slices.Contains(e.Streams(spec.Tenant), spec.Stream) {
		return "", "", fmt.Errorf("%w: %w %q", ErrInvalid, ErrUnknownStream, spec.Stream)
	}
	from = quoteIdent(spec.Stream)
	if slices.Contains(reservedViews, spec.Stream) {
		from = "(SELECT * FROM logs WHERE stream = " + quoteString(spec.Stream) + ")"
	}
	where = fmt.Sprintf(`"timestamp" >= TIMESTAMPTZ %s AND "timestamp" < TIMESTAMPTZ %s`,
		quoteString(spec.From.UTC().Format(time.RFC3339Nano)), quoteString(spec.To.UTC().Format(time.RFC3339Nano)))
	if strings.TrimSpace(spec.Where) != "" {
		// The newlines end a trailing line comment; predicateCheck parsed
		// the predicate inside exactly these parentheses.
		where += " AND (\n" + spec.Where + "\n)"
	}
	return from, where, nil
}

// predicateCheck returns a check that where is one SQL predicate: parsed
// as the WHERE clause of a bare SELECT, the statement must be that
// SELECT and nothing more (no UNION, ORDER BY, LIMIT or other clause the
// text could close the parentheses to add). The sandbox then vets the
// whole statement as it vets /v1/sql.
func predicateCheck(where string) func(context.Context, *sql.Conn) error {
	if strings.TrimSpace(where) == "" {
		return nil
	}
	return func(ctx context.Context, conn *sql.Conn) error {
		stmt := "SELECT 1 FROM " + predicateTable + " WHERE (\n" + where + "\n)"
		var raw string
		if err := conn.QueryRowContext(ctx, "SELECT json_serialize_sql($1::VARCHAR)::VARCHAR", stmt).Scan(&raw); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		var tree struct {
			Error      bool   `json:"error"`
			Message    string `json:"error_message"`
			Statements []struct {
				Node map[string]any `json:"node"`
			} `json:"statements"`
		}
		if err := json.Unmarshal([]byte(raw), &tree); err != nil {
			return fmt.Errorf("%w: cannot read the parsed predicate", ErrInvalid)
		}
		if tree.Error {
			return fmt.Errorf("%w: the predicate does not parse: %s", ErrInvalid, tree.Message)
		}
		notPredicate := fmt.Errorf("%w: the filter must be a single SQL predicate over the stream's columns, such as severity_number >= 17 AND body LIKE '%%timeout%%'", ErrInvalid)
		if len(tree.Statements) != 1 {
			return notPredicate
		}
		n := tree.Statements[0].Node
		from, _ := n["from_table"].(map[string]any)
		mods, _ := n["modifiers"].([]any)
		ctes, _ := n["cte_map"].(map[string]any)
		cteList, _ := ctes["map"].([]any)
		groups, _ := n["group_expressions"].([]any)
		sel, _ := n["select_list"].([]any)
		if n["type"] != "SELECT_NODE" || from["type"] != "BASE_TABLE" || from["table_name"] != predicateTable ||
			len(mods) != 0 || len(cteList) != 0 || len(groups) != 0 || len(sel) != 1 ||
			n["where_clause"] == nil || n["having"] != nil || n["qualify"] != nil || n["sample"] != nil {
			return notPredicate
		}
		return nil
	}
}

// planWriter collects ExportPlan's rows: date, hour, count.
type planWriter struct {
	hours []ExportHour
	err   error
}

func (p *planWriter) Begin([]Column) error { return nil }

func (p *planWriter) Row(vals []driver.Value) error {
	d, ok1 := vals[0].(time.Time)
	h, ok2 := vals[1].(int32)
	n, ok3 := vals[2].(int64)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("export plan: unexpected row %v", vals)
	}
	p.hours = append(p.hours, ExportHour{Hour: time.Date(d.Year(), d.Month(), d.Day(), int(h), 0, 0, 0, time.UTC), Rows: uint64(n)})
	return nil
}

func (p *planWriter) End(bool) error { return nil }

// MatchingOffsets calls fn with the stream partition and _offset of each
// record of one hour (as returned by ExportPlan) that spec selects, in
// partition and offset order. Records without an _offset are skipped.
// Deleting records uses it to find them in the lake's files.
func (e *Engine) MatchingOffsets(ctx context.Context, spec ExportSpec, hour time.Time, fn func(part int32, offset int64) error) error {
	from, where, err := e.exportSQL(spec)
	if err != nil {
		return err
	}
	hour = hour.UTC().Truncate(time.Hour)
	q := fmt.Sprintf(`SELECT "_partition", "_offset" FROM %s WHERE "date" = DATE '%s' AND "hour" = %d AND "_offset" IS NOT NULL AND %s ORDER BY ALL`,
		from, hour.Format("2006-01-02"), hour.Hour(), where)
	_, err = e.run(ctx, q, Options{Tenant: spec.Tenant}, math.MaxInt64-1, e.cfg.MaxTimeout, predicateCheck(spec.Where), offsetWriter(fn))
	return err
}

// offsetWriter hands MatchingOffsets' rows to a function.
type offsetWriter func(part int32, offset int64) error

func (offsetWriter) Begin([]Column) error { return nil }
func (offsetWriter) End(bool) error       { return nil }

func (w offsetWriter) Row(vals []driver.Value) error {
	part, ok1 := vals[0].(int32)
	off, ok2 := vals[1].(int64)
	if !ok1 || !ok2 {
		return fmt.Errorf("matching offsets: unexpected row %v", vals)
	}
	return w(part, off)
}

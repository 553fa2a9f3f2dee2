package query

import (
	"errors"
	"strconv"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// jsonTextWriter is a ResultWriter that takes nested columns as the JSON
// text DuckDB writes for them (to_json) rather than as driver values: the
// row encodings, which send nested values as JSON. The driver builds a Go
// map or slice of boxed values for every nested value, the larger part of
// the cost of a result with maps (bench/RESULTS.md); DuckDB's to_json is
// vectorised.
type jsonTextWriter interface {
	ResultWriter
	// nestedAsJSON reports whether the writer takes nested columns as
	// JSON text (wrappers take it when what they wrap does).
	nestedAsJSON() bool
}

// wantsJSONText reports whether w takes nested columns as JSON text.
func wantsJSONText(w ResultWriter) bool {
	jw, ok := w.(jsonTextWriter)
	return ok && jw.nestedAsJSON()
}

// jsonScalars are the DuckDB types whose JSON, inside a nested value, is
// the same from to_json as from the row encodings, with the type names
// the driver reports.
var jsonScalars = map[duckdb.Type]string{
	duckdb.TYPE_BOOLEAN:   "BOOLEAN",
	duckdb.TYPE_TINYINT:   "TINYINT",
	duckdb.TYPE_SMALLINT:  "SMALLINT",
	duckdb.TYPE_INTEGER:   "INTEGER",
	duckdb.TYPE_BIGINT:    "BIGINT",
	duckdb.TYPE_UTINYINT:  "UTINYINT",
	duckdb.TYPE_USMALLINT: "USMALLINT",
	duckdb.TYPE_UINTEGER:  "UINTEGER",
	duckdb.TYPE_UBIGINT:   "UBIGINT",
	duckdb.TYPE_VARCHAR:   "VARCHAR",
}

// nestedTypeName returns the driver's name for t if t is a list, array,
// map (with VARCHAR keys) or struct made only of jsonScalars, and ""
// otherwise: other values (timestamps, floats, blobs, decimals) are
// written differently by to_json, so their columns stay driver values.
func nestedTypeName(t duckdb.TypeInfo, depth int) string {
	if depth > maxSQLDepth {
		return ""
	}
	switch d := t.Details().(type) {
	case *duckdb.ListDetails:
		if c := elemTypeName(d.Child, depth); c != "" {
			return c + "[]"
		}
	case *duckdb.ArrayDetails:
		if c := elemTypeName(d.Child, depth); c != "" {
			return c + "[" + strconv.FormatUint(d.Size, 10) + "]"
		}
	case *duckdb.MapDetails:
		k, v := elemTypeName(d.Key, depth), elemTypeName(d.Value, depth)
		if k == "VARCHAR" && v != "" {
			return "MAP(" + k + ", " + v + ")"
		}
	case *duckdb.StructDetails:
		var b strings.Builder
		b.WriteString("STRUCT(")
		for i, e := range d.Entries {
			c := elemTypeName(e.Info(), depth)
			if c == "" {
				return ""
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quoteIdent(e.Name()) + " " + c)
		}
		return b.String() + ")"
	}
	return ""
}

// elemTypeName is nestedTypeName for a value inside a nested one, which
// may also be a scalar.
func elemTypeName(t duckdb.TypeInfo, depth int) string {
	if s, ok := jsonScalars[t.InternalType()]; ok {
		return s
	}
	return nestedTypeName(t, depth+1)
}

// nestedAsText returns the select list that has DuckDB write the nested
// columns of stmt's result as JSON text, and the columns with the type
// names of those (others are ""), or "" if no column is one.
func nestedAsText(stmt *duckdb.Stmt) (string, []Column) {
	var cols []Column
	sel, found, err := projection(stmt, func(ref string, t duckdb.TypeInfo) string {
		typ := nestedTypeName(t, 0)
		cols = append(cols, Column{Type: typ})
		if typ == "" {
			return ""
		}
		return "CAST(to_json(" + ref + ") AS VARCHAR)"
	})
	if err != nil || !found {
		return "", nil
	}
	return sel, cols
}

// errTypesUnknown is projection's answer when the statement's result
// types cannot be read before it runs.
var errTypesUnknown = errors.New("result types unknown before execution")

// projection returns a select list over the columns of stmt's result,
// by position and under their names, each the expression wrap gives for
// the column's reference (#n) and type, or the column itself where wrap
// gives ""; wrapped is whether wrap gave any. It fails with
// errTypesUnknown when a column's type cannot be read before running.
func projection(stmt *duckdb.Stmt, wrap func(ref string, t duckdb.TypeInfo) string) (sel string, wrapped bool, err error) {
	n, err := stmt.ColumnCount()
	if err != nil {
		return "", false, errTypesUnknown
	}
	proj := make([]string, n)
	for i := range n {
		info, err := stmt.ColumnTypeInfo(i)
		if err != nil || info.InternalType() == duckdb.TYPE_INVALID || info.InternalType() == duckdb.TYPE_ANY {
			return "", false, errTypesUnknown
		}
		name, err := stmt.ColumnName(i)
		if err != nil {
			return "", false, errTypesUnknown
		}
		ref := "#" + strconv.Itoa(i+1)
		if expr := wrap(ref, info); expr != "" {
			ref, wrapped = expr, true
		}
		proj[i] = ref + " AS " + quoteIdent(name)
	}
	return strings.Join(proj, ", "), wrapped, nil
}

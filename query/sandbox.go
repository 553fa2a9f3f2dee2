package query

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// The sandbox decides what user SQL may run by what it is, not by how it
// begins. DuckDB's own parser turns the statement into a syntax tree
// (json_serialize_sql, which serializes only SELECT statements), and the
// tree is walked: every table function must be one that only reads, no
// table reference may name a file (DuckDB's replacement scans read
// `FROM 'x.csv'`), and no scalar function may be one whose cost DuckDB
// does not bound (refusedFunctions, structureFunctions,
// patternFunctions). EXPLAIN is taken apart and its statement checked the
// same way, then put back together from the checked pieces, so what runs
// is exactly what was checked. The settings in Engine.init are the second
// wall: no file outside the lake can be read and no setting changed.

// readOnlyTableFunctions are the table functions user SQL may call: they
// read Parquet inside the allowed directories, generate values, or
// describe the catalog. The duckdb_ names among them are also the only
// duckdb_ catalog views user SQL may name. Anything else (query, query_table, read_text,
// read_csv, glob, enable_logging, duckdb_logs, duckdb_settings, checkpoint,
// ...) is refused.
var readOnlyTableFunctions = map[string]bool{
	"read_parquet":          true,
	"parquet_scan":          true,
	"parquet_metadata":      true,
	"parquet_file_metadata": true,
	"parquet_kv_metadata":   true,
	"parquet_schema":        true,
	"range":                 true,
	"generate_series":       true,
	"unnest":                true,
	"repeat":                true,
	"json_each":             true,
	"json_tree":             true,
	"duckdb_columns":        true,
	"duckdb_tables":         true,
	"duckdb_views":          true,
	"duckdb_schemas":        true,
	"duckdb_types":          true,
	"duckdb_functions":      true,
	"duckdb_keywords":       true,
	"duckdb_constraints":    true,
	"pragma_table_info":     true,
}

// refusedFunctions are scalar functions and macros user SQL may not call,
// with the reason. DuckDB 1.5 runs them recursively over their input's
// nesting, on a thread's stack, so a JSON value nested ~100,000 deep
// (a short expression, or a record's body) overflows it and ends the
// process; json_pretty's output grows with the square of the depth; and
// the last two take SQL text past the sandbox.
var refusedFunctions = map[string]string{
	"json_structure":             "it recurses over its input's nesting",
	"json_group_structure":       "it recurses over its input's nesting",
	"json_contains":              "it recurses over its input's nesting",
	"json_merge_patch":           "it recurses over its input's nesting",
	"json_pretty":                "its output grows with the square of its input's nesting",
	"variant_extract":            "VARIANT values are built recursively from their input",
	"variant_normalize":          "VARIANT values are built recursively from their input",
	"variant_typeof":             "VARIANT values are built recursively from their input",
	"variant_bytes_to_variant":   "VARIANT values are built recursively from their input",
	"variant_to_parquet_variant": "VARIANT values are built recursively from their input",
	"json_serialize_plan":        "it plans SQL text the sandbox has not checked",
	"json_deserialize_sql":       "it reads SQL syntax trees the sandbox has not checked",
}

// structureFunctions take a JSON structure as their second argument and
// build a type from it recursively; the structure must be a string
// literal nested at most maxStructureDepth deep.
var structureFunctions = map[string]bool{
	"from_json":             true,
	"from_json_strict":      true,
	"json_transform":        true,
	"json_transform_strict": true,
}

// patternFunctions are the pattern matches whose matcher backtracks, by
// function name, with their wildcard: DuckDB 1.5 matches ILIKE, GLOB and
// LIKE … ESCAPE in time that grows with the text's length to the power of
// the wildcards before the pattern's end ('%a%a%b' over 3,000 characters
// took 22 s; '%a%b' over 100,000, 15 s), checking the query's timeout
// only between vectors. Plain LIKE has a linear matcher and is not
// listed. A listed call's pattern must be a string literal of at most
// maxPatternBytes with at most one wildcard run before its end
// ('%term%', 'prefix%', 'a%b'), so a match costs at most the text's
// length times the pattern's.
var patternFunctions = map[string]byte{
	"~~*":              '%', // ILIKE
	"!~~*":             '%', // NOT ILIKE
	"ilike_escape":     '%',
	"not_ilike_escape": '%',
	"like_escape":      '%',
	"not_like_escape":  '%',
	"~~~":              '*', // GLOB
	"glob":             '*',
}

// maxPatternBytes bounds a pattern of patternFunctions.
const maxPatternBytes = 1024

// maxStructureDepth bounds the nesting of a JSON structure argument, far
// beyond any log's and far below what overflows a thread's stack.
const maxStructureDepth = 64

// maxSQLDepth bounds how deeply the syntax tree is walked; a deeper tree
// is refused rather than recursed into.
const maxSQLDepth = 512

// vetted is a user statement that passed the sandbox.
type vetted struct {
	// sql is what to run: the user's SELECT inside a row limit, or an
	// EXPLAIN rebuilt around the checked statement.
	sql string
	// explain is whether sql is an EXPLAIN; it is otherwise a SELECT.
	explain bool
}

// vet checks query and returns what to run in its place. maxRows bounds
// the rows a SELECT can produce: the statement runs under LIMIT
// maxRows+1, so DuckDB never computes a larger result than is sent (the
// extra row tells that the result was cut). Errors wrap ErrInvalid.
func vet(ctx context.Context, conn *sql.Conn, query string, maxRows uint64) (vetted, error) {
	rest, explain, err := splitExplain(query)
	if err != nil {
		return vetted{}, err
	}
	inner := trimStatementEnd(rest)
	if inner == "" {
		return vetted{}, fmt.Errorf("%w: the statement is empty", ErrInvalid)
	}
	if err := checkSelect(ctx, conn, inner); err != nil {
		return vetted{}, err
	}
	if explain != "" {
		return vetted{sql: explain + " " + inner, explain: true}, nil
	}
	// The newline ends a trailing line comment before the parenthesis.
	return vetted{sql: "SELECT * FROM (\n" + inner + "\n) LIMIT " + strconv.FormatUint(maxRows+1, 10)}, nil
}

// errNotReading is the refusal of statements that are not reading
// queries.
var errNotReading = fmt.Errorf("%w: only reading statements (SELECT, WITH, FROM, EXPLAIN of those, DESCRIBE, SHOW, SUMMARIZE) are allowed; this one changes state or reaches outside the lake", ErrInvalid)

// checkSelect parses one statement with DuckDB's parser and refuses it
// unless it is a single SELECT whose table functions and table names pass
// the sandbox.
func checkSelect(ctx context.Context, conn *sql.Conn, stmt string) error {
	var raw any
	if err := conn.QueryRowContext(ctx, "SELECT json_serialize_sql($1::VARCHAR)", stmt).Scan(&raw); err != nil {
		var de *duckdb.Error
		if ctx.Err() != nil || errors.As(err, &de) && de.Type == duckdb.ErrorTypeOutOfMemory {
			return err // the engine's, not the statement's (Engine.classify)
		}
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	tree, ok := raw.(map[string]any)
	if !ok {
		// The driver hands JSON back decoded; a string would mean a
		// driver that does not, so decode it here.
		s, isStr := raw.(string)
		if !isStr || json.Unmarshal([]byte(s), &tree) != nil {
			return fmt.Errorf("%w: cannot read the parsed statement", ErrInvalid)
		}
	}
	if failed, _ := tree["error"].(bool); failed {
		msg, _ := tree["error_message"].(string)
		if strings.Contains(msg, "Only SELECT statements") {
			return errNotReading
		}
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	stmts, _ := tree["statements"].([]any)
	if len(stmts) != 1 {
		return fmt.Errorf("%w: send one statement at a time, got %d", ErrInvalid, len(stmts))
	}
	return walkTree(stmts[0], 0)
}

// walkTree checks every node of a serialized statement.
func walkTree(n any, depth int) error {
	if depth > maxSQLDepth {
		return fmt.Errorf("%w: the statement nests deeper than %d levels", ErrInvalid, maxSQLDepth)
	}
	switch v := n.(type) {
	case map[string]any:
		if v["id"] == "VARIANT" {
			// A type: casts to VARIANT build it recursively from their
			// input, as the variant_ functions do.
			return fmt.Errorf("%w: the VARIANT type is not available; keep JSON as JSON or VARCHAR", ErrInvalid)
		}
		switch v["type"] {
		case "FUNCTION":
			if err := checkFunction(v); err != nil {
				return err
			}
		case "TABLE_FUNCTION":
			fn, _ := v["function"].(map[string]any)
			name, _ := fn["function_name"].(string)
			if !readOnlyTableFunctions[strings.ToLower(name)] {
				return fmt.Errorf("%w: table function %q is not allowed; allowed are the Parquet readers, range, generate_series, unnest, repeat, json_each, json_tree and the duckdb_ catalog functions", ErrInvalid, name)
			}
		case "BASE_TABLE", "SHOW_REF":
			name, _ := v["table_name"].(string)
			if strings.ContainsAny(name, `./\*:?`) {
				return fmt.Errorf("%w: %q is not a table or view; read Parquet files with read_parquet", ErrInvalid, name)
			}
			if l := strings.ToLower(name); strings.HasPrefix(l, "duckdb_") && !readOnlyTableFunctions[l] {
				return fmt.Errorf("%w: %q is not readable; the duckdb_ catalog views that are: duckdb_columns, duckdb_tables, duckdb_views, duckdb_schemas, duckdb_types, duckdb_functions, duckdb_keywords, duckdb_constraints", ErrInvalid, name)
			}
		}
		for _, c := range v {
			if err := walkTree(c, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, c := range v {
			if err := walkTree(c, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkFunction refuses a call of a refused function, or a structure
// function whose structure is not a shallow string literal.
func checkFunction(fn map[string]any) error {
	name, _ := fn["function_name"].(string)
	name = strings.ToLower(name)
	if why, ok := refusedFunctions[name]; ok {
		return fmt.Errorf("%w: function %s is not available: %s", ErrInvalid, name, why)
	}
	if wild, ok := patternFunctions[name]; ok {
		return checkPattern(fn, name, wild)
	}
	if !structureFunctions[name] {
		return nil
	}
	args, _ := fn["children"].([]any)
	if len(args) < 2 {
		return nil // DuckDB refuses the call itself
	}
	text, ok := stringLiteral(args[1])
	if !ok {
		return fmt.Errorf("%w: %s: give the structure as a string literal", ErrInvalid, name)
	}
	if strings.Contains(strings.ToUpper(text), "VARIANT") {
		return fmt.Errorf("%w: %s: the VARIANT type is not available; keep JSON as JSON or VARCHAR", ErrInvalid, name)
	}
	if d := jsonDepth(text); d > maxStructureDepth {
		return fmt.Errorf("%w: %s: the structure nests %d deep; at most %d is allowed", ErrInvalid, name, d, maxStructureDepth)
	}
	return nil
}

// checkPattern refuses a call of a pattern function (see
// patternFunctions) whose pattern could make its matcher backtrack.
func checkPattern(fn map[string]any, name string, wild byte) error {
	op := strings.ToUpper(strings.NewReplacer("!~~*", "NOT ILIKE", "~~*", "ILIKE", "~~~", "GLOB", "_", " ").Replace(name))
	args, _ := fn["children"].([]any)
	if len(args) < 2 {
		return nil // DuckDB refuses the call itself
	}
	pattern, ok := stringLiteral(args[1])
	if !ok {
		return fmt.Errorf("%w: %s: give the pattern as a string literal", ErrInvalid, op)
	}
	if len(pattern) > maxPatternBytes {
		return fmt.Errorf("%w: %s: the pattern has %d bytes; at most %d are allowed", ErrInvalid, op, len(pattern), maxPatternBytes)
	}
	var escape byte
	if len(args) > 2 {
		e, ok := stringLiteral(args[2])
		if !ok || len(e) > 1 {
			return fmt.Errorf("%w: %s: give the escape character as a string literal", ErrInvalid, op)
		}
		if e != "" {
			escape = e[0]
		}
	}
	if wildcardRuns(pattern, wild, escape) > 1 {
		return fmt.Errorf("%w: %s: the pattern %.40q has more than one %c before its end, which DuckDB matches in time that grows with a power of the text's length; "+
			"use LIKE on lower(…), which is linear, or regexp_matches", ErrInvalid, op, pattern, wild)
	}
	return nil
}

// stringLiteral returns the text of a VARCHAR constant node.
func stringLiteral(n any) (string, bool) {
	c, _ := n.(map[string]any)
	val, _ := c["value"].(map[string]any)
	text, ok := val["value"].(string)
	return text, ok && c["class"] == "CONSTANT"
}

// wildcardRuns counts the runs of wild in pattern that do not end it;
// a character after escape (when not 0) is a literal.
func wildcardRuns(pattern string, wild, escape byte) int {
	runs, inRun := 0, false
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if escape != 0 && c == escape {
			i++
			inRun = false
			continue
		}
		if c != wild {
			inRun = false
			continue
		}
		if !inRun && strings.TrimLeft(pattern[i:], string(wild)) != "" {
			runs++
		}
		inRun = true
	}
	return runs
}

// jsonDepth returns how deeply the arrays and objects of JSON text nest,
// outside its strings. Text that is not JSON gets a depth too; DuckDB
// refuses it later.
func jsonDepth(text string) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// splitExplain takes a leading EXPLAIN apart: it returns the statement
// after it and the EXPLAIN prefix rebuilt from its keywords ("" when the
// query is no EXPLAIN). It accepts EXPLAIN, EXPLAIN ANALYZE and EXPLAIN
// with an option list of plain words, such as EXPLAIN (FORMAT json).
func splitExplain(q string) (rest, prefix string, err error) {
	lx := lexer{s: q}
	if !strings.EqualFold(lx.word(), "EXPLAIN") {
		return q, "", nil
	}
	prefix = "EXPLAIN"
	after := lx.pos
	switch w := lx.word(); {
	case strings.EqualFold(w, "ANALYZE"), strings.EqualFold(w, "ANALYSE"):
		prefix += " ANALYZE"
		after = lx.pos
	case w == "" && lx.peek() == '(':
		lx.pos++
		var opts []string
		for {
			var words []string
			for {
				w := lx.word()
				if w == "" {
					break
				}
				words = append(words, w)
			}
			if len(words) == 0 || len(words) > 2 {
				return "", "", fmt.Errorf("%w: EXPLAIN options must be words, such as EXPLAIN (FORMAT json)", ErrInvalid)
			}
			opts = append(opts, strings.Join(words, " "))
			switch lx.peek() {
			case ',':
				lx.pos++
				continue
			case ')':
				lx.pos++
			default:
				return "", "", fmt.Errorf("%w: EXPLAIN options must be words, such as EXPLAIN (FORMAT json)", ErrInvalid)
			}
			break
		}
		prefix += " (" + strings.Join(opts, ", ") + ")"
		after = lx.pos
	}
	return q[after:], prefix, nil
}

// trimStatementEnd removes white space and semicolons after a statement.
func trimStatementEnd(s string) string {
	return strings.TrimRightFunc(s, func(r rune) bool { return r == ';' || unicode.IsSpace(r) })
}

// lexer reads the words at the start of a statement, skipping white space
// and comments.
type lexer struct {
	s   string
	pos int
}

// skip moves past white space and comments.
func (l *lexer) skip() {
	for l.pos < len(l.s) {
		switch {
		case unicode.IsSpace(rune(l.s[l.pos])):
			l.pos++
		case strings.HasPrefix(l.s[l.pos:], "--"):
			end := strings.IndexByte(l.s[l.pos:], '\n')
			if end < 0 {
				l.pos = len(l.s)
				return
			}
			l.pos += end + 1
		case strings.HasPrefix(l.s[l.pos:], "/*"):
			end := strings.Index(l.s[l.pos+2:], "*/")
			if end < 0 {
				l.pos = len(l.s)
				return
			}
			l.pos += 2 + end + 2
		default:
			return
		}
	}
}

// word returns the next word of letters, digits and underscores, or "".
func (l *lexer) word() string {
	l.skip()
	start := l.pos
	for l.pos < len(l.s) {
		c := l.s[l.pos]
		if c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			l.pos++
			continue
		}
		break
	}
	return l.s[start:l.pos]
}

// peek returns the next byte after white space and comments, or 0.
func (l *lexer) peek() byte {
	l.skip()
	if l.pos < len(l.s) {
		return l.s[l.pos]
	}
	return 0
}

package arrowbatch

import (
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// Attribute promotion. A stream partition's Batcher watches the attribute
// keys of its first promoteAfter records; keys present in at least half of
// them become typed columns named logschema.AttributePrefix + the key
// (non [a-z0-9_] characters as _), at most Config.MaxColumns, from then on. The type is
// BIGINT, DOUBLE or BOOLEAN when every value seen parses as one, else
// VARCHAR; text whose values average more than maxColumnText bytes (free
// text such as a message) is not promoted. The attributes map keeps every attribute, so queries of
// attributes['key'] see all files whatever their columns; the typed column
// is the fast, typed way to the same value. A later value that does not
// parse as its column's type is a type conflict: the column is NULL for
// that row (the map still has the value) and the conflict is counted.
// The choice holds for the Batcher's life: files written before it, or by
// other partitions, may have other columns; DuckDB reads them together by
// name.
const (
	promoteAfter   = 1000
	maxTrackedKeys = 256
	maxColumnName  = 64
	maxColumnText  = 32
)

type colType int

const (
	colString colType = iota
	colInt
	colFloat
	colBool
)

// keyStats is what the promoter knows of one key.
type keyStats struct {
	n                         int
	bytes                     int
	notInt, notFloat, notBool bool
}

// promotedCol is one promoted attribute.
type promotedCol struct {
	key  string
	name string
	typ  colType
}

// promoter decides a partition's promoted columns.
type promoter struct {
	max     int
	seen    int
	stats   map[string]*keyStats
	decided bool
	cols    []promotedCol
}

// observe counts r's attributes, until the decision is made.
func (p *promoter) observe(r *record.Record) {
	if p.decided || p.max == 0 {
		return
	}
	if p.stats == nil {
		p.stats = map[string]*keyStats{}
	}
	p.seen++
	for _, kv := range r.Attributes {
		st := p.stats[kv.Key]
		if st == nil {
			if len(p.stats) >= maxTrackedKeys {
				continue
			}
			st = &keyStats{}
			p.stats[kv.Key] = st
		}
		st.n++
		st.bytes += len(kv.Value)
		v := strings.TrimSpace(kv.Value)
		if !st.notInt {
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				st.notInt = true
			}
		}
		if !st.notFloat {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				st.notFloat = true
			}
		}
		if !st.notBool {
			if _, err := strconv.ParseBool(v); err != nil {
				st.notBool = true
			}
		}
	}
}

// decide makes the decision once enough records were seen; it reports
// whether columns were promoted (and so the schema changes).
func (p *promoter) decide() bool {
	if p.decided || p.max == 0 || p.seen < promoteAfter {
		return false
	}
	p.decided = true
	type cand struct {
		key string
		st  *keyStats
	}
	var cands []cand
	for k, st := range p.stats {
		if 2*st.n >= p.seen {
			cands = append(cands, cand{k, st})
		}
	}
	// The most frequent first; ties by key, for a stable choice.
	slices.SortFunc(cands, func(a, b cand) int {
		if a.st.n != b.st.n {
			return b.st.n - a.st.n
		}
		return strings.Compare(a.key, b.key)
	})
	names := map[string]bool{}
	for _, c := range cands {
		if len(p.cols) == p.max {
			break
		}
		name := columnName(c.key)
		if name == "" || names[name] {
			continue
		}
		typ := colString
		switch {
		case !c.st.notInt:
			typ = colInt
		case !c.st.notFloat:
			typ = colFloat
		case !c.st.notBool:
			typ = colBool
		case c.st.bytes > maxColumnText*c.st.n:
			continue
		}
		names[name] = true
		p.cols = append(p.cols, promotedCol{key: c.key, name: name, typ: typ})
	}
	slices.SortFunc(p.cols, func(a, b promotedCol) int { return strings.Compare(a.name, b.name) })
	p.stats = nil
	return len(p.cols) > 0
}

// columnName is the column of attribute key: logschema.AttributePrefix
// and the key in lower case with characters outside [a-z0-9_] as _; ""
// if too long.
func columnName(key string) string {
	if key == "" || len(logschema.AttributePrefix)+len(key) > maxColumnName {
		return ""
	}
	var b strings.Builder
	b.WriteString(logschema.AttributePrefix)
	for _, c := range strings.ToLower(key) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// schemaWith returns the log schema with the promoted columns appended.
func schemaWith(cols []promotedCol) *arrow.Schema {
	if len(cols) == 0 {
		return schema
	}
	fields := slices.Clone(schema.Fields())
	for _, c := range cols {
		var t arrow.DataType
		switch c.typ {
		case colInt:
			t = arrow.PrimitiveTypes.Int64
		case colFloat:
			t = arrow.PrimitiveTypes.Float64
		case colBool:
			t = arrow.FixedWidthTypes.Boolean
		default:
			t = arrow.BinaryTypes.String
		}
		fields = append(fields, arrow.Field{Name: c.name, Type: t, Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}

// appendPromoted appends r's values of the promoted columns to their
// builders (extra, in cols order) and returns the number of type
// conflicts.
func appendPromoted(extra []array.Builder, cols []promotedCol, r *record.Record) (conflicts int) {
	for i, c := range cols {
		v, ok := record.Lookup(r.Attributes, c.key)
		if !ok {
			extra[i].AppendNull()
			continue
		}
		switch b := extra[i].(type) {
		case *array.Int64Builder:
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.AppendNull()
				conflicts++
				continue
			}
			b.Append(n)
		case *array.Float64Builder:
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				b.AppendNull()
				conflicts++
				continue
			}
			b.Append(f)
		case *array.BooleanBuilder:
			t, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				b.AppendNull()
				conflicts++
				continue
			}
			b.Append(t)
		case *array.StringBuilder:
			b.Append(v)
		}
	}
	return conflicts
}

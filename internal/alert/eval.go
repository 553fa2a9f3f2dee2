package alert

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"math/big"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// statement is one query of an evaluation.
type statement struct {
	sql string
}

// placeholders are the variables a rule's SQL may use.
var placeholders = regexp.MustCompile(`\$__(timeFilter|from|to)\b`)

// tsLit is a TIMESTAMPTZ literal of t.
func tsLit(t time.Time) string {
	return "'" + t.UTC().Format("2006-01-02T15:04:05.000000Z") + "'::TIMESTAMPTZ"
}

// strLit is a SQL string literal.
func strLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// timeFilter restricts rows to [from, to); the date condition lets DuckDB
// skip the lake's other date= folders.
func timeFilter(from, to time.Time) string {
	return fmt.Sprintf("(timestamp >= %s AND timestamp < %s AND date BETWEEN %s::DATE AND %s::DATE)",
		tsLit(from), tsLit(to), strLit(from.UTC().Format(time.DateOnly)), strLit(to.UTC().Format(time.DateOnly)))
}

// expand fills a rule's placeholders for the window [from, to).
func expand(sql string, from, to time.Time) string {
	return placeholders.ReplaceAllStringFunc(sql, func(p string) string {
		switch p {
		case "$__from":
			return tsLit(from)
		case "$__to":
			return tsLit(to)
		}
		return timeFilter(from, to)
	})
}

// window returns the evaluation window of r at time at.
func (m *Manager) window(r *Rule, at time.Time) (from, to time.Time) {
	to = at.Add(-m.cfg.Delay)
	return to.Add(-r.Window), to
}

// statements are the queries an evaluation of r at runs, for validation.
func (m *Manager) statements(r *Rule, at time.Time) []statement {
	from, to := m.window(r, at)
	if r.Pattern == nil {
		return []statement{{expand(r.SQL, from, to)}}
	}
	var out []statement
	if r.Pattern.New {
		out = append(out, statement{patternSeenSQL(r.Pattern, from.Add(-time.Hour), from)}, statement{patternNewSQL(r.Pattern, from, to)})
	}
	if r.Pattern.RateFactor > 0 {
		out = append(out, statement{patternRateSQL(r.Pattern, from, to)})
	}
	return out
}

const patternID = `attributes['pattern.id']`

func patternSeenSQL(p *PatternRule, from, to time.Time) string {
	return fmt.Sprintf(`SELECT DISTINCT %s AS pattern_id FROM logs WHERE stream = %s AND %s AND %s IS NOT NULL`,
		patternID, strLit(p.Stream), timeFilter(from, to), patternID)
}

func patternNewSQL(p *PatternRule, from, to time.Time) string {
	return fmt.Sprintf(`SELECT %s AS pattern_id, any_value(attributes['pattern.template']) AS template,
  max(severity_number) AS severity, count(*) AS n, min(timestamp) AS first
FROM logs WHERE stream = %s AND %s AND %s IS NOT NULL GROUP BY 1 ORDER BY first`,
		patternID, strLit(p.Stream), timeFilter(from, to), patternID)
}

func patternRateSQL(p *PatternRule, from, to time.Time) string {
	base := from.Add(-p.Baseline)
	return fmt.Sprintf(`SELECT %s AS pattern_id, any_value(attributes['pattern.template']) AS template,
  count(*) FILTER (WHERE timestamp >= %s) AS n, count(*) FILTER (WHERE timestamp < %s) AS baseline
FROM logs WHERE stream = %s AND %s AND severity_number >= %d AND %s IS NOT NULL
GROUP BY 1 HAVING count(*) FILTER (WHERE timestamp >= %s) >= %d ORDER BY n DESC`,
		patternID, tsLit(from), tsLit(from), strLit(p.Stream), timeFilter(base, to), p.minSev, patternID, tsLit(from), p.MinCount)
}

// evalOut is what one evaluation found.
type evalOut struct {
	active map[string]sample
	// value is the rule's value at this evaluation: the largest value
	// of the condition's column (the row count for rules without one, the
	// alerts for pattern rules).
	value      float64
	patterns   map[string]*seenPattern
	patternsTo time.Time
	// result is the query's result, for tests of a rule.
	result *Result
	// rows say, for each row of result, whether it is an alert.
	rows []bool
}

// run evaluates r at time at. known and patternsTo are a pattern rule's
// patterns so far; run does not modify them (it returns the new set).
func (m *Manager) run(ctx context.Context, r *Rule, at time.Time, known map[string]*seenPattern, patternsTo time.Time) (*evalOut, error) {
	from, to := m.window(r, at)
	if r.Pattern != nil {
		return m.runPattern(ctx, r, from, to, known, patternsTo)
	}
	res, err := m.deps.Querier.Query(ctx, r.Tenant, expand(r.SQL, from, to), m.cfg.MaxInstances)
	if err != nil {
		return nil, err
	}
	out := &evalOut{active: map[string]sample{}, result: res, rows: make([]bool, len(res.Rows))}
	condCol := -1
	if !r.Condition.Any() {
		condCol = slices.Index(res.Columns, r.Condition.Column)
		if condCol < 0 {
			return nil, fmt.Errorf("the result has no column %q (it has %s)", r.Condition.Column, strings.Join(res.Columns, ", "))
		}
	}
	labelCols := labelColumns(r, res.Columns, condCol)
	if r.Condition.Any() {
		out.value = float64(len(res.Rows))
	}
	for i, row := range res.Rows {
		v := 1.0
		if condCol >= 0 {
			f, ok := toFloat(row[condCol])
			if !ok {
				if row[condCol] == nil {
					continue // NULL: no value, no alert
				}
				return nil, fmt.Errorf("column %q is %T, not a number", r.Condition.Column, row[condCol])
			}
			v = f
			if i == 0 || v > out.value {
				out.value = v
			}
			if !ops[r.Condition.Op](v, r.Condition.Value) {
				continue
			}
		} else {
			for j, c := range res.Columns {
				if f, ok := toFloat(row[j]); ok && !slices.Contains(labelCols, c) {
					v = f
					break
				}
			}
		}
		out.rows[i] = true
		labels := map[string]string{}
		for _, c := range labelCols {
			j := slices.Index(res.Columns, c)
			if j >= 0 && row[j] != nil {
				labels[labelName(c)] = text(row[j])
			}
		}
		data := map[string]any{}
		for j, c := range res.Columns {
			data[c] = templateValue(row[j])
		}
		s := m.sample(r, labels, data, v)
		out.active[labelKey(s.labels)] = s
	}
	return out, nil
}

// sample makes the instance of a row: the rule's labels over the row's,
// and the annotations rendered from data.
func (m *Manager) sample(r *Rule, labels map[string]string, data map[string]any, v float64) sample {
	maps.Copy(labels, r.Labels)
	labels["alertname"] = r.Name
	if r.Tenant != "default" {
		labels["tenant"] = r.Tenant
	}
	ann := make(map[string]string, len(r.annotations))
	for k, t := range r.annotations {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			ann[k] = fmt.Sprintf("(template error: %v)", err)
			continue
		}
		ann[k] = b.String()
	}
	return sample{labels: labels, annotations: ann, value: v}
}

// runPattern evaluates a pattern rule over [from, to).
func (m *Manager) runPattern(ctx context.Context, r *Rule, from, to time.Time, known map[string]*seenPattern, patternsTo time.Time) (*evalOut, error) {
	p := r.Pattern
	out := &evalOut{active: map[string]sample{}, patterns: known, patternsTo: patternsTo}
	if p.New {
		next := make(map[string]*seenPattern, len(known))
		for k, v := range known {
			c := *v
			next[k] = &c
		}
		lo := patternsTo
		if lo.IsZero() {
			// First evaluation: every pattern seen in the History
			// before the window is known, so only patterns new in the
			// window alert.
			res, err := m.deps.Querier.Query(ctx, r.Tenant, patternSeenSQL(p, from.Add(-p.History), from), maxPatterns)
			if err != nil {
				return nil, err
			}
			for _, row := range res.Rows {
				if id, ok := row[0].(string); ok && next[id] == nil {
					next[id] = &seenPattern{}
				}
			}
			lo = from
		}
		// After a long stop, look back one day at most.
		if day := to.Add(-24 * time.Hour); lo.Before(day) {
			lo = day
		}
		if lo.Before(to) {
			res, err := m.deps.Querier.Query(ctx, r.Tenant, patternNewSQL(p, lo, to), maxPatterns)
			if err != nil {
				return nil, err
			}
			out.result = res
			out.rows = make([]bool, len(res.Rows))
			for i, row := range res.Rows {
				id, _ := row[0].(string)
				if id == "" {
					continue
				}
				sev, _ := toFloat(row[2])
				n, _ := toFloat(row[3])
				if sp := next[id]; sp != nil {
					if sp.Alert {
						sp.Count += int64(n)
					}
					continue
				}
				first, _ := row[4].(time.Time)
				tmpl, _ := row[1].(string)
				next[id] = &seenPattern{First: first, Template: tmpl, Alert: int(sev) >= p.minSev, Count: int64(n)}
				out.rows[i] = int(sev) >= p.minSev
			}
		}
		trimPatterns(next)
		out.patterns, out.patternsTo = next, to
		for id, sp := range next {
			if !sp.Alert || sp.First.Before(from) {
				continue
			}
			data := map[string]any{"pattern_id": id, "template": sp.Template, "stream": p.Stream, "n": sp.Count, "first": sp.First.UTC().Format(time.RFC3339Nano)}
			s := m.sample(r, map[string]string{"pattern_id": id, "stream": p.Stream, "reason": "new"}, data, float64(sp.Count))
			if _, ok := r.Annotations["summary"]; !ok {
				s.annotations["summary"] = fmt.Sprintf("New log pattern in %s: %s", p.Stream, sp.Template)
			}
			out.active[labelKey(s.labels)] = s
		}
	}
	if p.RateFactor > 0 {
		res, err := m.deps.Querier.Query(ctx, r.Tenant, patternRateSQL(p, from, to), m.cfg.MaxInstances)
		if err != nil {
			return nil, err
		}
		if out.result == nil {
			out.result, out.rows = res, make([]bool, len(res.Rows))
		}
		for i, row := range res.Rows {
			id, _ := row[0].(string)
			tmpl, _ := row[1].(string)
			n, _ := toFloat(row[2])
			base, _ := toFloat(row[3])
			ratio := (n / r.Window.Seconds()) / (max(base, 1) / p.Baseline.Seconds())
			if ratio < p.RateFactor {
				continue
			}
			if out.result == res {
				out.rows[i] = true
			}
			data := map[string]any{"pattern_id": id, "template": tmpl, "stream": p.Stream, "n": n, "baseline": base, "ratio": ratio}
			s := m.sample(r, map[string]string{"pattern_id": id, "stream": p.Stream, "reason": "rate"}, data, ratio)
			if _, ok := r.Annotations["summary"]; !ok {
				s.annotations["summary"] = fmt.Sprintf("Log pattern in %s at %.1f× its rate of the %s before: %s", p.Stream, ratio, p.Baseline, tmpl)
			}
			out.active[labelKey(s.labels)] = s
		}
	}
	out.value = float64(len(out.active))
	return out, nil
}

// trimPatterns forgets the longest-known patterns past maxPatterns.
func trimPatterns(ps map[string]*seenPattern) {
	if len(ps) <= maxPatterns {
		return
	}
	ids := slices.SortedFunc(maps.Keys(ps), func(a, b string) int { return ps[a].First.Compare(ps[b].First) })
	for _, id := range ids[:len(ps)-maxPatterns] {
		delete(ps, id)
	}
}

// labelColumns are the columns whose values label a row's alert.
func labelColumns(r *Rule, cols []string, condCol int) []string {
	if len(r.LabelColumns) > 0 {
		return r.LabelColumns
	}
	var out []string
	for i, c := range cols {
		if i != condCol {
			out = append(out, c)
		}
	}
	return out
}

// labelName makes a column name a valid label name.
func labelName(c string) string {
	b := []byte(c)
	for i, ch := range b {
		if !(ch == '_' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || i > 0 && ch >= '0' && ch <= '9') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// toFloat converts the numbers a driver returns.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case int16:
		return float64(x), true
	case int8:
		return float64(x), true
	case int:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint8:
		return float64(x), true
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return f, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case interface{ Float64() float64 }:
		return x.Float64(), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return math.NaN(), false
}

// text renders a value as a label.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// templateValue is a value as annotation templates see it: numbers stay
// numbers, times become RFC 3339 text.
func templateValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return string(x)
	}
	return v
}

// link is, under base, the dashboard's Explore view of an alert's records: the time
// from a window before it began until now (or its end), filtered by the
// rule's explore filters and the alert's stream, service_name and
// pattern_id labels.
func (m *Manager) link(base string, r *Rule, in Instance, now time.Time) string {
	from := in.ActiveAt.Add(-r.Window - m.cfg.Delay)
	to := now
	if in.State == StateResolved {
		to = in.ResolvedAt
	}
	p := url.Values{}
	p.Set("from", from.UTC().Format(time.RFC3339))
	p.Set("to", to.Add(time.Second).UTC().Format(time.RFC3339))
	f := r.Explore
	if r.Pattern != nil {
		f.Stream = cmpOr(f.Stream, r.Pattern.Stream)
		if f.Sev == 0 && r.Pattern.minSev > 0 {
			f.Sev = r.Pattern.minSev
		}
	}
	if s := in.Labels["stream"]; s != "" {
		f.Stream = s
	}
	if s := in.Labels["service_name"]; s != "" {
		f.Service = s
	}
	if f.Stream != "" {
		p.Set("stream", f.Stream)
	}
	if f.Service != "" {
		p.Set("service", f.Service)
	}
	if f.Sev > 0 {
		p.Set("sev", strconv.Itoa(f.Sev))
	}
	if f.Q != "" {
		p.Set("q", f.Q)
	}
	if id := in.Labels["pattern_id"]; id != "" {
		p.Add("attr", "pattern.id="+id)
	}
	return strings.TrimRight(base, "/") + "/#/explore?" + p.Encode()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

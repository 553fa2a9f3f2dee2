package alert

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRuleErrors: every error names the file, the line of the field at
// fault and the field.
func TestRuleErrors(t *testing.T) {
	f := func(yml, want string) {
		t.Helper()
		rules, err := ParseRules([]byte(yml), "a.yaml")
		if err == nil {
			err = CheckRules(rules)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\n got %v\nwant %q", yml, err, want)
		}
	}
	f("rules:\n  - name: x\n    sql: SELECT 1\n    every: 1ms\n", `a.yaml:4: rule "x": every: 1ms`)
	f("rules:\n  - name: x\n    sql: SELECT 1\n    condition: {column: n, op: '=>', value: 1}\n", `a.yaml:4: rule "x": condition.op: "=>"`)
	f("rules:\n  - name: x\n    sql: SELECT 1\n    colour: red\n", `line 4: rule: unknown field "colour"`)
	f("rules:\n  - name: x\n    pattern: {stream: s, new: true, speed: 2}\n", `line 3: pattern: unknown field "speed"`)
	f("rules:\n  - name: x\n    sql: SELECT 1\n    annotations:\n      summary: '{{.n'\n", `a.yaml:4: rule "x": annotations.summary:`)
	f("rules:\n  - name: x\n    sql: SELECT 1\n    labels: {alertname: y}\n", `a.yaml:4: rule "x": labels: alertname`)
	f("rules:\n  - name: x\n", `a.yaml:2: rule "x": sql: a rule needs either sql or pattern`)
	f("rules:\n  - name: 'a b'\n    sql: SELECT 1\n", `a.yaml:2: rule "a b": name:`)
	f("rules:\n  - name: x\n    pattern: {stream: s}\n", `a.yaml:3: rule "x": pattern: say what fires`)
	f("rules:\n  - name: x\n    pattern: {stream: s, new: true, min_severity: LOUD}\n", `pattern.min_severity: "LOUD"`)
	f("rules:\n  - name: x\n    sql: SELECT 1\n  - name: x\n    sql: SELECT 2\n", `a.yaml:4: rule "x": name: "x" is used by the rule at a.yaml:2 too`)

	rules, err := ParseRules([]byte("rules:\n  - name: x\n    sql: SELECT 1\n    every: 1ms\n"), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var re *RuleError
	if err := CheckRules(rules); !errors.As(err, &re) || re.Line != 4 || re.Field != "every" || re.File != "a.yaml" {
		t.Errorf("RuleError %+v", re)
	}
}

func TestRuleDefaults(t *testing.T) {
	rules, err := ParseRules([]byte("rules:\n  - name: x\n    sql: SELECT 1\n  - name: p\n    pattern: {stream: s, new: true, min_severity: warn}\n"), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRules(rules); err != nil {
		t.Fatal(err)
	}
	r := rules[0]
	if r.Every != 30*time.Second || r.Window != 30*time.Second || r.Tenant != "default" || !r.Condition.Any() {
		t.Errorf("defaults %+v", r)
	}
	if p := rules[1].Pattern; p.minSev != 13 || p.Baseline != time.Hour || p.MinCount != 10 {
		t.Errorf("pattern defaults %+v", p)
	}
}

func TestExpand(t *testing.T) {
	from := time.Date(2026, 1, 1, 23, 59, 0, 0, time.UTC)
	to := from.Add(2 * time.Minute)
	got := expand("SELECT count(*) FROM logs WHERE $__timeFilter AND timestamp < $__to AND x = '$__fromage'", from, to)
	want := "SELECT count(*) FROM logs WHERE (timestamp >= '2026-01-01T23:59:00.000000Z'::TIMESTAMPTZ AND timestamp < '2026-01-02T00:01:00.000000Z'::TIMESTAMPTZ AND date BETWEEN '2026-01-01'::DATE AND '2026-01-02'::DATE) AND timestamp < '2026-01-02T00:01:00.000000Z'::TIMESTAMPTZ AND x = '$__fromage'"
	if got != want {
		t.Errorf("expand:\n got %s\nwant %s", got, want)
	}
}

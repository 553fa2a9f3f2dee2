package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"slices"
	"time"
)

// Paths of the Manager's HTTP API; both need the query role.
const (
	PathAlerts = "/v1/alerts"
	PathTest   = "/v1/alerts/test"
)

// maxTestBody bounds the body of a test request.
const maxTestBody = 1 << 20

// RuleView is a rule as GET /v1/alerts shows it.
type RuleView struct {
	Name          string            `json:"name"`
	Tenant        string            `json:"tenant"`
	Kind          string            `json:"kind"` // sql or pattern
	SQL           string            `json:"sql,omitempty"`
	Pattern       *PatternView      `json:"pattern,omitempty"`
	Condition     string            `json:"condition"`
	Every         string            `json:"every"`
	For           string            `json:"for"`
	Window        string            `json:"window"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	File          string            `json:"file,omitempty"`
	Line          int               `json:"line,omitempty"`
	// State is the rule's worst: firing, pending or ok.
	State        string         `json:"state"`
	LastEval     time.Time      `json:"last_eval,omitzero"`
	LastDuration float64        `json:"last_duration_ms"`
	LastError    string         `json:"last_error,omitempty"`
	LastValue    *float64       `json:"last_value"`
	History      []Point        `json:"history"`
	Alerts       []InstanceView `json:"alerts"`
}

// PatternView describes a pattern rule.
type PatternView struct {
	Stream      string  `json:"stream"`
	New         bool    `json:"new"`
	MinSeverity int     `json:"min_severity"`
	RateFactor  float64 `json:"rate_factor,omitempty"`
	Baseline    string  `json:"baseline,omitempty"`
}

// InstanceView is one alert of a rule.
type InstanceView struct {
	Instance
	// Link is the dashboard's Explore view of the alert's records,
	// relative to weir's URL.
	Link string `json:"link"`
}

// Rules returns tenant's rules with their state, sorted by name.
func (m *Manager) Rules(tenant string) []RuleView {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	out := []RuleView{}
	for _, k := range slices.Sorted(maps.Keys(m.rules)) {
		r := m.rules[k]
		if r.Tenant != tenant {
			continue
		}
		v := RuleView{Name: r.Name, Tenant: r.Tenant, Kind: "sql", SQL: r.SQL, Condition: r.Condition.String(),
			Every: r.Every.String(), For: r.For.String(), Window: r.Window.String(), Labels: r.Labels, File: r.File, Line: r.Line,
			State: "ok", History: []Point{}, Alerts: []InstanceView{}}
		if r.KeepFiringFor > 0 {
			v.KeepFiringFor = r.KeepFiringFor.String()
		}
		if p := r.Pattern; p != nil {
			v.Kind, v.Condition = "pattern", patternCondition(p)
			v.Pattern = &PatternView{Stream: p.Stream, New: p.New, MinSeverity: p.minSev, RateFactor: p.RateFactor}
			if p.RateFactor > 0 {
				v.Pattern.Baseline = p.Baseline.String()
			}
		}
		if st := m.states[k]; st != nil {
			v.LastEval, v.LastError, v.LastValue = st.LastEval, st.LastError, st.LastValue
			v.LastDuration = float64(st.LastDuration) / float64(time.Millisecond)
			v.History = append(v.History, st.History...)
			for _, ik := range slices.Sorted(maps.Keys(st.Instances)) {
				in := st.Instances[ik]
				v.Alerts = append(v.Alerts, InstanceView{Instance: *in, Link: m.link("", r, *in, now)})
				switch {
				case in.State == StateFiring:
					v.State = "firing"
				case in.State == StatePending && v.State == "ok":
					v.State = "pending"
				}
			}
		}
		out = append(out, v)
	}
	return out
}

func patternCondition(p *PatternRule) string {
	var s string
	if p.New {
		s = fmt.Sprintf("new pattern at severity ≥ %d", p.minSev)
	}
	if p.RateFactor > 0 {
		if s != "" {
			s += ", or "
		}
		s += fmt.Sprintf("rate ≥ %g× the %s before", p.RateFactor, p.Baseline)
	}
	return s
}

// TestRequest is the body of POST /v1/alerts/test: the name of a
// configured rule of the caller's tenant, or rules in YAML (a rule file,
// File naming it in errors) to check and run.
type TestRequest struct {
	Name string `json:"name,omitempty"`
	YAML string `json:"yaml,omitempty"`
	File string `json:"file,omitempty"`
}

// TestResult is one rule run once: its query's result and the alerts
// that would be active now. Running it changes no state and sends
// nothing.
type TestResult struct {
	Rule    string   `json:"rule"`
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// Alerting says, for each row, whether its condition holds.
	Alerting []bool              `json:"alerting"`
	Alerts   []map[string]string `json:"alerts"`
	Value    float64             `json:"value"`
	From     time.Time           `json:"from"`
	To       time.Time           `json:"to"`
	Error    string              `json:"error,omitempty"`
	Took     float64             `json:"took_ms"`
}

// Test runs tenant's rules once, as they would be evaluated now: a
// configured rule by name, or the rules of a YAML rule file (validated
// first, with errors naming file, line and field). Errors of evaluation
// are in each result; the error returned is the request's.
func (m *Manager) Test(ctx context.Context, tenant string, req TestRequest) ([]TestResult, error) {
	var rules []Rule
	switch {
	case req.Name != "" && req.YAML != "":
		return nil, errors.New("give name or yaml, not both")
	case req.Name != "":
		m.mu.Lock()
		r := m.rules[tenant+"/"+req.Name]
		m.mu.Unlock()
		if r == nil {
			return nil, fmt.Errorf("%w: no rule %q", errNotFound, req.Name)
		}
		rules = []Rule{*r}
	case req.YAML != "":
		file := req.File
		if file == "" {
			file = "request"
		}
		rs, err := ParseRules([]byte(req.YAML), file)
		if err != nil {
			return nil, err
		}
		for i := range rs {
			if rs[i].Tenant == "" {
				rs[i].Tenant = tenant
			}
			if rs[i].Tenant != tenant {
				return nil, (&rs[i]).fieldError("tenant", fmt.Errorf("%q: rules can be tested in the caller's tenant (%q) only", rs[i].Tenant, tenant))
			}
		}
		if err := m.CheckRules(ctx, rs); err != nil {
			return nil, err
		}
		rules = rs
	default:
		return nil, errors.New("give the name of a rule or yaml with rules")
	}
	out := make([]TestResult, 0, len(rules))
	for i := range rules {
		r := &rules[i]
		at := time.Now()
		from, to := m.window(r, at)
		res := TestResult{Rule: r.Name, From: from, To: to, Columns: []string{}, Rows: [][]any{}, Alerting: []bool{}, Alerts: []map[string]string{}}
		m.mu.Lock()
		var known map[string]*seenPattern
		var patternsTo time.Time
		if st := m.states[r.key()]; st != nil && req.Name != "" {
			known, patternsTo = st.Patterns, st.PatternsTo
		}
		m.mu.Unlock()
		ectx, cancel := context.WithTimeout(ctx, evalTimeout(r))
		start := time.Now()
		ev, err := m.run(ectx, r, at, known, patternsTo)
		cancel()
		res.Took = float64(time.Since(start)) / float64(time.Millisecond)
		if err != nil {
			res.Error = err.Error()
			out = append(out, res)
			continue
		}
		if ev.result != nil {
			res.Columns = ev.result.Columns
			for _, row := range ev.result.Rows {
				vals := make([]any, len(row))
				for j, v := range row {
					vals[j] = jsonValue(v)
				}
				res.Rows = append(res.Rows, vals)
			}
			res.Alerting = ev.rows
		}
		for _, k := range slices.Sorted(maps.Keys(ev.active)) {
			res.Alerts = append(res.Alerts, ev.active[k].labels)
		}
		res.Value = ev.value
		out = append(out, res)
	}
	return out, nil
}

var errNotFound = errors.New("not found")

// jsonValue makes a driver value encodable as JSON.
func jsonValue(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int64, int32, int, float32, uint64, uint32:
		return x
	case float64:
		if x != x || x > 1e308 || x < -1e308 {
			return fmt.Sprint(x)
		}
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return string(x)
	}
	if _, err := json.Marshal(v); err == nil {
		return v
	}
	return fmt.Sprint(v)
}

// Handler serves GET /v1/alerts (the caller's rules with their state and
// alerts, {"rules": [RuleView...]}) and POST /v1/alerts/test (a
// TestRequest in JSON, answered {"results": [TestResult...]}). Errors are
// {"code": "...", "error": "..."}, as /v1/sql's. The test endpoint wants
// Content-Type: application/json, which a cross-site form cannot send
// without a preflight.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathAlerts, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"rules": m.Rules(m.tenantOf(r.Context()))})
	})
	mux.HandleFunc(PathTest, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST with a JSON body")
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			httpError(w, http.StatusUnsupportedMediaType, "invalid_argument", "Content-Type must be application/json")
			return
		}
		var req TestRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTestBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "invalid_argument", "request body must be JSON {\"name\": \"...\"} or {\"yaml\": \"...\"}: "+err.Error())
			return
		}
		results, err := m.Test(r.Context(), m.tenantOf(r.Context()), req)
		if errors.Is(err, errNotFound) {
			httpError(w, http.StatusNotFound, "not_found", err.Error())
			return
		}
		if err != nil {
			httpError(w, http.StatusBadRequest, "invalid_argument", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"results": results})
	})
	return mux
}

func (m *Manager) tenantOf(ctx context.Context) string {
	if m.deps.TenantOf == nil {
		return "default"
	}
	return m.deps.TenantOf(ctx)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"code": code, "error": msg})
}

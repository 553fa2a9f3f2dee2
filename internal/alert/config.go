package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/internal/record"
)

// Config is the alerts section of weir's configuration file. Rules come
// inline and from RuleFiles, which cmd/weir reads (this package reads no
// files but its own state).
type Config struct {
	// Rules are the rules written in the configuration file itself.
	Rules []Rule `yaml:"rules"`
	// RuleFiles are globs, relative to the configuration file, of files
	// with a "rules:" list each.
	RuleFiles []string `yaml:"rule_files"`
	// Delay is how far behind the clock evaluation windows end, so that
	// records that arrive a little late still count.
	Delay time.Duration `yaml:"delay"`
	// ResendInterval is how often active alerts are sent to the
	// Alertmanager again, as Prometheus does; the Alertmanager expires an
	// alert that is not re-sent before its endsAt.
	ResendInterval time.Duration `yaml:"resend_interval"`
	// ExternalURL is weir's URL as the receivers of notifications reach
	// it, for links to the dashboard; "" means the listen address.
	ExternalURL string `yaml:"external_url"`
	// Alertmanager lists Alertmanagers, each sent every alert.
	Alertmanager AlertmanagerConfig `yaml:"alertmanager"`
	// Webhooks are sent one JSON body per alert that starts firing or
	// resolves.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// QueueSize bounds the notifications waiting per receiver; past it
	// new ones are dropped and counted (weir_alert_notifications_dropped_total).
	QueueSize int `yaml:"queue_size"`
	// MaxRetries bounds the attempts after the first for one
	// notification; waits double from RetryBackoff up to 30 s.
	MaxRetries   int           `yaml:"max_retries"`
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// MaxInstances bounds the rows of one evaluation, and so the alert
	// instances of one rule.
	MaxInstances int `yaml:"max_instances"`
	// ResolvedRetention is how long a resolved alert is kept (and
	// re-sent to the Alertmanager with its endsAt) before it is
	// forgotten.
	ResolvedRetention time.Duration `yaml:"resolved_retention"`
}

// AlertmanagerConfig names the Alertmanagers to notify.
type AlertmanagerConfig struct {
	// URLs are the Alertmanagers' base URLs, such as
	// http://127.0.0.1:9093; alerts are POSTed to <url>/api/v2/alerts.
	URLs    []string      `yaml:"urls"`
	Timeout time.Duration `yaml:"timeout"`
}

// WebhookConfig is one webhook receiver.
type WebhookConfig struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Body is a Go text/template that renders the JSON body from a
	// Notification; "" sends the Notification as JSON. The template
	// function json quotes a value as JSON.
	Body    string            `yaml:"body"`
	Headers map[string]string `yaml:"headers"`
	Timeout time.Duration     `yaml:"timeout"`

	body *template.Template
}

// DefaultConfig returns the defaults: a one-second delay, a one-minute
// resend interval, queues of 256 notifications, five retries from 500 ms.
func DefaultConfig() Config {
	return Config{
		Delay:             time.Second,
		ResendInterval:    time.Minute,
		QueueSize:         256,
		MaxRetries:        5,
		RetryBackoff:      500 * time.Millisecond,
		MaxInstances:      1000,
		ResolvedRetention: 15 * time.Minute,
		Alertmanager:      AlertmanagerConfig{Timeout: 10 * time.Second},
	}
}

// Validate checks everything but the rules (see CheckRules) and compiles
// the webhooks' templates.
func (c *Config) Validate() error {
	switch {
	case c.Delay < 0:
		return errors.New("alerts.delay must not be negative")
	case c.ResendInterval <= 0:
		return errors.New("alerts.resend_interval must be positive")
	case c.QueueSize < 1:
		return errors.New("alerts.queue_size must be positive")
	case c.MaxRetries < 0:
		return errors.New("alerts.max_retries must not be negative")
	case c.RetryBackoff <= 0:
		return errors.New("alerts.retry_backoff must be positive")
	case c.MaxInstances < 1:
		return errors.New("alerts.max_instances must be positive")
	case c.ResolvedRetention <= 0:
		return errors.New("alerts.resolved_retention must be positive")
	case c.Alertmanager.Timeout <= 0:
		return errors.New("alerts.alertmanager.timeout must be positive")
	}
	if c.ExternalURL != "" {
		if err := checkURL(c.ExternalURL); err != nil {
			return fmt.Errorf("alerts.external_url: %w", err)
		}
	}
	for i, u := range c.Alertmanager.URLs {
		if err := checkURL(u); err != nil {
			return fmt.Errorf("alerts.alertmanager.urls[%d]: %w", i, err)
		}
	}
	names := map[string]bool{}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		if w.Name == "" {
			w.Name = fmt.Sprintf("webhook%d", i)
		}
		if names[w.Name] {
			return fmt.Errorf("alerts.webhooks[%d]: name %q is used twice", i, w.Name)
		}
		names[w.Name] = true
		if err := checkURL(w.URL); err != nil {
			return fmt.Errorf("alerts.webhooks[%d].url: %w", i, err)
		}
		if w.Timeout == 0 {
			w.Timeout = 10 * time.Second
		}
		if w.Timeout < 0 {
			return fmt.Errorf("alerts.webhooks[%d].timeout must be positive", i)
		}
		if w.Body != "" {
			t, err := template.New(w.Name).Funcs(templateFuncs).Option("missingkey=zero").Parse(w.Body)
			if err != nil {
				return fmt.Errorf("alerts.webhooks[%d].body: %w", i, err)
			}
			// A body that is not JSON for a typical notification would
			// fail at every send: refuse it now.
			var b bytes.Buffer
			if err := t.Execute(&b, sampleNotification()); err != nil {
				return fmt.Errorf("alerts.webhooks[%d].body: %w", i, err)
			}
			if !json.Valid(b.Bytes()) {
				return fmt.Errorf("alerts.webhooks[%d].body: renders no valid JSON for a sample alert: %.200s", i, b.String())
			}
			w.body = t
		}
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want an http or https URL", s)
	}
	return nil
}

// templateFuncs are the functions of annotation and webhook templates.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// Rule is one alerting rule. Exactly one of SQL and Pattern is set.
type Rule struct {
	// Name identifies the rule within its tenant; it is the alertname
	// label of its alerts.
	Name string `yaml:"name"`
	// Tenant whose data the rule reads; "" is the default tenant.
	Tenant string `yaml:"tenant"`
	// SQL is a read-only query. $__from and $__to become the window's
	// bounds as TIMESTAMPTZ literals and $__timeFilter a condition on
	// timestamp (and date, so only the window's files are read).
	SQL string `yaml:"sql"`
	// Pattern makes this a pattern rule instead.
	Pattern *PatternRule `yaml:"pattern"`
	// Window is the span of time each evaluation looks at, ending Delay
	// before the evaluation; default Every.
	Window time.Duration `yaml:"window"`
	// Every is the evaluation interval; default 30 s.
	Every time.Duration `yaml:"every"`
	// For is how long a condition must hold before the alert fires; it
	// is pending until then.
	For time.Duration `yaml:"for"`
	// KeepFiringFor keeps an alert firing this long after its condition
	// stops holding.
	KeepFiringFor time.Duration `yaml:"keep_firing_for"`
	// Condition picks the rows that are alerts; by default every row.
	Condition Condition `yaml:"condition"`
	// Labels are added to every alert of the rule.
	Labels map[string]string `yaml:"labels"`
	// Annotations are Go text/templates over the row's columns
	// ({{.n}}); they may not change an alert's identity.
	Annotations map[string]string `yaml:"annotations"`
	// LabelColumns are the columns that label (and tell apart) the
	// alerts of a row each; default every column but the condition's.
	LabelColumns []string `yaml:"label_columns"`
	// Explore adds filters to the dashboard link of the rule's alerts,
	// besides the window and the stream, service_name and pattern_id
	// labels.
	Explore Explore `yaml:"explore"`

	// File and Line say where the rule was written, for errors.
	File string `yaml:"-"`
	Line int    `yaml:"-"`
	// lines are the lines of the rule's fields, by key.
	lines       map[string]int
	annotations map[string]*template.Template
}

// Explore are filters of the Explore view (docs/ui.md).
type Explore struct {
	Stream  string `yaml:"stream" json:"stream,omitempty"`
	Service string `yaml:"service" json:"service,omitempty"`
	Sev     int    `yaml:"sev" json:"sev,omitempty"`
	Q       string `yaml:"q" json:"q,omitempty"`
}

// PatternRule watches the log patterns of a stream (the pattern.id and
// pattern.template attributes the pattern processor sets,
// docs/transforms.md).
type PatternRule struct {
	// Stream is the stream watched.
	Stream string `yaml:"stream"`
	// New fires when a pattern id never seen in the stream before
	// appears in a record at MinSeverity or above.
	New bool `yaml:"new"`
	// MinSeverity is a severity name (TRACE, DEBUG, INFO, WARN, ERROR,
	// FATAL) or number; default 0 (any record).
	MinSeverity string `yaml:"min_severity"`
	// RateFactor, above 1, fires when a pattern's rate over the window
	// is at least this many times its rate over the Baseline before it.
	RateFactor float64 `yaml:"rate_factor"`
	// Baseline is the span before the window the rate is compared with;
	// default an hour.
	Baseline time.Duration `yaml:"baseline"`
	// MinCount is the fewest records in the window that make a rate
	// alert; default 10.
	MinCount int `yaml:"min_count"`
	// History is how far before its first window a new rule looks for
	// the patterns the stream has had; default 7 days.
	History time.Duration `yaml:"history"`

	minSev int
}

// Condition compares one column of each row with a threshold; the zero
// Condition (or "any") takes every row.
type Condition struct {
	Column string  `yaml:"column" json:"column,omitempty"`
	Op     string  `yaml:"op" json:"op,omitempty"`
	Value  float64 `yaml:"value" json:"value"`
}

// Any reports whether the condition takes every row.
func (c Condition) Any() bool { return c.Column == "" }

// String renders the condition as in the configuration.
func (c Condition) String() string {
	if c.Any() {
		return "any row"
	}
	return fmt.Sprintf("%s %s %s", c.Column, c.Op, strconv.FormatFloat(c.Value, 'g', -1, 64))
}

var ops = map[string]func(a, b float64) bool{
	">":  func(a, b float64) bool { return a > b },
	">=": func(a, b float64) bool { return a >= b },
	"<":  func(a, b float64) bool { return a < b },
	"<=": func(a, b float64) bool { return a <= b },
	"==": func(a, b float64) bool { return a == b },
	"!=": func(a, b float64) bool { return a != b },
}

// UnmarshalYAML takes "any" or a mapping {column, op, value}.
func (c *Condition) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "any" || n.Value == "" {
			*c = Condition{}
			return nil
		}
		return fmt.Errorf("line %d: condition %q: want any or {column: n, op: \">\", value: 10}", n.Line, n.Value)
	}
	if err := checkKeys(n, "condition", "column", "op", "value"); err != nil {
		return err
	}
	type plain Condition
	return n.Decode((*plain)(c))
}

// UnmarshalYAML decodes a rule, refusing unknown keys and remembering
// the line of each field for errors.
func (r *Rule) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a rule must be a mapping", n.Line)
	}
	if err := checkKeys(n, "rule", "name", "tenant", "sql", "pattern", "window", "every", "for", "keep_firing_for",
		"condition", "labels", "annotations", "label_columns", "explore"); err != nil {
		return err
	}
	type plain Rule
	if err := n.Decode((*plain)(r)); err != nil {
		return err
	}
	r.Line = n.Line
	r.lines = map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		r.lines[k] = n.Content[i].Line
		switch k {
		case "pattern":
			if err := checkKeys(n.Content[i+1], "pattern", "stream", "new", "min_severity", "rate_factor", "baseline", "min_count", "history"); err != nil {
				return err
			}
		case "explore":
			if err := checkKeys(n.Content[i+1], "explore", "stream", "service", "sev", "q"); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkKeys refuses keys of a mapping that are not in known, naming the
// line. node.Decode does not apply the decoder's KnownFields.
func checkKeys(n *yaml.Node, what string, known ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s must be a mapping", n.Line, what)
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(known, k.Value) {
			return fmt.Errorf("line %d: %s: unknown field %q; known are %s", k.Line, what, k.Value, strings.Join(known, ", "))
		}
	}
	return nil
}

// RuleError is a rule that failed validation: where it is written and
// which field is wrong.
type RuleError struct {
	File  string
	Line  int
	Rule  string
	Field string
	Err   error
}

func (e *RuleError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RuleError) Unwrap() error { return e.Err }

// fieldError makes a RuleError at the line of field (or the rule's).
func (r *Rule) fieldError(field string, err error) *RuleError {
	line := r.Line
	top, _, _ := strings.Cut(field, ".")
	if l, ok := r.lines[top]; ok {
		line = l
	}
	return &RuleError{File: r.File, Line: line, Rule: r.Name, Field: field, Err: err}
}

// ParseRules decodes a rule file: a YAML document with a "rules" list.
// file names it in errors and in the rules.
func ParseRules(data []byte, file string) ([]Rule, error) {
	var doc struct {
		Rules []Rule `yaml:"rules"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for i := range doc.Rules {
		doc.Rules[i].File = file
	}
	return doc.Rules, nil
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	labelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// severities are the severity names and their lowest numbers.
var severities = map[string]int{"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}

// Check validates the rule's fields (not its SQL, which needs the query
// engine: see Manager.SetRules) and fills in defaults. Errors are
// *RuleError.
func (r *Rule) Check() error {
	if !nameRE.MatchString(r.Name) {
		return r.fieldError("name", fmt.Errorf("%q: want 1 to 128 letters, digits, '_', '.', ':' or '-'", r.Name))
	}
	if r.Tenant == "" {
		r.Tenant = record.DefaultTenant
	}
	if err := record.ValidateTenant(r.Tenant); err != nil {
		return r.fieldError("tenant", err)
	}
	if (r.SQL == "") == (r.Pattern == nil) {
		return r.fieldError("sql", errors.New("a rule needs either sql or pattern, not both"))
	}
	if r.Every == 0 {
		r.Every = 30 * time.Second
	}
	if r.Every < 100*time.Millisecond {
		return r.fieldError("every", fmt.Errorf("%s: want at least 100ms", r.Every))
	}
	if r.Window == 0 {
		r.Window = r.Every
	}
	if r.Window < 0 {
		return r.fieldError("window", errors.New("must be positive"))
	}
	if r.For < 0 {
		return r.fieldError("for", errors.New("must not be negative"))
	}
	if r.KeepFiringFor < 0 {
		return r.fieldError("keep_firing_for", errors.New("must not be negative"))
	}
	if !r.Condition.Any() {
		if _, ok := ops[r.Condition.Op]; !ok {
			return r.fieldError("condition.op", fmt.Errorf("%q: want one of >, >=, <, <=, ==, !=", r.Condition.Op))
		}
	} else if r.Condition.Op != "" {
		return r.fieldError("condition.column", errors.New("a condition with an op needs a column"))
	}
	for k := range r.Labels {
		if !labelRE.MatchString(k) || strings.HasPrefix(k, "__") {
			return r.fieldError("labels", fmt.Errorf("%q is not a label name: want letters, digits and '_', not starting with a digit or __", k))
		}
		if k == "alertname" {
			return r.fieldError("labels", errors.New("alertname is the rule's name and may not be set"))
		}
	}
	r.annotations = map[string]*template.Template{}
	for k, text := range r.Annotations {
		if !labelRE.MatchString(k) {
			return r.fieldError("annotations", fmt.Errorf("%q is not an annotation name", k))
		}
		t, err := template.New(k).Funcs(templateFuncs).Option("missingkey=zero").Parse(text)
		if err != nil {
			return r.fieldError("annotations."+k, err)
		}
		r.annotations[k] = t
	}
	if r.Explore.Sev < 0 || r.Explore.Sev > 24 {
		return r.fieldError("explore.sev", fmt.Errorf("%d: want 0 to 24", r.Explore.Sev))
	}
	if p := r.Pattern; p != nil {
		if err := record.ValidateStream(p.Stream); err != nil {
			return r.fieldError("pattern.stream", err)
		}
		if !p.New && p.RateFactor == 0 {
			return r.fieldError("pattern", errors.New("say what fires: new: true, rate_factor: N, or both"))
		}
		if p.RateFactor != 0 && p.RateFactor <= 1 {
			return r.fieldError("pattern.rate_factor", fmt.Errorf("%g: want more than 1", p.RateFactor))
		}
		if p.Baseline == 0 {
			p.Baseline = time.Hour
		}
		if p.Baseline < 0 {
			return r.fieldError("pattern.baseline", errors.New("must be positive"))
		}
		if p.MinCount == 0 {
			p.MinCount = 10
		}
		if p.History == 0 {
			p.History = 7 * 24 * time.Hour
		}
		if p.History < 0 {
			return r.fieldError("pattern.history", errors.New("must be positive"))
		}
		if p.MinCount < 0 {
			return r.fieldError("pattern.min_count", errors.New("must not be negative"))
		}
		if p.MinSeverity != "" {
			if n, ok := severities[strings.ToUpper(p.MinSeverity)]; ok {
				p.minSev = n
			} else if n, err := strconv.Atoi(p.MinSeverity); err == nil && n >= 0 && n <= 24 {
				p.minSev = n
			} else {
				return r.fieldError("pattern.min_severity", fmt.Errorf("%q: want TRACE, DEBUG, INFO, WARN, ERROR, FATAL or 0 to 24", p.MinSeverity))
			}
		}
		if !r.Condition.Any() || len(r.LabelColumns) > 0 {
			return r.fieldError("condition", errors.New("pattern rules have their own condition and labels"))
		}
	}
	return nil
}

// CheckRules checks every rule (Rule.Check) and that names are unique
// within a tenant.
func CheckRules(rules []Rule) error {
	seen := map[string]*Rule{}
	for i := range rules {
		r := &rules[i]
		if err := r.Check(); err != nil {
			return err
		}
		k := r.key()
		if prev, ok := seen[k]; ok {
			return r.fieldError("name", fmt.Errorf("%q is used by the rule at %s:%d too", r.Name, prev.File, prev.Line))
		}
		seen[k] = r
	}
	return nil
}

// key identifies the rule: tenant and name.
func (r *Rule) key() string { return r.Tenant + "/" + r.Name }

// sampleNotification is what a webhook template is tried on.
func sampleNotification() Notification {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return Notification{
		Status: "firing", Rule: "sample", Tenant: record.DefaultTenant, Value: 12,
		Labels:      map[string]string{"alertname": "sample", "severity": "page"},
		Annotations: map[string]string{"summary": `12 "errors"`},
		StartsAt:    t, GeneratorURL: "http://127.0.0.1:7070/#/explore",
	}
}

package transform

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rules maps stream names to the processors their records go through at
// ingest, in order. The key "*" applies to streams without rules of their
// own. Rules are usually read from the "streams" section of the
// configuration file (see docs/transforms.md); NewPipeline checks them.
type Rules map[string]Chain

// Chain is the ordered list of processors of one stream.
type Chain struct {
	Processors []Processor `yaml:"processors"`
}

// Processor is one step of a chain. Exactly one of its fields is set;
// in YAML it is a mapping with one key naming the kind:
//
//   - parse: {format: regex, pattern: '^(?P<level>\w+) (?P<message>.*)$'}
//   - timestamp: {field: time, layouts: ["2006-01-02 15:04:05"]}
//   - severity: {field: level}
//   - filter: 'severity >= WARN'          # keep records where true
//   - drop: 'attr("path") == "/health"'   # drop records where true
//   - set: {env: prod}
//   - rename: {msg: message}
//   - remove: [password]
//   - cast: {status: int}
//   - redact: {patterns: [email, credit_card]}
//   - sample: {rate: 0.1, key: trace_id}
//   - route: [{if: 'severity >= ERROR', to: errors}]
//   - pattern: {field: message}
type Processor struct {
	Parse     *ParseStep     `yaml:"parse"`
	Timestamp *TimestampStep `yaml:"timestamp"`
	Severity  *SeverityStep  `yaml:"severity"`
	Filter    string         `yaml:"filter"`
	Drop      string         `yaml:"drop"`
	Set       map[string]string
	Rename    map[string]string
	Remove    []string
	Cast      map[string]string
	Redact    *RedactStep  `yaml:"redact"`
	Sample    *SampleStep  `yaml:"sample"`
	Route     []RouteStep  `yaml:"route"`
	Pattern   *PatternStep `yaml:"pattern"`

	// Line is the processor's line in the configuration file, for errors;
	// 0 when it was not read from a file.
	Line int `yaml:"-"`
}

// OnError says what happens to a record a step fails on.
type OnError string

// The choices of OnError. The empty value means the step's default:
// OnDeadLetter for parse, timestamp and cast; OnKeep for severity and
// pattern.
const (
	OnDeadLetter OnError = "dead_letter" // send the original record to the dead-letter stream
	OnKeep       OnError = "keep"        // keep the record as it was before the step, counting the failure
	OnDrop       OnError = "drop"        // drop the record, counting it
)

// ParseStep parses a field's text into attributes.
type ParseStep struct {
	// Format is one of json, logfmt, syslog5424, syslog3164, common,
	// combined, dissect, regex and auto (detect per record).
	Format string `yaml:"format"`
	// Pattern is the pattern of format dissect (fields between literal
	// delimiters: "%{ts} %{+ts} %{level} %{message}", see parse.Dissect)
	// or the regular expression of format regex (RE2 syntax, its named
	// groups become attributes). Dissect is many times faster; regex is
	// for formats with optional or alternative parts.
	Pattern string `yaml:"pattern"`
	// Trim removes white space around every extracted value.
	Trim bool `yaml:"trim"`
	// Field is the text parsed: "body" (the default) or an attribute.
	Field string `yaml:"field"`
	// Prefix is put before every extracted key.
	Prefix string `yaml:"prefix"`
	// Body, when set, names an extracted field whose value replaces the
	// record's body (e.g. "message"); the original text stays in the
	// attribute "log.original" only if KeepOriginal is set.
	Body         string  `yaml:"body"`
	KeepOriginal bool    `yaml:"keep_original"`
	OnError      OnError `yaml:"on_error"`
}

// TimestampStep sets the record's timestamp from a field.
type TimestampStep struct {
	Field string `yaml:"field"`
	// Layouts are Go time layouts or the names rfc3339, rfc3339nano,
	// rfc3164, unix, unix_ms, unix_us, unix_ns and common_log; empty
	// means common layouts are detected.
	Layouts []string `yaml:"layouts"`
	// Location is the IANA zone of layouts without an offset (default
	// UTC).
	Location string  `yaml:"location"`
	OnError  OnError `yaml:"on_error"`
}

// SeverityStep sets severity number and text from a field holding a
// level name ("warn", "E", "Error") or a syslog severity digit.
type SeverityStep struct {
	Field string `yaml:"field"`
	// Map adds or overrides level names (compared case-insensitively):
	// e.g. {combo: INFO, notice: INFO}. Values are OpenTelemetry names.
	Map     map[string]string `yaml:"map"`
	OnError OnError           `yaml:"on_error"`
}

// RedactStep masks sensitive text.
type RedactStep struct {
	// Patterns are built-in names (email, credit_card, ipv4, bearer_token,
	// api_key) or regular expressions; matches in the body and in every
	// attribute value (or only In) are replaced.
	Patterns []string `yaml:"patterns"`
	// Fields are attributes whose whole value is replaced.
	Fields []string `yaml:"fields"`
	// In limits Patterns to these fields ("body" or attribute keys).
	In          []string `yaml:"in"`
	Replacement string   `yaml:"replacement"` // default "[REDACTED]"
}

// SampleStep keeps a share of the records.
type SampleStep struct {
	Rate float64 `yaml:"rate"` // share kept, in (0, 1]
	// Key, when set, names a field whose value decides: records with the
	// same value are all kept or all dropped (e.g. trace_id). Without it
	// the decision is per record.
	Key string `yaml:"key"`
}

// RouteStep sends the records matching If to stream To; the first
// matching route wins and later processors of this chain do not run on
// the routed record (the destination's own chain does not run either).
type RouteStep struct {
	If string `yaml:"if"`
	To string `yaml:"to"`
}

// PatternStep computes the record's log pattern: the template of its
// message with variable parts masked, and a stable id for it. They are
// stored as the attributes "pattern.id" (16 hex digits) and
// "pattern.template".
type PatternStep struct {
	Field      string   `yaml:"field"` // default body
	Masks      []string `yaml:"masks"`
	Similarity float64  `yaml:"similarity"`
	Depth      int      `yaml:"depth"`
	Delimiters string   `yaml:"delimiters"`
}

// kinds are the YAML keys of processors, in Processor's field order.
var kinds = []string{"parse", "timestamp", "severity", "filter", "drop", "set", "rename", "remove", "cast", "redact", "sample", "route", "pattern"}

// UnmarshalYAML reads a processor, checking it has exactly one kind and
// no unknown keys, and remembers its line.
func (p *Processor) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return fmt.Errorf("line %d: a processor is a mapping with exactly one of the keys %s", n.Line, strings.Join(kinds, ", "))
	}
	key, val := n.Content[0].Value, n.Content[1]
	i := slices.Index(kinds, key)
	if i < 0 {
		return fmt.Errorf("line %d: unknown processor %q (want one of %s)", n.Line, key, strings.Join(kinds, ", "))
	}
	*p = Processor{Line: n.Line}
	f := reflect.ValueOf(p).Elem().Field(i)
	if err := checkKeys(val, f.Type()); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if err := val.Decode(f.Addr().Interface()); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// checkKeys reports keys of mapping n that t (a struct or pointer to
// one, or a slice of them) has no field for.
func checkKeys(n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			if err := checkKeys(c, t.Elem()); err != nil {
				return err
			}
		}
		return nil
	}
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return nil
	}
	var known []string
	for i := range t.NumField() {
		known = append(known, strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0])
	}
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			return fmt.Errorf("line %d: unknown field %q (want one of %s)", k.Line, k.Value, strings.Join(known, ", "))
		}
	}
	return nil
}

// kind returns the YAML key of the processor's kind, or "" if it has
// none or several.
func (p *Processor) kind() string {
	v := reflect.ValueOf(p).Elem()
	found := ""
	for i, k := range kinds {
		if !v.Field(i).IsZero() {
			if found != "" {
				return ""
			}
			found = k
		}
	}
	return found
}

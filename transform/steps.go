package transform

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/parse"
)

// parseStep runs a parser over a field.
type parseStep struct {
	parser       parse.Parser
	field        string
	prefix       string
	body         string
	keepOriginal bool
	trim         bool
}

var formats = []string{"json", "logfmt", "syslog5424", "syslog3164", "common", "combined", "dissect", "regex", "auto"}

func newParseStep(c *ParseStep) (*parseStep, error) {
	s := &parseStep{field: c.Field, prefix: c.Prefix, body: c.Body, keepOriginal: c.KeepOriginal, trim: c.Trim}
	if s.field == "" {
		s.field = "body"
	}
	if c.Pattern != "" && c.Format != "regex" && c.Format != "dissect" {
		return nil, fmt.Errorf("pattern is only for formats dissect and regex")
	}
	switch c.Format {
	case "json":
		s.parser = parse.JSON(parse.JSONOptions{})
	case "logfmt":
		s.parser = parse.Logfmt()
	case "syslog5424":
		s.parser = parse.Syslog5424()
	case "syslog3164":
		s.parser = parse.Syslog3164()
	case "common":
		s.parser = parse.CommonLog()
	case "combined":
		s.parser = parse.CombinedLog()
	case "auto":
		s.parser = parse.Auto()
	case "dissect":
		d, err := parse.Dissect(c.Pattern)
		if err != nil {
			return nil, fmt.Errorf("pattern: %w", err)
		}
		s.parser = d
	case "regex":
		re, err := parse.Regex(c.Pattern)
		if err != nil {
			return nil, fmt.Errorf("pattern: %w", err)
		}
		s.parser = re
	default:
		return nil, fmt.Errorf("format %q: want one of %s", c.Format, strings.Join(formats, ", "))
	}
	return s, nil
}

func (s *parseStep) apply(w *work) error {
	text, ok := w.get(s.field)
	if !ok {
		return fmt.Errorf("no field %q", s.field)
	}
	n := len(w.r.Attributes)
	attrs, err := s.parser.Parse(w.r.Attributes, text)
	if err != nil {
		w.r.Attributes = attrs[:n]
		return err
	}
	var body string
	hasBody := false
	// Extracted keys replace earlier attributes of the same name.
	for i := n; i < len(attrs); i++ {
		attrs[i].Key = s.prefix + attrs[i].Key
		if s.trim {
			attrs[i].Value = strings.TrimSpace(attrs[i].Value)
		}
		if s.body != "" && attrs[i].Key == s.prefix+s.body {
			body, hasBody = attrs[i].Value, true
		}
		for j := 0; j < n; j++ {
			if attrs[j].Key == attrs[i].Key {
				attrs[j].Key = "" // marked for removal
			}
		}
	}
	w.r.Attributes = slices.DeleteFunc(attrs, func(kv record.KV) bool { return kv.Key == "" })
	if hasBody {
		if s.keepOriginal {
			w.set("log.original", w.r.Body)
		}
		w.r.Body = body
	}
	return nil
}

// timestampStep sets the timestamp from a field.
type timestampStep struct {
	field string
	tp    *parse.TimeParser
}

func newTimestampStep(c *TimestampStep, now func() time.Time) (*timestampStep, error) {
	if c.Field == "" {
		return nil, errors.New("field is required")
	}
	loc := time.UTC
	if c.Location != "" {
		l, err := time.LoadLocation(c.Location)
		if err != nil {
			return nil, fmt.Errorf("location: %w", err)
		}
		loc = l
	}
	tp, err := parse.NewTimeParser(parse.TimeConfig{Layouts: c.Layouts, Location: loc, Now: now})
	if err != nil {
		return nil, fmt.Errorf("layouts: %w", err)
	}
	return &timestampStep{field: c.Field, tp: tp}, nil
}

func (s *timestampStep) apply(w *work) error {
	text, ok := w.get(s.field)
	if !ok {
		return fmt.Errorf("no field %q", s.field)
	}
	ns, err := s.tp.Parse(text)
	if err != nil {
		return err
	}
	w.r.Timestamp = ns
	return nil
}

// severityStep sets severity number and text from a level field.
type severityStep struct {
	field string
	m     map[string]int32
}

func newSeverityStep(c *SeverityStep) (*severityStep, error) {
	if c.Field == "" {
		return nil, errors.New("field is required")
	}
	s := &severityStep{field: c.Field}
	for k, v := range c.Map {
		n := record.ParseSeverity(v)
		if n == 0 {
			return nil, fmt.Errorf("map: %s: %q is not a severity (want TRACE, DEBUG, INFO, WARN, ERROR or FATAL)", k, v)
		}
		if s.m == nil {
			s.m = map[string]int32{}
		}
		s.m[strings.ToLower(k)] = n
	}
	return s, nil
}

func (s *severityStep) apply(w *work) error {
	text, ok := w.get(s.field)
	if !ok {
		return fmt.Errorf("no field %q", s.field)
	}
	var n int32
	ok = false
	if s.m != nil {
		n, ok = s.m[strings.ToLower(text)]
	}
	if !ok {
		n, _ = parse.Severity(text)
	}
	if n == 0 {
		return fmt.Errorf("unknown level %q", text)
	}
	w.r.SeverityNumber = n
	w.r.SeverityText = record.SeverityText(n)
	return nil
}

type filterStep struct {
	prog   *vm.Program
	keepIf bool
}

func (s *filterStep) apply(w *work) error {
	ok, err := w.eval(s.prog)
	if err != nil {
		return err
	}
	if ok != s.keepIf {
		return errDrop
	}
	return nil
}

type setStep map[string]string

func (s setStep) apply(w *work) error {
	for _, k := range sortedKeys(s) {
		w.set(k, s[k])
	}
	return nil
}

type renameStep struct{ from, to []string }

func (s *renameStep) apply(w *work) error {
	for i, f := range s.from {
		if v, ok := w.get(f); ok {
			w.remove(f)
			w.set(s.to[i], v)
		}
	}
	return nil
}

type removeStep []string

func (s removeStep) apply(w *work) error {
	for _, f := range s {
		w.remove(f)
	}
	return nil
}

type castStep struct{ fields, types []string }

func (s *castStep) apply(w *work) error {
	for i, f := range s.fields {
		v, ok := w.get(f)
		if !ok {
			continue
		}
		var out string
		switch s.types[i] {
		case "int":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				fl, ferr := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if ferr != nil || fl != float64(int64(fl)) {
					return fmt.Errorf("cast %s: %q is not an integer", f, v)
				}
				n = int64(fl)
			}
			out = strconv.FormatInt(n, 10)
		case "float":
			fl, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return fmt.Errorf("cast %s: %q is not a number", f, v)
			}
			out = strconv.FormatFloat(fl, 'g', -1, 64)
		case "bool":
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("cast %s: %q is not a boolean", f, v)
			}
			out = strconv.FormatBool(b)
		default:
			out = v
		}
		w.set(f, out)
	}
	return nil
}

// builtinRedactions are the named patterns of redact.
var builtinRedactions = map[string]string{
	"email":        `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`,
	"credit_card":  `\b(?:\d[ -]?){12,18}\d\b`,
	"ipv4":         `\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b`,
	"bearer_token": `(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*`,
	"api_key":      `(?i)\b(?:api[_-]?key|token|secret|password)\s*[=:]\s*[^\s,;&"']+`,
}

type redactStep struct {
	res    []*regexp.Regexp
	fields []string
	in     []string
	repl   string
}

func newRedactStep(c *RedactStep) (*redactStep, error) {
	s := &redactStep{fields: c.Fields, in: c.In, repl: c.Replacement}
	if s.repl == "" {
		s.repl = "[REDACTED]"
	}
	if len(c.Patterns) == 0 && len(c.Fields) == 0 {
		return nil, errors.New("set patterns or fields")
	}
	for _, p := range c.Patterns {
		src := p
		if b, ok := builtinRedactions[p]; ok {
			src = b
		}
		re, err := regexp.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("patterns: %q: %w", p, err)
		}
		s.res = append(s.res, re)
	}
	return s, nil
}

func (s *redactStep) redact(v string) string {
	for _, re := range s.res {
		v = re.ReplaceAllLiteralString(v, s.repl)
	}
	return v
}

func (s *redactStep) apply(w *work) error {
	for _, f := range s.fields {
		if _, ok := w.get(f); ok {
			w.set(f, s.repl)
		}
	}
	if len(s.res) == 0 {
		return nil
	}
	if len(s.in) > 0 {
		for _, f := range s.in {
			if v, ok := w.get(f); ok {
				w.set(f, s.redact(v))
			}
		}
		return nil
	}
	w.r.Body = s.redact(w.r.Body)
	for i := range w.r.Attributes {
		w.r.Attributes[i].Value = s.redact(w.r.Attributes[i].Value)
	}
	return nil
}

// hashString is 64-bit FNV-1a finished with mix: fixed, so that sampling
// decisions agree across restarts and nodes.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// sampleStep keeps a record when a hash of its key (or of its body and
// timestamp) falls below limit: deterministic, so a retried batch is
// sampled the same way.
type sampleStep struct {
	limit uint64
	all   bool
	key   string
}

func (s *sampleStep) apply(w *work) error {
	var h uint64
	if s.key != "" {
		v, _ := w.get(s.key)
		h = hashString(v)
	} else {
		h = mix(hashString(w.r.Body) ^ uint64(w.r.Timestamp)*0x9E3779B97F4A7C15)
	}
	if h >= s.limit && !s.all {
		return errDrop
	}
	return nil
}

// mix is a 64-bit finaliser (splitmix64).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

type routeStep struct {
	ifs []*vm.Program
	to  []string
}

func (s *routeStep) apply(w *work) error {
	for i, prog := range s.ifs {
		ok, err := w.eval(prog)
		if err != nil {
			return err
		}
		if ok {
			w.to = s.to[i]
			return errRoute
		}
	}
	return nil
}

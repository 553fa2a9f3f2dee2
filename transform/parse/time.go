package parse

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
)

// Errors of TimeParser. Callers match them with errors.Is.
var (
	// ErrTimestamp: the text matches none of the layouts, or names a time
	// that int64 nanoseconds since the epoch cannot hold (before 1677 or
	// after 2262).
	ErrTimestamp = errors.New("unrecognized timestamp")
	// ErrLayout: NewTimeParser was given a layout with no time in it.
	ErrLayout = errors.New("invalid time layout")
)

// TimeConfig configures a TimeParser.
type TimeConfig struct {
	// Layouts are tried in order. Each is a Go time layout (see package
	// time; a fraction of a second after the seconds is accepted with '.'
	// or ',' even when the layout has none, and ",000" in a layout works
	// too) or one of these names:
	//
	//	rfc3339      2006-01-02T15:04:05Z07:00, any fraction
	//	rfc3339nano  2006-01-02T15:04:05.999999999Z07:00
	//	rfc3164      Jan _2 15:04:05
	//	common_log   02/Jan/2006:15:04:05 -0700
	//	unix         seconds since the epoch, optional fraction
	//	unix_ms, unix_us, unix_ns  the same in ms, µs, ns
	//	unix_auto    a number whose integer digits pick the unit (below)
	//
	// Empty means auto: the layouts below are tried (RFC 3339 with 'T' or
	// ' ' and with or without zone, "2006-01-02 15:04:05" with any
	// fraction, "2006/01/02 15:04:05", syslog with and without year, common
	// log, ANSI C, RFC 1123 with numeric zone), then a plain number whose
	// integer digits pick the unit: up to 10 s, 11–13 ms, 14–16 µs, 17–19
	// ns.
	Layouts []string
	// Location is the time zone of layouts without one. Default UTC.
	Location *time.Location
	// Now returns the current time; layouts without a year take the year
	// of Now, or the year before when that would put the time more than
	// 24 hours after Now (the rsyslog rule for logs of late December read
	// in January); Feb 29 goes to the latest leap year that fits. Default
	// time.Now.
	Now func() time.Time
}

// autoLayouts are the layouts tried when TimeConfig.Layouts is empty.
var autoLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"2006/01/02 15:04:05",
	"Jan _2 15:04:05",
	"Jan _2 2006 15:04:05",
	"02/Jan/2006:15:04:05 -0700",
	time.ANSIC,
	time.RFC1123Z,
	"unix_auto",
}

type layoutKind uint8

const (
	kindGo layoutKind = iota
	kindUnixAuto
	kindUnixS
	kindUnixMS
	kindUnixUS
	kindUnixNS
)

type timeLayout struct {
	kind     layoutKind
	text     string // Go layout, for kindGo
	yearless bool   // the layout has no year: fill it in from Now
}

// TimeParser converts timestamp text to nanoseconds since the Unix epoch.
//
// It is safe for concurrent use. It remembers which layout matched last
// and tries that one first, so a stream of one format costs one attempt
// per line (BenchmarkTimeParse: auto_same_format against
// auto_alternating, where every line misses). The index is an atomic that
// is written only when the matching layout changes, so readers on many
// cores share its cache line and it needs no padding.
type TimeParser struct {
	layouts []timeLayout
	loc     *time.Location
	now     func() time.Time
	last    atomic.Int32
}

// NewTimeParser returns a TimeParser for cfg. It fails with ErrLayout for
// a Go layout that holds no time elements or does not parse its own
// output.
func NewTimeParser(cfg TimeConfig) (*TimeParser, error) {
	p := &TimeParser{loc: cfg.Location, now: cfg.Now}
	if p.loc == nil {
		p.loc = time.UTC
	}
	if p.now == nil {
		p.now = time.Now
	}
	names := cfg.Layouts
	if len(names) == 0 {
		names = autoLayouts
	}
	for _, name := range names {
		l, err := newTimeLayout(name)
		if err != nil {
			return nil, err
		}
		p.layouts = append(p.layouts, l)
	}
	return p, nil
}

func newTimeLayout(name string) (timeLayout, error) {
	switch name {
	case "rfc3339":
		name = time.RFC3339
	case "rfc3339nano":
		name = time.RFC3339Nano
	case "rfc3164":
		name = "Jan _2 15:04:05"
	case "common_log":
		name = "02/Jan/2006:15:04:05 -0700"
	case "unix":
		return timeLayout{kind: kindUnixS}, nil
	case "unix_ms":
		return timeLayout{kind: kindUnixMS}, nil
	case "unix_us":
		return timeLayout{kind: kindUnixUS}, nil
	case "unix_ns":
		return timeLayout{kind: kindUnixNS}, nil
	case "unix_auto":
		return timeLayout{kind: kindUnixAuto}, nil
	}
	// A layout with time elements formats a time other than the
	// reference time differently from itself, and parses what it formats.
	probe := time.Date(2001, 11, 12, 13, 14, 15, 0, time.UTC)
	out := probe.Format(name)
	if out == name {
		return timeLayout{}, fmt.Errorf("parse: %w %q: no time elements (see package time)", ErrLayout, name)
	}
	if _, err := time.Parse(name, out); err != nil {
		return timeLayout{}, fmt.Errorf("parse: %w %q: %v", ErrLayout, name, err)
	}
	yearless := !strings.Contains(name, "06") // "2006" or "06"
	return timeLayout{kind: kindGo, text: name, yearless: yearless}, nil
}

// The range of time that int64 nanoseconds since the epoch hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// Parse returns s, less surrounding white space, as nanoseconds since the
// Unix epoch. It fails with ErrTimestamp.
func (p *TimeParser) Parse(s string) (int64, error) {
	s = strings.TrimSpace(s)
	k := int(p.last.Load())
	if ns, ok := p.try(k, s); ok {
		return ns, nil
	}
	for i := range p.layouts {
		if i == k {
			continue
		}
		if ns, ok := p.try(i, s); ok {
			p.last.Store(int32(i))
			return ns, nil
		}
	}
	return 0, fmt.Errorf("parse: %w %q: matches none of the %d layouts", ErrTimestamp, truncate(s, 64), len(p.layouts))
}

// try parses s with layout i.
func (p *TimeParser) try(i int, s string) (int64, bool) {
	l := &p.layouts[i]
	switch l.kind {
	case kindUnixAuto:
		return parseUnix(s, 0)
	case kindUnixS:
		return parseUnix(s, 1e9)
	case kindUnixMS:
		return parseUnix(s, 1e6)
	case kindUnixUS:
		return parseUnix(s, 1e3)
	case kindUnixNS:
		return parseUnix(s, 1)
	}
	t, err := time.ParseInLocation(l.text, s, p.loc)
	if err != nil {
		return 0, false
	}
	if l.yearless && t.Year() == 0 {
		var ok bool
		if t, ok = p.fillYear(t); !ok {
			return 0, false
		}
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, false
	}
	return t.UnixNano(), true
}

// fillYear moves t (parsed without a year) into the latest year that puts
// it no more than 24 hours after now and exists in that year (Feb 29).
func (p *TimeParser) fillYear(t time.Time) (time.Time, bool) {
	now := p.now().In(t.Location())
	limit := now.Add(24 * time.Hour)
	for y := now.Year(); y > now.Year()-9; y-- {
		c := time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
		if c.Day() != t.Day() || c.After(limit) {
			continue
		}
		return c, true
	}
	return time.Time{}, false
}

// parseUnix parses "digits[.digits]" as a count of units of unit ns since
// the epoch; unit 0 picks the unit from the number of integer digits.
func parseUnix(s string, unit int64) (int64, bool) {
	i := 0
	var n uint64
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		if i >= 19 {
			return 0, false
		}
		n = n*10 + uint64(s[i]-'0')
		i++
	}
	if i == 0 {
		return 0, false
	}
	intDigits := i
	frac := ""
	if i < len(s) && s[i] == '.' {
		frac = s[i+1:]
		if frac == "" {
			return 0, false
		}
		for k := 0; k < len(frac); k++ {
			if frac[k] < '0' || frac[k] > '9' {
				return 0, false
			}
		}
	} else if i < len(s) {
		return 0, false
	}
	if unit == 0 {
		switch {
		case intDigits <= 10:
			unit = 1e9
		case intDigits <= 13:
			unit = 1e6
		case intDigits <= 16:
			unit = 1e3
		default:
			unit = 1
		}
	}
	if n > uint64(math.MaxInt64/unit) {
		return 0, false
	}
	ns := int64(n) * unit
	// The fraction, to nanosecond precision; further digits are dropped.
	scale := unit
	for k := 0; k < len(frac) && scale > 1; k++ {
		scale /= 10
		ns += int64(frac[k]-'0') * scale
	}
	if ns < 0 { // overflow from the fraction
		return 0, false
	}
	return ns, true
}

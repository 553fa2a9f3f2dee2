package transform

import (
	"errors"
	"fmt"
	"strings"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

// program is a checked set of rules.
type program struct {
	chains map[string]*chain
	any    *chain // rules of "*"
}

func (pr *program) chain(stream string) *chain {
	if stream == logschema.DeadLetterStream {
		return nil
	}
	if c, ok := pr.chains[stream]; ok {
		return c
	}
	return pr.any
}

// chain is one stream's compiled processors.
type chain struct {
	steps []compiled
}

type compiled struct {
	name  string // "processors[i].<kind>", for dead letters
	step  step
	onErr OnError
}

// step is one processor. apply changes the record in w; an error is
// handled by the step's OnError.
type step interface {
	apply(w *work) error
}

type fate int

const (
	fateKeep fate = iota
	fateDrop
	fateDead
	fateRoute
)

// errDrop is returned by steps that drop the record.
var errDrop = errors.New("dropped")

// errRoute is returned by route steps that routed the record (to w.to).
var errRoute = errors.New("routed")

// run applies the chain to the record in w.
func (c *chain) run(w *work, p *Pipeline) (fate, string, error) {
	for i := range c.steps {
		s := &c.steps[i]
		err := s.step.apply(w)
		switch {
		case err == nil:
			continue
		case err == errDrop:
			return fateDrop, "", nil
		case err == errRoute:
			return fateRoute, "", nil
		}
		switch s.onErr {
		case OnKeep:
			p.failures.Add(1)
		case OnDrop:
			return fateDrop, "", nil
		default:
			return fateDead, s.name, err
		}
	}
	return fateKeep, "", nil
}

// compile checks rules and builds a program. p supplies the miners.
func compile(rules Rules, p *Pipeline) (*program, error) {
	prog := &program{chains: map[string]*chain{}}
	for _, name := range sortedKeys(rules) {
		if name != "*" {
			if err := record.ValidateStream(name); err != nil {
				return nil, fmt.Errorf("streams.%s: %w", name, err)
			}
		}
		c := &chain{}
		for i := range rules[name].Processors {
			pc := &rules[name].Processors[i]
			kind := pc.kind()
			where := fmt.Sprintf("streams.%s.processors[%d]", name, i)
			if pc.Line > 0 {
				where = fmt.Sprintf("line %d: %s", pc.Line, where)
			}
			if kind == "" {
				return nil, fmt.Errorf("%s: a processor sets exactly one of %s", where, strings.Join(kinds, ", "))
			}
			s, onErr, err := compileStep(pc, kind, name, p)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", where, kind, err)
			}
			switch onErr {
			case "", OnDeadLetter, OnKeep, OnDrop:
			default:
				return nil, fmt.Errorf("%s.%s.on_error: %q: want dead_letter, keep or drop", where, kind, onErr)
			}
			c.steps = append(c.steps, compiled{name: fmt.Sprintf("processors[%d].%s", i, kind), step: s, onErr: onErr})
		}
		if name == "*" {
			prog.any = c
		} else {
			prog.chains[name] = c
		}
	}
	return prog, nil
}

func compileStep(pc *Processor, kind, stream string, p *Pipeline) (step, OnError, error) {
	switch kind {
	case "parse":
		s, err := newParseStep(pc.Parse)
		return s, orDefault(pc.Parse.OnError, OnDeadLetter), err
	case "timestamp":
		s, err := newTimestampStep(pc.Timestamp, p.cfg.Now)
		return s, orDefault(pc.Timestamp.OnError, OnDeadLetter), err
	case "severity":
		s, err := newSeverityStep(pc.Severity)
		return s, orDefault(pc.Severity.OnError, OnKeep), err
	case "filter", "drop":
		src, keepIf := pc.Filter, true
		if kind == "drop" {
			src, keepIf = pc.Drop, false
		}
		prog, err := compileExpr(src)
		if err != nil {
			return nil, "", err
		}
		return &filterStep{prog: prog, keepIf: keepIf}, OnDeadLetter, nil
	case "set":
		return setStep(pc.Set), OnDeadLetter, nil
	case "rename":
		s := &renameStep{}
		for _, from := range sortedKeys(pc.Rename) {
			if pc.Rename[from] == "" {
				return nil, "", fmt.Errorf("%s: empty new name", from)
			}
			s.from, s.to = append(s.from, from), append(s.to, pc.Rename[from])
		}
		return s, OnDeadLetter, nil
	case "remove":
		return removeStep(pc.Remove), OnDeadLetter, nil
	case "cast":
		s := &castStep{}
		for _, f := range sortedKeys(pc.Cast) {
			t := pc.Cast[f]
			switch t {
			case "int", "float", "bool", "string":
			default:
				return nil, "", fmt.Errorf("%s: type %q: want int, float, bool or string", f, t)
			}
			s.fields, s.types = append(s.fields, f), append(s.types, t)
		}
		return s, OnDeadLetter, nil
	case "redact":
		s, err := newRedactStep(pc.Redact)
		return s, OnDeadLetter, err
	case "sample":
		if r := pc.Sample.Rate; !(r > 0 && r <= 1) {
			return nil, "", fmt.Errorf("rate %v: want a share in (0, 1]", r)
		}
		s := &sampleStep{key: pc.Sample.Key, all: pc.Sample.Rate >= 1}
		s.limit = uint64(pc.Sample.Rate*(1<<53)) << 11
		return s, OnDeadLetter, nil
	case "route":
		s := &routeStep{}
		for j, r := range pc.Route {
			if err := record.ValidateStream(r.To); err != nil {
				return nil, "", fmt.Errorf("[%d].to: %w", j, err)
			}
			if r.To == stream {
				return nil, "", fmt.Errorf("[%d].to: routes back to its own stream", j)
			}
			prog, err := compileExpr(r.If)
			if err != nil {
				return nil, "", fmt.Errorf("[%d].if: %w", j, err)
			}
			s.ifs, s.to = append(s.ifs, prog), append(s.to, r.To)
		}
		return s, OnDeadLetter, nil
	case "pattern":
		s, err := p.miners.step(pc.Pattern)
		return s, OnKeep, err
	}
	return nil, "", fmt.Errorf("unknown processor %q", kind)
}

func orDefault(o, def OnError) OnError {
	if o == "" {
		return def
	}
	return o
}

package transform

import (
	"errors"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/transform/pattern"
)

// work is the per-record state of a chain run, pooled.
type work struct {
	r      *record.Record
	tenant string
	stream string
	to     string
	env    exprEnv
	vm     vm.VM
	// miners caches the pattern miner of each pattern step for the
	// batch's tenant and stream, so the shared table is looked up (and
	// locked) once per batch, not once per record.
	miners map[*patternStep]*pattern.Miner
}

func newWork() *work {
	w := &work{}
	w.env = exprEnv{TRACE: 1, DEBUG: 5, INFO: 9, WARN: 13, ERROR: 17, FATAL: 21}
	w.env.Attr = func(k string) string { v, _ := w.get(k); return v }
	w.env.Has = func(k string) bool { _, ok := w.get(k); return ok }
	return w
}

func (w *work) reset(tenant, stream string) {
	w.tenant, w.stream = tenant, stream
	clear(w.miners)
}

func (w *work) begin(r *record.Record) { w.r, w.to = r, "" }

// get returns a field: "body", "severity_text", "resource.<key>" or an
// attribute.
func (w *work) get(field string) (string, bool) {
	switch field {
	case "body":
		return w.r.Body, true
	case "severity_text":
		return w.r.SeverityText, w.r.SeverityText != ""
	}
	if k, ok := strings.CutPrefix(field, "resource."); ok {
		return record.Lookup(w.r.Resource, k)
	}
	return record.Lookup(w.r.Attributes, field)
}

// set sets a field (see get).
func (w *work) set(field, v string) {
	switch field {
	case "body":
		w.r.Body = v
		return
	case "severity_text":
		w.r.SeverityText = v
		return
	}
	if k, ok := strings.CutPrefix(field, "resource."); ok {
		w.r.Resource = setKV(w.r.Resource, k, v)
		return
	}
	w.r.Attributes = setKV(w.r.Attributes, field, v)
}

// remove deletes a field; the body becomes empty.
func (w *work) remove(field string) {
	switch field {
	case "body":
		w.r.Body = ""
		return
	case "severity_text":
		w.r.SeverityText = ""
		return
	}
	if k, ok := strings.CutPrefix(field, "resource."); ok {
		w.r.Resource = slices.DeleteFunc(slices.Clip(w.r.Resource), func(kv record.KV) bool { return kv.Key == k })
		return
	}
	w.r.Attributes = slices.DeleteFunc(w.r.Attributes, func(kv record.KV) bool { return kv.Key == field })
}

func setKV(kvs []record.KV, k, v string) []record.KV {
	for i := range kvs {
		if kvs[i].Key == k {
			kvs[i].Value = v
			return kvs
		}
	}
	return append(kvs, record.KV{Key: k, Value: v})
}

// exprEnv is what filter, drop and route expressions see.
type exprEnv struct {
	Body         string              `expr:"body"`
	Severity     int                 `expr:"severity"`
	SeverityText string              `expr:"severity_text"`
	Stream       string              `expr:"stream"`
	Tenant       string              `expr:"tenant"`
	Service      string              `expr:"service"`
	Attr         func(string) string `expr:"attr"`
	Has          func(string) bool   `expr:"has"`
	TRACE        int                 `expr:"TRACE"`
	DEBUG        int                 `expr:"DEBUG"`
	INFO         int                 `expr:"INFO"`
	WARN         int                 `expr:"WARN"`
	ERROR        int                 `expr:"ERROR"`
	FATAL        int                 `expr:"FATAL"`
}

// eval runs a boolean expression over the record in w.
func (w *work) eval(prog *vm.Program) (bool, error) {
	e := &w.env
	e.Body, e.Severity, e.SeverityText = w.r.Body, int(w.r.SeverityNumber), w.r.SeverityText
	e.Stream, e.Tenant, e.Service = w.stream, w.tenant, w.r.ServiceName()
	out, err := w.vm.Run(prog, e)
	if err != nil {
		return false, err
	}
	return out.(bool), nil
}

func compileExpr(src string) (*vm.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	return expr.Compile(src, expr.Env(&exprEnv{}), expr.AsBool())
}

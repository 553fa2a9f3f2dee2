package transform

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newTestPipeline builds a pipeline from a YAML "streams" document.
func newTestPipeline(t *testing.T, doc string) *Pipeline {
	t.Helper()
	p, err := NewPipeline(PipelineConfig{
		Rules:  rulesOf(t, doc),
		Limits: record.Limits{MaxFuture: time.Hour},
		Now:    func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rulesOf(t *testing.T, doc string) Rules {
	t.Helper()
	var f struct {
		Streams Rules `yaml:"streams"`
	}
	if err := yaml.Unmarshal([]byte(doc), &f); err != nil {
		t.Fatal(err)
	}
	return f.Streams
}

func lines(stream string, bodies ...string) *record.Batch {
	recs := make([]record.Record, len(bodies))
	for i, b := range bodies {
		recs[i] = record.Record{Body: b, ObservedTimestamp: testNow.UnixNano()}
	}
	return record.NewBatch(record.DefaultTenant, stream, recs)
}

func attrOf(r *record.Record, k string) string {
	v, _ := record.Lookup(r.Attributes, k)
	return v
}

// byStream indexes Process's output.
func byStream(t *testing.T, out []*record.Batch) map[string]*record.Batch {
	t.Helper()
	m := map[string]*record.Batch{}
	for _, b := range out {
		if m[b.Stream] != nil {
			t.Fatalf("two batches for stream %s", b.Stream)
		}
		m[b.Stream] = b
	}
	return m
}

func TestPipelineProcessors(t *testing.T) {
	p := newTestPipeline(t, `
streams:
  app:
    processors:
      - parse: {format: logfmt}
      - timestamp: {field: ts, layouts: [rfc3339]}
      - severity: {field: level}
      - drop: 'attr("path") == "/health"'
      - rename: {msg: message}
      - remove: [ts]
      - set: {env: prod}
      - cast: {status: int}
      - redact: {patterns: [email], fields: [password]}
      - route:
          - {if: 'severity >= ERROR', to: errors}
`)
	b := lines("app",
		`ts=2026-03-01T11:00:00Z level=info msg="user bob@example.com logged in" status=200 password=hunter2`,
		`ts=2026-03-01T11:00:01Z level=info msg=ok path=/health status=200`,
		`ts=2026-03-01T11:00:02Z level=error msg="boom" status=500.0`,
		`ts=2026-03-01T11:00:03Z level=warn msg="bad status" status=abc`,
		`this is not logfmt "`,
	)
	b.ProducerID, b.Sequence = "p1", 7
	out, err := p.Process(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	m := byStream(t, out)
	app, errs, dead := m["app"], m["errors"], m[logschema.DeadLetterStream]
	if app == nil || errs == nil || dead == nil || len(m) != 3 {
		t.Fatalf("streams %v", m)
	}
	if len(app.Records) != 1 || len(errs.Records) != 1 || len(dead.Records) != 2 {
		t.Fatalf("app %d, errors %d, dead %d records", len(app.Records), len(errs.Records), len(dead.Records))
	}
	r := &app.Records[0]
	if want := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC).UnixNano(); r.Timestamp != want {
		t.Errorf("timestamp %d, want %d", r.Timestamp, want)
	}
	if r.SeverityNumber != record.SeverityInfo || r.SeverityText != "INFO" {
		t.Errorf("severity %d %q", r.SeverityNumber, r.SeverityText)
	}
	for k, want := range map[string]string{
		"message": "user [REDACTED] logged in", "env": "prod", "status": "200", "password": "[REDACTED]", "level": "info",
	} {
		if got := attrOf(r, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"ts", "msg"} {
		if _, ok := record.Lookup(r.Attributes, k); ok {
			t.Errorf("attribute %s not removed", k)
		}
	}
	if want := strings.Replace(b.Records[0].Body, "bob@example.com", "[REDACTED]", 1); r.Body != want {
		t.Errorf("body %q, want %q", r.Body, want)
	}
	if e := &errs.Records[0]; e.SeverityText != "ERROR" || attrOf(e, "status") != "500" {
		t.Errorf("routed record %+v", e)
	}

	// Dead letters are the originals with where and why.
	d0, d1 := &dead.Records[0], &dead.Records[1]
	if d0.Body != b.Records[3].Body || attrOf(d0, logschema.AttrDeadStage) != "processors[7].cast" ||
		!strings.Contains(attrOf(d0, logschema.AttrDeadError), `"abc" is not an integer`) || attrOf(d0, logschema.AttrDeadStream) != "app" {
		t.Errorf("dead letter 0: %+v", d0)
	}
	if len(d0.Attributes) != 4 {
		t.Errorf("dead letter keeps processor output: %+v", d0.Attributes)
	}
	if attrOf(d1, logschema.AttrDeadStage) != "processors[0].parse" || attrOf(d1, logschema.AttrDeadTime) != testNow.Format(time.RFC3339Nano) {
		t.Errorf("dead letter 1: %+v", d1)
	}

	// Idempotent producers: derived batches have their own producer,
	// and every batch may skip sequence numbers.
	if app.ProducerID != "p1" || app.Sequence != 7 || !app.SequenceGaps {
		t.Errorf("app batch producer %q %d %v", app.ProducerID, app.Sequence, app.SequenceGaps)
	}
	if errs.ProducerID != "p1/app" || dead.ProducerID != "p1/app" || errs.Sequence != 7 || !dead.SequenceGaps {
		t.Errorf("derived producers %q %q", errs.ProducerID, dead.ProducerID)
	}
	st := p.Stats()
	if st.DeadLetters != 2 || st.Dropped != 1 || st.Routed != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestPipelineValidation(t *testing.T) {
	p := newTestPipeline(t, `streams: {}`)
	future := testNow.Add(48 * time.Hour).UnixNano()

	// No processors and all records valid: the batch passes untouched.
	b := lines("plain", "a", "b")
	out, err := p.Process(nil, b)
	if err != nil || len(out) != 1 || out[0] != b {
		t.Fatalf("valid batch: %v %v", out, err)
	}
	// Some invalid: they become dead letters, made storable.
	b = lines("plain", "ok", "later", "\xffbad")
	b.Records[1].Timestamp = future
	b.Records[2].SeverityNumber = 99
	out, err = p.Process(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	m := byStream(t, out)
	if len(m["plain"].Records) != 1 || len(m[logschema.DeadLetterStream].Records) != 2 {
		t.Fatalf("got %v", m)
	}
	d := m[logschema.DeadLetterStream].Records
	// The far-future time moves to an attribute, so that the dead letter
	// is filed under the time it reaches the sink.
	if d[0].Timestamp != 0 || attrOf(&d[0], logschema.AttrDeadPrefix+"timestamp") != fmt.Sprint(future) || !strings.Contains(attrOf(&d[0], logschema.AttrDeadError), "timestamp") {
		t.Errorf("future record: %+v", d[0])
	}
	if _, r, _ := Revive(d[0]); r.Timestamp != future {
		t.Errorf("Revive of the future record: %+v", r)
	}
	if d[1].Body != "\uFFFDbad" || d[1].SeverityNumber != 0 || attrOf(&d[1], logschema.AttrDeadPrefix+"severity_number") != "99" {
		t.Errorf("bad record: %+v", d[1])
	}
	if m["plain"].Bytes != m["plain"].Records[0].Size() {
		t.Errorf("Bytes %d not recomputed", m["plain"].Bytes)
	}
	// All invalid, no processors: the request is rejected.
	b = lines("plain", "x")
	b.Records[0].SeverityNumber = -1
	if out, err := p.Process(nil, b); err == nil || len(out) != 0 {
		t.Errorf("all-invalid batch: %v %v", out, err)
	}
	// Revive undoes DeadLetter.
	stream, r, ok := Revive(d[1])
	if !ok || stream != "plain" || r.SeverityNumber != 99 || len(r.Attributes) != 0 {
		t.Errorf("Revive: %v %q %+v", ok, stream, r)
	}
}

// TestPipelineMaxPast: with Limits.MaxPast, records older than it are
// dead-lettered, an old observed time counting when there is no
// timestamp; their dead letters keep their times in attributes and are
// filed under now, whatever the stream's processors.
func TestPipelineMaxPast(t *testing.T) {
	for _, rules := range []string{`streams: {}`, `streams: {plain: {processors: [{set: {seen: "yes"}}]}}`} {
		p, err := NewPipeline(PipelineConfig{
			Rules:  rulesOf(t, rules),
			Limits: record.Limits{MaxFuture: time.Hour, MaxPast: 7 * 24 * time.Hour},
			Now:    func() time.Time { return testNow },
		})
		if err != nil {
			t.Fatal(err)
		}
		old := testNow.Add(-8 * 24 * time.Hour).UnixNano()
		recent := testNow.Add(-6 * 24 * time.Hour).UnixNano()
		b := lines("plain", "recent", "old", "old observed", "none")
		b.Records[0].Timestamp = recent
		b.Records[1].Timestamp = old
		b.Records[2].Timestamp, b.Records[2].ObservedTimestamp = 0, old
		b.Records[3].Timestamp, b.Records[3].ObservedTimestamp = 0, 0
		out, err := p.Process(nil, b)
		if err != nil {
			t.Fatalf("%s: %v", rules, err)
		}
		m := byStream(t, out)
		if got := m["plain"].Records; len(got) != 2 || got[0].Body != "recent" || got[1].Body != "none" {
			t.Fatalf("%s: kept %+v", rules, got)
		}
		d := m[logschema.DeadLetterStream].Records
		if len(d) != 2 {
			t.Fatalf("%s: dead letters %+v", rules, d)
		}
		if d[0].Timestamp != 0 || attrOf(&d[0], logschema.AttrDeadPrefix+"timestamp") != fmt.Sprint(old) || !strings.Contains(attrOf(&d[0], logschema.AttrDeadError), "in the past") {
			t.Errorf("%s: old record: %+v", rules, d[0])
		}
		if d[1].Timestamp != 0 || d[1].ObservedTimestamp != 0 || attrOf(&d[1], logschema.AttrDeadPrefix+"observed_timestamp") != fmt.Sprint(old) {
			t.Errorf("%s: old observed record: %+v", rules, d[1])
		}
		if _, r, ok := Revive(d[1]); !ok || r.Timestamp != 0 || r.ObservedTimestamp != old {
			t.Errorf("%s: Revive: %+v", rules, r)
		}
	}
}

func TestPipelineDefaultRulesAndDeadLetterStream(t *testing.T) {
	p := newTestPipeline(t, `
streams:
  "*":
    processors:
      - parse: {format: json}
`)
	out, err := p.Process(nil, lines("any", `{"a":{"b":1},"c":[1,2]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := &out[0].Records[0]
	if attrOf(r, "a.b") != "1" || attrOf(r, "c") != "[1,2]" {
		t.Errorf("json: %+v", r.Attributes)
	}
	if !p.HasRules("other") || p.HasRules(logschema.DeadLetterStream) {
		t.Error("HasRules")
	}
}

func TestPipelineSample(t *testing.T) {
	p := newTestPipeline(t, `
streams:
  s:
    processors:
      - sample: {rate: 0.25}
  k:
    processors:
      - parse: {format: logfmt}
      - sample: {rate: 0.5, key: user}
`)
	var bodies []string
	for i := range 4000 {
		bodies = append(bodies, fmt.Sprintf("line %d", i))
	}
	out, _ := p.Process(nil, lines("s", bodies...))
	if n := len(out[0].Records); n < 850 || n > 1150 {
		t.Errorf("kept %d of 4000 at rate 0.25", n)
	}
	// The same records decide the same way (a retried batch samples alike).
	again, _ := p.Process(nil, lines("s", bodies...))
	if len(again[0].Records) != len(out[0].Records) {
		t.Error("sampling is not deterministic")
	}
	// Keyed: a key's records are all kept or all dropped.
	bodies = bodies[:0]
	for i := range 2000 {
		bodies = append(bodies, fmt.Sprintf("user=u%d n=%d", i%50, i))
	}
	out, _ = p.Process(nil, lines("k", bodies...))
	kept := map[string]int{}
	for _, r := range out[0].Records {
		kept[attrOf(&r, "user")]++
	}
	for u, n := range kept {
		if n != 40 {
			t.Errorf("user %s: %d of 40 records kept", u, n)
		}
	}
	if len(kept) == 0 || len(kept) == 50 {
		t.Errorf("%d of 50 users kept at rate 0.5", len(kept))
	}
}

func TestPipelineOnError(t *testing.T) {
	p := newTestPipeline(t, `
streams:
  keep:
    processors:
      - parse: {format: json, on_error: keep}
      - set: {seen: "yes"}
  drop:
    processors:
      - parse: {format: json, on_error: drop}
`)
	out, _ := p.Process(nil, lines("keep", "not json"))
	if len(out) != 1 || attrOf(&out[0].Records[0], "seen") != "yes" {
		t.Errorf("keep: %v", out)
	}
	out, _ = p.Process(nil, lines("drop", "not json", `{"a":1}`))
	if len(out) != 1 || len(out[0].Records) != 1 {
		t.Errorf("drop: %v", out)
	}
	if st := p.Stats(); st.Kept != 1 || st.Dropped != 1 || st.DeadLetters != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPipelineReload(t *testing.T) {
	p := newTestPipeline(t, `
streams:
  app:
    processors:
      - parse: {format: json}
`)
	out, _ := p.Process(nil, lines("app", "k=v"))
	if out[0].Stream != logschema.DeadLetterStream {
		t.Fatalf("before reload: %v", out[0].Stream)
	}
	bad := rulesOf(t, `
streams:
  app:
    processors:
      - parse: {format: regex, pattern: '(unclosed'}
`)
	if err := p.Reload(bad); err == nil || !strings.Contains(err.Error(), "streams.app.processors[0].parse: pattern") {
		t.Fatalf("bad reload: %v", err)
	}
	out, _ = p.Process(nil, lines("app", "k=v"))
	if out[0].Stream != logschema.DeadLetterStream {
		t.Fatal("a failed reload changed the rules")
	}
	if err := p.Reload(rulesOf(t, "streams:\n  app:\n    processors:\n      - parse: {format: logfmt}\n")); err != nil {
		t.Fatal(err)
	}
	out, _ = p.Process(nil, lines("app", "k=v"))
	if out[0].Stream != "app" || attrOf(&out[0].Records[0], "k") != "v" {
		t.Fatalf("after reload: %+v", out[0])
	}
}

// TestRulesErrors checks that bad configuration is refused with the line
// and the field named.
func TestRulesErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"streams:\n  app:\n    processors:\n      - pars: {format: json}\n", `line 4: unknown processor "pars"`},
		{"streams:\n  app:\n    processors:\n      - parse: {format: json, feild: x}\n", `line 4: unknown field "feild"`},
		{"streams:\n  app:\n    processors:\n      - parse: {format: json}\n        set: {a: b}\n", "line 4: a processor is a mapping with exactly one"},
		{"streams:\n  app:\n    processors:\n      - parse: {format: xml}\n", `line 4: streams.app.processors[0].parse: format "xml"`},
		{"streams:\n  app:\n    processors:\n      - set: {a: b}\n      - filter: 'severity >'\n", `line 5: streams.app.processors[1].filter`},
		{"streams:\n  app:\n    processors:\n      - route: [{if: 'true', to: app}]\n", "routes back to its own stream"},
		{"streams:\n  app:\n    processors:\n      - route: [{if: 'true', to: Bad}]\n", "[0].to: invalid stream name"},
		{"streams:\n  app:\n    processors:\n      - sample: {rate: 2}\n", "rate 2"},
		{"streams:\n  app:\n    processors:\n      - cast: {n: number}\n", `type "number"`},
		{"streams:\n  app:\n    processors:\n      - timestamp: {field: t, location: Mars/Base}\n", "location"},
		{"streams:\n  app:\n    processors:\n      - severity: {field: l, map: {x: LOUD}}\n", `"LOUD" is not a severity`},
		{"streams:\n  app:\n    processors:\n      - parse: {format: json, on_error: ignore}\n", `on_error: "ignore"`},
		{"streams:\n  app:\n    processors:\n      - pattern: {masks: ['(']}\n", "pattern"},
		{"streams:\n  Bad:\n    processors: []\n", "streams.Bad: invalid stream name"},
	} {
		var f struct {
			Streams Rules `yaml:"streams"`
		}
		err := yaml.Unmarshal([]byte(tc.doc), &f)
		if err == nil {
			err = CheckRules(f.Streams)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}

func TestPipelineLimits(t *testing.T) {
	p, err := NewPipeline(PipelineConfig{
		Limits:        record.Limits{MaxFuture: time.Hour},
		MaxAttributes: 3, MaxKeyBytes: 8, MaxValueBytes: 5,
		Now: func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	b := lines("plain", "x")
	b.Records[0].Attributes = []record.KV{
		{Key: "a", Value: "short"}, {Key: "much_too_long_key", Value: "v"}, {Key: "b", Value: "héllo wörld"},
		{Key: "c", Value: "1"}, {Key: "d", Value: "2"},
	}
	b.Bytes = b.Records[0].Size()
	out, err := p.Process(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	r := &out[0].Records[0]
	if attrOf(r, "a") != "short" || attrOf(r, "b") != "héll" || attrOf(r, "c") != "1" {
		t.Errorf("attributes %+v", r.Attributes)
	}
	if _, ok := record.Lookup(r.Attributes, "d"); ok {
		t.Error("attribute past the count kept")
	}
	if attrOf(r, "weir.attributes_dropped") != "2" || attrOf(r, "weir.truncated") != "b" {
		t.Errorf("markers: %+v", r.Attributes)
	}
	if p.Stats().Limited != 1 || out[0].Bytes != r.Size() {
		t.Errorf("stats %+v, bytes %d", p.Stats(), out[0].Bytes)
	}

	// A batch's size follows each record cut, whichever records are.
	b = lines("plain", "x", "y", "z", "w")
	for _, i := range []int{0, 2, 3} {
		b.Records[i].Resource = []record.KV{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "c", Value: "3"}, {Key: "d", Value: "too long"}}
	}
	b.Bytes = record.NewBatch("", "", b.Records).Bytes
	if out, err = p.Process(nil, b); err != nil {
		t.Fatal(err)
	}
	if want := record.NewBatch("", "", out[0].Records).Bytes; out[0].Bytes != want || p.Stats().Limited != 4 {
		t.Errorf("bytes %d, want %d; stats %+v", out[0].Bytes, want, p.Stats())
	}
}

// FuzzPipeline sends arbitrary text through every parser: nothing panics,
// and every record comes out once, parsed in its stream or as a dead
// letter with the original body.
func FuzzPipeline(f *testing.F) {
	for _, s := range []string{`{"a":{"b":[1,2]}}`, `k=v k2="x y"`, `<34>1 2003-10-11T22:14:15.003Z host app - ID47 - msg`,
		`<13>Oct 11 22:14:15 host app[1]: msg`, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`, "\xff", ""} {
		f.Add(s)
	}
	var doc strings.Builder
	doc.WriteString("streams:\n")
	patterns := map[string]string{"regex": `'^(?P<timestamp>\S+) (?P<level>\S+) (?P<message>.*)$'`, "dissect": `'%{timestamp} %{level} %{message}'`}
	for _, format := range formats {
		pattern := ""
		if p, ok := patterns[format]; ok {
			pattern = ", pattern: " + p
		}
		fmt.Fprintf(&doc, "  %s:\n    processors:\n      - parse: {format: %s%s}\n      - timestamp: {field: timestamp, on_error: keep}\n      - severity: {field: level}\n      - pattern: {}\n", format, format, pattern)
	}
	var ps []*Pipeline
	f.Fuzz(func(t *testing.T, body string) {
		if ps == nil {
			ps = append(ps, newTestPipeline(t, doc.String()))
		}
		for _, format := range formats {
			out, err := ps[0].Process(nil, lines(format, body))
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 1 || len(out[0].Records) != 1 {
				t.Fatalf("%s: %d batches", format, len(out))
			}
			r := &out[0].Records[0]
			switch out[0].Stream {
			case format:
				if err := r.Validate(0, testNow, record.Limits{MaxFuture: time.Hour}); err != nil {
					t.Fatalf("%s: invalid output: %v", format, err)
				}
			case logschema.DeadLetterStream:
				if r.Body != validUTF8(body) {
					t.Fatalf("%s: dead letter body %q, want %q", format, r.Body, body)
				}
			default:
				t.Fatalf("%s: went to %s", format, out[0].Stream)
			}
		}
	})
}

// TestPipelineReloadUnderLoad reloads the rules over and over while
// batches are processed: every record comes out exactly once, processed
// wholly by one version of the rules.
func TestPipelineReloadUnderLoad(t *testing.T) {
	p := newTestPipeline(t, "streams:\n  app:\n    processors:\n      - set: {version: \"0\"}\n")
	const workers, batches, per = 4, 200, 50
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := 1; ; v++ {
			select {
			case <-done:
				return
			default:
			}
			doc := fmt.Sprintf("streams:\n  app:\n    processors:\n      - set: {version: \"%d\"}\n      - route: [{if: 'attr(\"n\") == \"0\"', to: zero}]\n", v)
			if err := p.Reload(rulesOf(t, doc)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var mu sync.Mutex
	seen := map[string]int{}
	var work sync.WaitGroup
	for w := range workers {
		work.Add(1)
		go func() {
			defer work.Done()
			for i := range batches {
				b := lines("app")
				for j := range per {
					b.Records = append(b.Records, record.Record{Body: fmt.Sprintf("%d/%d/%d", w, i, j),
						Attributes: []record.KV{{Key: "n", Value: fmt.Sprint(j % 2)}}})
				}
				out, err := p.Process(nil, b)
				if err != nil {
					t.Error(err)
					return
				}
				versions := map[string]bool{}
				mu.Lock()
				for _, ob := range out {
					for _, r := range ob.Records {
						seen[r.Body]++
						versions[attrOf(&r, "version")] = true
					}
				}
				mu.Unlock()
				if len(versions) != 1 {
					t.Errorf("one batch processed by rule versions %v", versions)
				}
			}
		}()
	}
	work.Wait()
	close(done)
	wg.Wait()
	if len(seen) != workers*batches*per {
		t.Fatalf("%d distinct records out, want %d", len(seen), workers*batches*per)
	}
	for body, n := range seen {
		if n != 1 {
			t.Fatalf("record %s came out %d times", body, n)
		}
	}
}

// TestPipelineBodyAndFields checks parse's body and keep_original, redact
// limited to some fields, and resource fields.
func TestPipelineBodyAndFields(t *testing.T) {
	p := newTestPipeline(t, `
streams:
  app:
    processors:
      - parse: {format: logfmt, body: msg, keep_original: true}
      - redact: {patterns: [email], in: [user]}
      - set: {resource.host.name: web-1}
      - rename: {resource.host.name: resource.host}
`)
	out, err := p.Process(nil, lines("app", `msg="mail bob@example.com" user=bob@example.com`))
	if err != nil {
		t.Fatal(err)
	}
	r := &out[0].Records[0]
	if r.Body != "mail bob@example.com" {
		t.Errorf("body %q: the message field, not redacted outside 'in'", r.Body)
	}
	if attrOf(r, "log.original") != `msg="mail bob@example.com" user=bob@example.com` || attrOf(r, "user") != "[REDACTED]" {
		t.Errorf("attributes %+v", r.Attributes)
	}
	if len(r.Resource) != 1 || r.Resource[0] != (record.KV{Key: "host", Value: "web-1"}) {
		t.Errorf("resource %+v", r.Resource)
	}
}

// TestPipelineRejects checks records that failed at the edge: they go to
// the dead-letter stream with their errors, on streams with and without
// processors, while the others of their batch go on; no batch handed on
// carries Rejects.
func TestPipelineRejects(t *testing.T) {
	p := newTestPipeline(t, `
streams:
  parsed:
    processors:
      - parse: {format: logfmt}
`)
	edgeErr := fmt.Errorf("record 1: trace_id 0a0b0c has 3 bytes; want 0 or 16")
	for _, stream := range []string{"plain", "parsed"} {
		b := lines(stream, "a=1", "a=2", "a=3")
		b.Rejects = []error{nil, edgeErr, nil}
		out, err := p.Process(nil, b)
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		for _, o := range out {
			if o.Rejects != nil {
				t.Errorf("%s: batch of %s carries Rejects", stream, o.Stream)
			}
		}
		m := byStream(t, out)
		if got := m[stream]; got == nil || len(got.Records) != 2 || got.Records[0].Body != "a=1" || got.Records[1].Body != "a=3" {
			t.Fatalf("%s: kept %+v", stream, got)
		}
		d := m[logschema.DeadLetterStream]
		if d == nil || len(d.Records) != 1 || d.Records[0].Body != "a=2" {
			t.Fatalf("%s: dead letters %+v", stream, d)
		}
		if attrOf(&d.Records[0], logschema.AttrDeadError) != edgeErr.Error() || attrOf(&d.Records[0], logschema.AttrDeadStage) != "validate" || attrOf(&d.Records[0], "a") != "" {
			t.Errorf("%s: dead letter %+v", stream, d.Records[0].Attributes)
		}
	}
	// Every record rejected, no processors: the request fails with the
	// first record's error, as for records failing validation.
	b := lines("plain", "x")
	b.Rejects = []error{edgeErr}
	if out, err := p.Process(nil, b); err != edgeErr || len(out) != 0 {
		t.Errorf("all rejected: %v %v", out, err)
	}
	// Rejects that do not match the records are refused.
	b = lines("plain", "x", "y")
	b.Rejects = []error{nil}
	if _, err := p.Process(nil, b); err == nil {
		t.Error("mismatched Rejects accepted")
	}
}

package ui_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/weirlabs/weir/internal/ui"
)

func handler(t *testing.T, cfg ui.Config) http.Handler {
	t.Helper()
	h, err := ui.Handler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

type dashboards struct {
	Dashboards []struct {
		Name   string `json:"name"`
		Panels []struct {
			Title string `json:"title"`
			Kind  string `json:"kind"`
			SQL   string `json:"sql"`
			Width int    `json:"width"`
		} `json:"panels"`
	} `json:"dashboards"`
}

func getDashboards(t *testing.T, h http.Handler) dashboards {
	t.Helper()
	rec := serve(t, h, http.MethodGet, "/ui/dashboards", nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /ui/dashboards: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	var d dashboards
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBuiltinDashboard(t *testing.T) {
	t.Parallel()
	d := getDashboards(t, handler(t, ui.Config{}))
	if len(d.Dashboards) != 1 || d.Dashboards[0].Name != "Log aggregation" {
		t.Fatalf("dashboards: %+v", d)
	}
	kinds := map[string]int{}
	for _, p := range d.Dashboards[0].Panels {
		kinds[p.Kind]++
		if p.Title == "" || p.SQL == "" || p.Width < 1 || p.Width > 4 {
			t.Errorf("panel %+v", p)
		}
	}
	for _, k := range []string{"timeseries", "bar", "table", "stat"} {
		if kinds[k] == 0 {
			t.Errorf("the built-in dashboard has no %s panel", k)
		}
	}
}

func TestUserDashboards(t *testing.T) {
	t.Parallel()
	h := handler(t, ui.Config{DashboardsName: "d.yaml", Dashboards: []byte(`
dashboards:
  - name: log AGGREGATION   # replaces the built-in one, case aside
    panels:
      - title: Only
        kind: table
        sql: FROM logs LIMIT 5
  - name: Ops
    description: mine
    panels:
      - title: Errors
        kind: stat
        sql: |
          -- comments first are fine
          SELECT count(*) FROM logs WHERE severity_number >= 17
      - {title: By stream, kind: bar, width: 4, sql: "WITH x AS (FROM logs) SELECT stream, count(*) FROM x GROUP BY 1"}
`)})
	d := getDashboards(t, h)
	if len(d.Dashboards) != 2 || d.Dashboards[0].Name != "log AGGREGATION" || len(d.Dashboards[0].Panels) != 1 || d.Dashboards[1].Name != "Ops" {
		t.Fatalf("dashboards: %+v", d)
	}
	// Width defaults by kind: a quarter for stat, half for the rest.
	if w := []int{d.Dashboards[0].Panels[0].Width, d.Dashboards[1].Panels[0].Width, d.Dashboards[1].Panels[1].Width}; !slices.Equal(w, []int{2, 1, 4}) {
		t.Errorf("widths %v", w)
	}
}

func TestDashboardsErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, yaml string
		want       []string // substrings of the error, in order
	}{
		{"bad kind", `dashboards:
  - name: A
    panels:
      - title: X
        sql: SELECT 1
        kind: pie
`, []string{`d.yaml:6: dashboard "A", panel "X": kind "pie" is not one of timeseries, bar, table, stat`}},
		{"missing sql", `dashboards:
  - name: A
    panels:
      - title: ok
        kind: stat
        sql: SELECT 1
      - title: X
        kind: table
`, []string{`d.yaml:7: dashboard "A", panel "X": sql is missing`}},
		{"missing kind and title", `dashboards:
  - name: A
    panels:
      - sql: SELECT 1
`, []string{`d.yaml:4: dashboard "A", panel 1: title is missing`, `d.yaml:4: dashboard "A", panel 1: kind is missing`}},
		{"unknown field", `dashboards:
  - name: A
    panels:
      - title: X
        kind: stat
        colour: red
        sql: SELECT 1
`, []string{`d.yaml:6: field colour not found in a panel (want title, kind, sql, width, description)`}},
		{"unknown top-level field", "dashbords: []\n", []string{`d.yaml:1: field dashbords not found at the top level`}},
		{"wrong type", "dashboards:\n  - name: A\n    panels: 3\n", []string{`d.yaml:3: cannot unmarshal !!int`, `into panels (want a list)`}},
		{"syntax", "dashboards:\n  - name: A\n   panels: []\n", []string{`d.yaml:1: did not find expected '-' indicator`}},
		{"syntax later", "dashboards:\n  - name: A\n    panels:\n      - {title: X, kind: stat, sql: \"SELECT 1}\n", []string{`d.yaml:4: `}},
		{"empty", "# nothing\n", []string{`d.yaml: the file is empty`}},
		{"no dashboards", "dashboards: []\n", []string{`d.yaml:1: no dashboards`}},
		{"no panels and no name", "dashboards:\n  - description: x\n", []string{`d.yaml:2: dashboard 1: name is missing`, `d.yaml:2: dashboard 1: no panels`}},
		{"duplicate names", `dashboards:
  - name: A
    panels: [{title: X, kind: stat, sql: SELECT 1}]
  - name: a
    panels: [{title: X, kind: stat, sql: SELECT 1}]
`, []string{`d.yaml:4: dashboard "a": the name is used by dashboard 1 too`}},
		{"width", "dashboards:\n  - name: A\n    panels:\n      - {title: X, kind: stat, sql: SELECT 1, width: 5}\n", []string{`d.yaml:4: dashboard "A", panel "X": width 5 is not 1 to 4`}},
		{"writing sql", "dashboards:\n  - name: A\n    panels:\n      - title: X\n        kind: table\n        sql: DELETE FROM logs\n", []string{`d.yaml:6: dashboard "A", panel "X": sql must be one reading statement`}},
		{"alias", `p: &p {title: X, kind: pie, sql: SELECT 1}
dashboards:
  - name: A
    panels: [*p]
`, []string{`field p not found at the top level`}},
		{"too big", "dashboards:\n" + strings.Repeat("# padding padding padding padding padding padding\n", 30000), []string{"d.yaml: ", "bytes; the limit is 1048576"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ui.Handler(ui.Config{Dashboards: []byte(c.yaml), DashboardsName: "d.yaml"})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			rest := msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q lacks %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(msg, "ui.") {
				t.Errorf("error %q names Go types", msg)
			}
		})
	}
}

// TestDashboardsErrorsBounded checks that a file with many problems
// reports a bounded number of them.
func TestDashboardsErrorsBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("dashboards:\n  - name: A\n    panels:\n")
	for range 50 {
		b.WriteString("      - {title: X, kind: pie, sql: SELECT 1}\n")
	}
	_, err := ui.Handler(ui.Config{Dashboards: []byte(b.String()), DashboardsName: "d.yaml"})
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 21 || lines[20] != "d.yaml: and 30 more problems" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestAssets(t *testing.T) {
	t.Parallel()
	h := handler(t, ui.Config{})
	for target, want := range map[string]string{
		"/":                   "text/html; charset=utf-8",
		"/index.html":         "text/html; charset=utf-8",
		"/app.js":             "text/javascript; charset=utf-8",
		"/views/overview.js":  "text/javascript; charset=utf-8",
		"/style.css":          "text/css; charset=utf-8",
		"/favicon.svg":        "image/svg+xml",
		"/ui/dashboards":      "application/json",
		"/app.js?cachebust=1": "text/javascript; charset=utf-8",
	} {
		rec := serve(t, h, http.MethodGet, target, nil)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != want {
			t.Errorf("GET %s: %d %q, want 200 %q", target, rec.Code, rec.Header().Get("Content-Type"), want)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", target, csp)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", target)
		}
	}
	rec := serve(t, h, http.MethodGet, "/", nil)
	if !strings.Contains(rec.Body.String(), `<script type="module" src="/app.js"></script>`) {
		t.Errorf("index.html does not load app.js as a module")
	}
	// Revalidation by ETag.
	etag := rec.Header().Get("ETag")
	if etag == "" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, rec.Header().Get("Cache-Control"))
	}
	if rec := serve(t, h, http.MethodGet, "/", http.Header{"If-None-Match": {etag}}); rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", rec.Code)
	}
	if rec := serve(t, h, http.MethodHead, "/style.css", nil); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes", rec.Code, rec.Body.Len())
	}
	for _, c := range []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/nope.js", http.StatusNotFound},
		{http.MethodGet, "/views/", http.StatusNotFound},
		{http.MethodGet, "/ui/other", http.StatusNotFound},
		{http.MethodGet, "/go.mod", http.StatusNotFound},
		{http.MethodGet, "/static/index.html", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodPost, "/ui/dashboards", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/app.js", http.StatusMethodNotAllowed},
	} {
		if rec := serve(t, h, c.method, c.target, nil); rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.target, rec.Code, c.want)
		}
	}
}

// TestModuleImports checks, as a bundler would, that every relative
// import of every module names an embedded file, and that index.html
// refers only to embedded files: with no build step, nothing else would
// notice a broken import before a browser does.
func TestModuleImports(t *testing.T) {
	t.Parallel()
	h := handler(t, ui.Config{})
	root := os.DirFS("static")
	importRE := regexp.MustCompile(`(?m)^\s*import\s+(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]`)
	refRE := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`)
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		var refs []string
		switch path.Ext(p) {
		case ".js":
			for _, m := range importRE.FindAllStringSubmatch(string(raw), -1) {
				if !strings.HasPrefix(m[1], ".") {
					t.Errorf("%s imports %q: only relative imports of embedded modules", p, m[1])
					continue
				}
				refs = append(refs, path.Join("/", path.Dir(p), m[1]))
			}
		case ".html":
			for _, m := range refRE.FindAllStringSubmatch(string(raw), -1) {
				refs = append(refs, m[1])
			}
		}
		for _, ref := range refs {
			if rec := serve(t, h, http.MethodGet, ref, nil); rec.Code != http.StatusOK {
				t.Errorf("%s refers to %s: %d", p, ref, rec.Code)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fakeDB answers the schema queries from canned rows and records them.
type fakeDB struct {
	mu      sync.Mutex
	queries []string
	fail    string // a query containing this fails
}

func (f *fakeDB) query(ctx context.Context, sql string) ([]map[string]any, error) {
	f.mu.Lock()
	f.queries = append(f.queries, sql)
	f.mu.Unlock()
	if f.fail != "" && strings.Contains(sql, f.fail) {
		return nil, errors.New("boom")
	}
	switch {
	case sql == "DESCRIBE logs":
		return []map[string]any{
			{"column_name": "stream", "column_type": "VARCHAR"},
			{"column_name": "attributes", "column_type": "MAP(VARCHAR, VARCHAR)"},
		}, nil
	case strings.Contains(sql, "GROUP BY stream"):
		return []map[string]any{{"stream": "app", "records": int64(300000)}, {"stream": "it's", "records": int64(40)}}, nil
	case strings.Contains(sql, "map_keys(attributes)"):
		return []map[string]any{{"key": "level", "n": int64(100000)}, {"key": "pattern.id", "n": int64(25000)}}, nil
	}
	return nil, errors.New("unexpected query " + sql)
}

func TestSchema(t *testing.T) {
	t.Parallel()
	db := &fakeDB{}
	h := handler(t, ui.Config{Query: db.query})
	rec := serve(t, h, http.MethodGet, "/ui/schema", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("%d: %s", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"streams": []any{map[string]any{"name": "app", "records": 300000.0}, map[string]any{"name": "it's", "records": 40.0}},
		"columns": []any{map[string]any{"name": "stream", "type": "VARCHAR"}, map[string]any{"name": "attributes", "type": "MAP(VARCHAR, VARCHAR)"}},
		"attribute_keys": []any{
			map[string]any{"key": "level", "count": 100000.0, "frequency": 1.0},
			map[string]any{"key": "pattern.id", "count": 25000.0, "frequency": 0.25},
		},
		"sampled_records": 100000.0,
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("schema:\n got %s\nwant %s", g, w)
	}
	if q := db.queries[2]; !strings.Contains(q, "FROM logs USING SAMPLE 100000 ROWS") || !strings.Contains(q, "LIMIT 200") {
		t.Errorf("attribute key query %q", q)
	}

	// One stream: its name is quoted into the query.
	db.queries = nil
	if rec := serve(t, h, http.MethodGet, "/ui/schema?stream=it%27s", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"sampled_records":40`) {
		t.Errorf("one stream: %d %s", rec.Code, rec.Body)
	}
	if q := db.queries[2]; !strings.Contains(q, "WHERE stream = 'it''s')") {
		t.Errorf("one stream's query %q", q)
	}
	if rec := serve(t, h, http.MethodGet, "/ui/schema?stream=nope", nil); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `\"nope\" has no records`) {
		t.Errorf("unknown stream: %d %s", rec.Code, rec.Body)
	}

	db.fail = "DESCRIBE"
	if rec := serve(t, h, http.MethodGet, "/ui/schema", nil); rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "columns: boom") {
		t.Errorf("failing query: %d %s", rec.Code, rec.Body)
	}

	if rec := serve(t, handler(t, ui.Config{}), http.MethodGet, "/ui/schema", nil); rec.Code != http.StatusNotImplemented {
		t.Errorf("no Query: %d", rec.Code)
	}
}

// TestSchemaEmpty: with no records, no attribute keys are sampled.
func TestSchemaEmpty(t *testing.T) {
	t.Parallel()
	var n int
	h := handler(t, ui.Config{Query: func(ctx context.Context, sql string) ([]map[string]any, error) {
		n++
		return nil, nil
	}})
	rec := serve(t, h, http.MethodGet, "/ui/schema", nil)
	if body, _ := io.ReadAll(rec.Body); rec.Code != http.StatusOK || string(body) != `{"streams":[],"columns":[],"attribute_keys":[],"sampled_records":0}`+"\n" || n != 2 {
		t.Errorf("%d %s after %d queries", rec.Code, body, n)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStaticFilesEmbedded guards against a static file that the handler
// would not serve (an unknown extension fails Handler).
func TestStaticFilesEmbedded(t *testing.T) {
	t.Parallel()
	h := handler(t, ui.Config{})
	err := filepath.WalkDir("static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		target := "/" + filepath.ToSlash(strings.TrimPrefix(p, "static"+string(filepath.Separator)))
		if rec := serve(t, h, http.MethodGet, target, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s: %d", target, rec.Code)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

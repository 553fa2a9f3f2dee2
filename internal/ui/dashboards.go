package ui

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// builtinDashboards is the log-aggregation dashboard every server shows.
//
//go:embed dashboards.yaml
var builtinDashboards []byte

// Bounds of a dashboards file.
const (
	maxDashboardsBytes = 1 << 20
	maxDashboards      = 64
	maxPanels          = 64
	maxTitleLen        = 200
	maxPanelSQL        = 64 << 10
	maxDashboardErrors = 20
)

// panelKinds are the ways a panel draws its query's result.
var panelKinds = []string{"timeseries", "bar", "table", "stat"}

// dashboardFile is the YAML document of a dashboards file.
type dashboardFile struct {
	Dashboards []dashboard `yaml:"dashboards"`
}

type dashboard struct {
	Name        string  `yaml:"name" json:"name"`
	Description string  `yaml:"description" json:"description,omitempty"`
	Panels      []panel `yaml:"panels" json:"panels"`
}

type panel struct {
	Title string `yaml:"title" json:"title"`
	Kind  string `yaml:"kind" json:"kind"`
	SQL   string `yaml:"sql" json:"sql"`
	// Width is the panel's share of a row, in quarters (1-4); 0 takes
	// the kind's default.
	Width       int    `yaml:"width" json:"width"`
	Description string `yaml:"description" json:"description,omitempty"`
}

// loadDashboards returns the built-in dashboards followed by those of the
// user's file, if any; a user dashboard named like a built-in one takes
// its place.
func loadDashboards(user []byte, name string) ([]dashboard, error) {
	out, err := parseDashboards(builtinDashboards, "built-in dashboards")
	if err != nil {
		return nil, err // a bug, caught by the tests
	}
	if len(bytes.TrimSpace(user)) == 0 {
		return out, nil
	}
	if name == "" {
		name = "dashboards"
	}
	extra, err := parseDashboards(user, name)
	if err != nil {
		return nil, err
	}
	for _, d := range extra {
		if i := slices.IndexFunc(out, func(b dashboard) bool { return strings.EqualFold(b.Name, d.Name) }); i >= 0 {
			out[i] = d
		} else {
			out = append(out, d)
		}
	}
	return out, nil
}

// parseDashboards decodes and validates a dashboards file. Errors start
// with name and, where known, the line: "name:12: ...". Every problem
// found is reported, up to maxDashboardErrors.
func parseDashboards(raw []byte, name string) ([]dashboard, error) {
	if len(raw) > maxDashboardsBytes {
		return nil, fmt.Errorf("%s: %d bytes; the limit is %d", name, len(raw), maxDashboardsBytes)
	}
	var f dashboardFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the file is empty; want a \"dashboards:\" list", name)
		}
		return nil, yamlError(name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, yamlError(name, err)
	}
	v := validator{name: name}
	dashNodes := seqItems(mapValue(docRoot(&root), "dashboards"))
	if len(f.Dashboards) == 0 {
		v.add(docRoot(&root), "no dashboards: want a \"dashboards:\" list with at least one dashboard")
	}
	if len(f.Dashboards) > maxDashboards {
		v.add(mapValue(docRoot(&root), "dashboards"), fmt.Sprintf("%d dashboards; the limit is %d", len(f.Dashboards), maxDashboards))
	}
	seen := map[string]int{}
	for i := range f.Dashboards {
		d := &f.Dashboards[i]
		dn := itemAt(dashNodes, i)
		d.Name = strings.TrimSpace(d.Name)
		what := fmt.Sprintf("dashboard %d", i+1)
		switch {
		case d.Name == "":
			v.add(dn, what+": name is missing")
		case len(d.Name) > maxTitleLen:
			v.add(mapValue(dn, "name"), fmt.Sprintf("%s: name is longer than %d bytes", what, maxTitleLen))
		default:
			what = fmt.Sprintf("dashboard %q", d.Name)
			if prev, ok := seen[strings.ToLower(d.Name)]; ok {
				v.add(mapValue(dn, "name"), fmt.Sprintf("%s: the name is used by dashboard %d too", what, prev+1))
			}
			seen[strings.ToLower(d.Name)] = i
		}
		if len(d.Panels) == 0 {
			v.add(dn, what+": no panels")
		}
		if len(d.Panels) > maxPanels {
			v.add(mapValue(dn, "panels"), fmt.Sprintf("%s: %d panels; the limit is %d", what, len(d.Panels), maxPanels))
		}
		panelNodes := seqItems(mapValue(dn, "panels"))
		for j := range d.Panels {
			p := &d.Panels[j]
			pn := itemAt(panelNodes, j)
			p.Title, p.Kind, p.SQL = strings.TrimSpace(p.Title), strings.TrimSpace(p.Kind), strings.TrimSpace(p.SQL)
			pwhat := fmt.Sprintf("%s, panel %d", what, j+1)
			if p.Title != "" {
				pwhat = fmt.Sprintf("%s, panel %q", what, p.Title)
			}
			switch {
			case p.Title == "":
				v.add(pn, pwhat+": title is missing")
			case len(p.Title) > maxTitleLen:
				v.add(mapValue(pn, "title"), fmt.Sprintf("%s: title is longer than %d bytes", pwhat, maxTitleLen))
			}
			switch {
			case p.Kind == "":
				v.add(pn, fmt.Sprintf("%s: kind is missing; want one of %s", pwhat, strings.Join(panelKinds, ", ")))
			case !slices.Contains(panelKinds, p.Kind):
				v.add(mapValue(pn, "kind"), fmt.Sprintf("%s: kind %q is not one of %s", pwhat, p.Kind, strings.Join(panelKinds, ", ")))
			}
			switch {
			case p.SQL == "":
				v.add(pn, pwhat+": sql is missing")
			case len(p.SQL) > maxPanelSQL:
				v.add(mapValue(pn, "sql"), fmt.Sprintf("%s: sql is longer than %d bytes", pwhat, maxPanelSQL))
			case !readingSQL.MatchString(p.SQL):
				v.add(mapValue(pn, "sql"), pwhat+": sql must be one reading statement (SELECT, WITH, FROM, ...)")
			}
			if p.Width < 0 || p.Width > 4 {
				v.add(mapValue(pn, "width"), fmt.Sprintf("%s: width %d is not 1 to 4 (quarters of a row)", pwhat, p.Width))
			} else if p.Width == 0 {
				p.Width = 2
				if p.Kind == "stat" {
					p.Width = 1
				}
			}
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return f.Dashboards, nil
}

// readingSQL matches the statements a panel may run: the server refuses
// anything else, but saying so at start-up is kinder. Comments may come
// first.
var readingSQL = regexp.MustCompile(`(?is)^(\s|--[^\n]*\n|/\*.*?\*/)*(SELECT|WITH|FROM|VALUES|DESCRIBE|SHOW|SUMMARIZE|PIVOT|UNPIVOT|\()`)

// validator collects validation errors with their lines.
type validator struct {
	name string
	errs []string
	more int
}

func (v *validator) add(n *yaml.Node, msg string) {
	if len(v.errs) == maxDashboardErrors {
		v.more++
		return
	}
	if n != nil && n.Line > 0 {
		v.errs = append(v.errs, fmt.Sprintf("%s:%d: %s", v.name, n.Line, msg))
	} else {
		v.errs = append(v.errs, fmt.Sprintf("%s: %s", v.name, msg))
	}
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	msg := strings.Join(v.errs, "\n")
	if v.more > 0 {
		msg += fmt.Sprintf("\n%s: and %d more problems", v.name, v.more)
	}
	return errors.New(msg)
}

// yamlError rewrites a YAML decoding error as "name:line: message",
// naming the document's parts as docs/ui.md does rather than by Go type.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	for i, m := range msgs {
		m = typeNames.Replace(m)
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			if num, after, ok := strings.Cut(rest, ": "); ok {
				m = fmt.Sprintf("%s:%s: %s", name, num, after)
				msgs[i] = m
				continue
			}
		}
		msgs[i] = name + ": " + m
	}
	return errors.New(strings.Join(msgs, "\n"))
}

var typeNames = strings.NewReplacer(
	"in type ui.dashboardFile", "at the top level (want dashboards)",
	"in type ui.dashboard", "in a dashboard (want name, description, panels)",
	"in type ui.panel", "in a panel (want title, kind, sql, width, description)",
	"into ui.dashboardFile", "into the top level (want a mapping with dashboards)",
	"into []ui.dashboard", "into dashboards (want a list)",
	"into []ui.panel", "into panels (want a list)",
	"into ui.dashboard", "into a dashboard (want a mapping)",
	"into ui.panel", "into a panel (want a mapping)",
)

// The helpers below find nodes for line numbers. The strict decode has
// already succeeded, so the node tree has the shape of dashboardFile;
// any node not found yields nil, and the error goes without a line.

func docRoot(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return resolve(n.Content[0])
	}
	return n
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

func seqItems(n *yaml.Node) []*yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

func itemAt(items []*yaml.Node, i int) *yaml.Node {
	if i < len(items) {
		return resolve(items[i])
	}
	return nil
}

package main

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirlabs/weir/internal/alert"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/query"
)

// loadAlertRules reads the rule files of c.Alerts.RuleFiles (globs
// relative to the configuration file at path) into c.Alerts.Rules after
// the inline rules, and checks every rule's fields. The SQL is checked
// when the server starts (newAlerts), since that needs the query engine.
func loadAlertRules(c *config, path string) error {
	for i := range c.Alerts.Rules {
		c.Alerts.Rules[i].File = path
	}
	for _, pat := range c.Alerts.RuleFiles {
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(filepath.Dir(path), pat)
		}
		files, err := filepath.Glob(pat)
		if err != nil {
			return fmt.Errorf("config %s: alerts.rule_files %q: %w", path, pat, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("config %s: alerts.rule_files %q matches no file", path, pat)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			rules, err := alert.ParseRules(raw, f)
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			c.Alerts.Rules = append(c.Alerts.Rules, rules...)
		}
	}
	if err := alert.CheckRules(c.Alerts.Rules); err != nil {
		return fmt.Errorf("config: alerts: %w", err)
	}
	return nil
}

// Bounds of one alert evaluation's query (the rule's own timeout, at
// most a minute, applies first).
const alertQueryTimeout = time.Minute

// newAlerts builds the alert manager over the engine, with the rules of
// cfg (their SQL checked and planned now). Receivers get links to the
// dashboard at alerts.external_url, by default the address ln listens on.
func newAlerts(cfg *config, engine *query.Engine, ln net.Listener, log *slog.Logger) (*alert.Manager, error) {
	ac := cfg.Alerts
	if ac.ExternalURL == "" {
		scheme := "http"
		if cfg.Server.TLS.Enabled() {
			scheme = "https"
		}
		ac.ExternalURL = scheme + "://" + ln.Addr().String()
	}
	m, err := alert.New(ac, alert.Deps{
		Querier:  alertQuerier{engine},
		StateDir: filepath.Join(cfg.Data, "alerts"),
		Log:      log,
		TenantOf: auth.TenantOf,
	})
	if err != nil {
		return nil, fmt.Errorf("config: alerts: %w", err)
	}
	if err := m.SetRules(context.Background(), cfg.Alerts.Rules); err != nil {
		return nil, fmt.Errorf("config: alerts: %w", err)
	}
	return m, nil
}

// alertQuerier runs rules' SQL as user queries of their tenant, in the
// engine's slots and sandbox; the manager evaluates one rule at a time,
// so alerting holds at most one slot.
type alertQuerier struct{ e *query.Engine }

func (q alertQuerier) Query(ctx context.Context, tenant, sql string, maxRows int) (*alert.Result, error) {
	var rc alertRows
	_, err := q.e.Run(ctx, sql, query.Options{Tenant: tenant, MaxRows: uint64(maxRows), Timeout: alertQueryTimeout}, &rc)
	if err != nil {
		return nil, err
	}
	return &rc.res, nil
}

// alertRows collects a result; byte slices are copied, since Row's values
// are only valid during the call.
type alertRows struct{ res alert.Result }

func (c *alertRows) Begin(cols []query.Column) error {
	for _, col := range cols {
		c.res.Columns = append(c.res.Columns, col.Name)
	}
	return nil
}

func (c *alertRows) Row(vals []driver.Value) error {
	row := make([]any, len(vals))
	for i, v := range vals {
		if b, ok := v.([]byte); ok {
			v = string(b)
		}
		row[i] = v
	}
	c.res.Rows = append(c.res.Rows, row)
	return nil
}

func (c *alertRows) End(bool) error { return nil }

// alertCmd is `weir alert test FILE`: the server checks the rules of a
// rule file and runs each once, changing no state and sending nothing.
func alertCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprintln(stderr, "usage: weir alert test [flags] FILE")
		return fmt.Errorf("%w: want weir alert test FILE", errUsage)
	}
	fs := flag.NewFlagSet("weir alert test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir alert test [flags] FILE\n\nChecks the alerting rules of FILE (a YAML file with a rules: list) on the server\nand runs each once over the server's records, printing the alerts that would be active.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: give one rule file", errUsage)
	}
	raw, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	body, _ := json.Marshal(alert.TestRequest{YAML: string(raw), File: fs.Arg(0)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*server, "/")+alert.PathTest, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := newHTTPClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Error string }
		if json.Unmarshal(answer, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", e.Code, e.Error)
		}
		return fmt.Errorf("server answered %s: %s", resp.Status, answer)
	}
	if *asJSON {
		_, err := stdout.Write(answer)
		return err
	}
	var doc struct{ Results []alert.TestResult }
	if err := json.Unmarshal(answer, &doc); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	failed := 0
	for _, r := range doc.Results {
		fmt.Fprintf(stdout, "rule %s: window %s to %s, %d rows, value %g, %d alerts (%.0f ms)\n",
			r.Rule, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), len(r.Rows), r.Value, len(r.Alerts), r.Took)
		if r.Error != "" {
			failed++
			fmt.Fprintf(stdout, "  error: %s\n", r.Error)
			continue
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, a := range r.Alerts {
			fmt.Fprint(tw, "  ALERT")
			for _, k := range slices.Sorted(maps.Keys(a)) {
				fmt.Fprintf(tw, "\t%s=%s", k, a[k])
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d rules failed", failed, len(doc.Results))
	}
	return nil
}

// startAlerts starts the alert manager once ready says the records
// recovered from the write-ahead log are queryable, or not at all if ctx
// ends first.
func startAlerts(ctx context.Context, ready *readiness, alerts *alert.Manager, log *slog.Logger) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ready.mu.Lock()
		ok := ready.reason == ""
		ready.mu.Unlock()
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	if err := alerts.Start(ctx); err != nil {
		log.Debug("alerts not started", "err", err) // shut down first
	}
}

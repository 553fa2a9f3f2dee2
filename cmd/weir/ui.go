package main

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/ui"
	"github.com/weirlabs/weir/query"
)

// Bounds of the queries the UI's schema endpoint runs through the engine.
const (
	uiQueryRows    = 10_000
	uiQueryTimeout = 15 * time.Second
)

// newUIHandler builds the web UI served at /, with the dashboards file of
// cfg.UI.Dashboards (relative to the configuration file) if one is set.
func newUIHandler(cfg config, engine *query.Engine, ingest func(context.Context) []ui.IngestEndpoint, groups func(context.Context) []ui.ConsumerGroup) (http.Handler, error) {
	uc := ui.Config{Query: func(ctx context.Context, sql string) ([]map[string]any, error) {
		var rc rowCollector
		_, err := engine.Run(ctx, sql, query.Options{MaxRows: uiQueryRows, Timeout: uiQueryTimeout, System: true, Tenant: auth.TenantOf(ctx)}, &rc)
		return rc.rows, err
	}, Ingest: ingest, Groups: groups}
	if p := cfg.UI.Dashboards; p != "" {
		if !filepath.IsAbs(p) && cfg.path != "" {
			p = filepath.Join(filepath.Dir(cfg.path), p)
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("config: ui.dashboards: %w", err)
		}
		uc.Dashboards, uc.DashboardsName = raw, p
	}
	h, err := ui.Handler(uc)
	if err != nil {
		return nil, fmt.Errorf("config: ui.dashboards:\n%w", err)
	}
	return h, nil
}

// rowCollector keeps a result's rows as column name → value. Byte slices
// are copied, since Row's values are only valid during the call; nested
// values keep the driver's types.
type rowCollector struct {
	cols []string
	rows []map[string]any
}

func (c *rowCollector) Begin(cols []query.Column) error {
	for _, col := range cols {
		c.cols = append(c.cols, col.Name)
	}
	return nil
}

func (c *rowCollector) Row(vals []driver.Value) error {
	m := make(map[string]any, len(vals))
	for i, v := range vals {
		if b, ok := v.([]byte); ok {
			v = string(b)
		}
		m[c.cols[i]] = v
	}
	c.rows = append(c.rows, m)
	return nil
}

func (c *rowCollector) End(bool) error { return nil }

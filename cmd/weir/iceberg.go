package main

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/iceberg-go/catalog"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/sink/iceberg"
)

// icebergConfig is the iceberg: section (docs/lake.md, "Iceberg tables").
type icebergConfig struct {
	Enabled bool `yaml:"enabled"`
	// Catalog is "hadoop" (files in Warehouse, no service) or "rest".
	Catalog string `yaml:"catalog"`
	// Warehouse: the hadoop catalog's directory (default
	// <data>/iceberg, or <sink.lake>/_iceberg for a lake in object
	// storage), or the warehouse a REST catalog is asked for.
	Warehouse  string        `yaml:"warehouse"`
	URI        string        `yaml:"uri"`
	Credential string        `yaml:"credential"`
	Token      string        `yaml:"token"`
	Interval   time.Duration `yaml:"interval"`
	// KeepSnapshots and KeepFor bound each table's history.
	KeepSnapshots int           `yaml:"keep_snapshots"`
	KeepFor       time.Duration `yaml:"keep_for"`
}

func defaultIcebergConfig() icebergConfig {
	d := iceberg.DefaultConfig()
	return icebergConfig{Catalog: d.Catalog, Interval: d.Interval, KeepSnapshots: d.KeepSnapshots, KeepFor: d.KeepFor}
}

func (c icebergConfig) iceberg(data string) iceberg.Config {
	cfg := iceberg.DefaultConfig()
	cfg.Catalog, cfg.Warehouse, cfg.URI, cfg.Credential, cfg.Token, cfg.Interval =
		c.Catalog, c.Warehouse, c.URI, c.Credential, c.Token, c.Interval
	cfg.KeepSnapshots, cfg.KeepFor = c.KeepSnapshots, c.KeepFor
	if cfg.Catalog == iceberg.CatalogHadoop && cfg.Warehouse == "" {
		cfg.Warehouse = filepath.Join(data, "iceberg")
	}
	return cfg
}

func (c icebergConfig) validate(data string) error {
	if !c.Enabled {
		return nil
	}
	return c.iceberg(data).Validate()
}

// icebergNudge is the lake's Observer: the query engine's, which it
// passes every call to, and a nudge to the Iceberg reconciler (once set)
// whenever the lake's files changed.
type icebergNudge struct {
	sink.Observer
	rec atomic.Pointer[iceberg.Reconciler]
}

func (n *icebergNudge) nudge() {
	if r := n.rec.Load(); r != nil {
		r.Nudge()
	}
}

// referenced is the lake's sink.Remote.Referenced with the lake in
// object storage: the reconciler's answer, and true until the
// reconciler exists.
func (n *icebergNudge) referenced(location string) bool {
	r := n.rec.Load()
	return r == nil || r.Referenced(location)
}

func (n *icebergNudge) Published(f sink.FileInfo) error {
	err := n.Observer.Published(f)
	n.nudge()
	return err
}

func (n *icebergNudge) Replaced(f sink.FileInfo, old []sink.FileInfo) {
	n.Observer.Replaced(f, old)
	n.nudge()
}

func (n *icebergNudge) Removed(files []sink.FileInfo) {
	n.Observer.Removed(files)
	n.nudge()
}

// Evicted passes the lake's evictions to the engine (sink.Evicter); the
// files stay in the lake, so Iceberg has nothing to learn.
func (n *icebergNudge) Evicted(files []sink.FileInfo) {
	if e, ok := n.Observer.(sink.Evicter); ok {
		e.Evicted(files)
	}
}

// newIceberg returns the reconciler of lake's files into the
// configured catalog, or nil when Iceberg is off. The catalog is opened
// by the first pass (and retried), so a REST catalog that cannot be
// reached does not stop weir from starting.
func newIceberg(cfg *config, lake *sink.Lake, log *slog.Logger) (*iceberg.Reconciler, error) {
	if !cfg.Iceberg.Enabled {
		return nil, nil
	}
	icfg := cfg.Iceberg.iceberg(cfg.Data)
	if bucket, prefix, _ := parseLake(cfg.Sink.Lake); bucket != "" {
		// The lake is in object storage: the tables' metadata goes
		// there too by default, and data files' footers are read there.
		if cfg.Iceberg.Catalog == iceberg.CatalogHadoop && cfg.Iceberg.Warehouse == "" {
			icfg.Warehouse = "s3://" + path.Join(bucket, prefix, "_iceberg")
		}
		icfg.IO = s3IO(cfg.Sink.S3)
		// The lake waits to delete objects a table lists
		// (icebergNudge.referenced); each pass may release some.
		icfg.AfterPass = lake.WakeRemote
	}
	r, err := iceberg.NewOpening(icfg, lake, func(ctx context.Context) (catalog.Catalog, error) {
		return iceberg.OpenCatalog(ctx, icfg)
	}, log)
	if err != nil {
		return nil, err
	}
	log.Info("iceberg: one table per stream", "catalog", icfg.Catalog, "warehouse", icfg.Warehouse, "uri", icfg.URI)
	return r, nil
}

// s3IO is sink.s3 as iceberg-go's FileIO properties. Without keys,
// iceberg-go uses the standard AWS chain, as the lake does.
func s3IO(s s3Config) map[string]string {
	props := map[string]string{}
	if s.Endpoint != "" {
		props[iceio.S3EndpointURL] = s.Endpoint
	}
	if s.Region != "" {
		props[iceio.S3Region] = s.Region
	}
	if s.AccessKeyID != "" {
		props[iceio.S3AccessKeyID], props[iceio.S3SecretAccessKey] = s.AccessKeyID, s.SecretAccessKey
	}
	props[iceio.S3ForceVirtualAddressing] = strconv.FormatBool(!s.PathStyle)
	return props
}

// icebergFailing is how many passes in a row must fail before /readyz
// reports it.
const icebergFailing = 3

// icebergDetail is the /readyz detail: non-empty while commits keep
// failing.
func icebergDetail(r *iceberg.Reconciler) func() string {
	return func() string {
		s := r.Stats()
		if s.ConsecutiveFailures < icebergFailing {
			return ""
		}
		return fmt.Sprintf("%d Iceberg passes in a row failed, tables %s behind the lake: %s", s.ConsecutiveFailures, s.Lag.Round(time.Second), s.LastError)
	}
}

// icebergCollector exports the reconciler's counters.
type icebergCollector struct{ r *iceberg.Reconciler }

var (
	descIcebergSnapshots = prometheus.NewDesc("weir_iceberg_snapshots_total", "Snapshots committed to the streams' Iceberg tables.", nil, nil)
	descIcebergAdded     = prometheus.NewDesc("weir_iceberg_files_added_total", "Data files added to Iceberg tables.", nil, nil)
	descIcebergRemoved   = prometheus.NewDesc("weir_iceberg_files_removed_total", "Data files removed from Iceberg tables.", nil, nil)
	descIcebergFailures  = prometheus.NewDesc("weir_iceberg_failures_total", "Iceberg table commits, catalog listings or catalog openings that failed.", nil, nil)
	descIcebergLag       = prometheus.NewDesc("weir_iceberg_lag_seconds", "How long the lake has had changes the Iceberg tables do not show (0 when up to date).", nil, nil)
)

func (c icebergCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIcebergSnapshots, descIcebergAdded, descIcebergRemoved, descIcebergFailures, descIcebergLag} {
		ch <- d
	}
}

func (c icebergCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(descIcebergSnapshots, prometheus.CounterValue, float64(s.Snapshots))
	ch <- prometheus.MustNewConstMetric(descIcebergAdded, prometheus.CounterValue, float64(s.FilesAdded))
	ch <- prometheus.MustNewConstMetric(descIcebergRemoved, prometheus.CounterValue, float64(s.FilesRemoved))
	ch <- prometheus.MustNewConstMetric(descIcebergFailures, prometheus.CounterValue, float64(s.Failures))
	ch <- prometheus.MustNewConstMetric(descIcebergLag, prometheus.GaugeValue, s.Lag.Seconds())
}

package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/sink"
)

// retentionConfig is the retention section (docs/lake.md, "Retention"):
//
//	retention:
//	  default: 0            # keep forever (the default)
//	  tenants: {acme: 30d}
//	  streams: {acme/debug: 7d, audit: 0}
//	  interval: 1m
//
// A stream key without a tenant names a stream of the default tenant.
// `retention: 30d` alone sets the default.
type retentionConfig struct {
	Default  period            `yaml:"default"`
	Tenants  map[string]period `yaml:"tenants"`
	Streams  map[string]period `yaml:"streams"`
	Interval time.Duration     `yaml:"interval"`
}

// UnmarshalYAML accepts a mapping, or a single period for the default.
func (r *retentionConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return r.Default.UnmarshalYAML(n)
	}
	// Node.Decode does not inherit the file decoder's strictness: check
	// the keys here.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k := n.Content[i]; k.Value {
			case "default", "tenants", "streams", "interval":
			default:
				return fmt.Errorf("line %d: field %s not found in retention (want default, tenants, streams, interval)", k.Line, k.Value)
			}
		}
	}
	type plain retentionConfig
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*r = retentionConfig(p)
	return nil
}

// sink returns the lake's retention settings.
func (r retentionConfig) sink() sink.Retention {
	out := sink.Retention{Default: time.Duration(r.Default), Interval: r.Interval}
	if len(r.Tenants) > 0 {
		out.Tenants = make(map[string]time.Duration, len(r.Tenants))
		for t, d := range r.Tenants {
			out.Tenants[t] = time.Duration(d)
		}
	}
	if len(r.Streams) > 0 {
		out.Streams = make(map[string]time.Duration, len(r.Streams))
		for k, d := range r.Streams {
			if !strings.Contains(k, "/") {
				k = record.DefaultTenant + "/" + k
			}
			out.Streams[k] = time.Duration(d)
		}
	}
	return out
}

// period is a retention period in YAML: a Go duration ("12h"), a number
// of days with d ("30d", "1d12h"), or 0 for forever.
type period time.Duration

func (p *period) UnmarshalYAML(n *yaml.Node) error {
	d, err := parsePeriod(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*p = period(d)
	return nil
}

// parsePeriod parses "30d", "1d12h", "36h" or "0".
func parsePeriod(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	var d time.Duration
	if days, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("retention period %q: want days as 30d, or a duration such as 36h", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		s = rest
		if s == "" {
			return d, nil
		}
	}
	more, err := time.ParseDuration(s)
	if err != nil || more < 0 {
		return 0, fmt.Errorf("retention period %q: want days as 30d, or a duration such as 36h", s)
	}
	return d + more, nil
}

// retentionCollector exports what retention removed to Prometheus.
type retentionCollector struct{ lake *sink.Lake }

var (
	descRetentionFiles    = prometheus.NewDesc("weir_retention_files_total", "Published files removed by retention.", nil, nil)
	descRetentionRows     = prometheus.NewDesc("weir_retention_rows_total", "Records removed by retention.", nil, nil)
	descRetentionBytes    = prometheus.NewDesc("weir_retention_bytes_total", "Bytes of published files removed by retention.", nil, nil)
	descRetentionRuns     = prometheus.NewDesc("weir_retention_runs_total", "Retention passes over the lake.", nil, nil)
	descRetentionFailures = prometheus.NewDesc("weir_retention_failures_total", "Retention passes that failed (logged; retried at the next pass).", nil, nil)
)

func (c retentionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRetentionFiles, descRetentionRows, descRetentionBytes, descRetentionRuns, descRetentionFailures} {
		ch <- d
	}
}

func (c retentionCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.lake.RetentionStats()
	ch <- prometheus.MustNewConstMetric(descRetentionFiles, prometheus.CounterValue, float64(st.Files))
	ch <- prometheus.MustNewConstMetric(descRetentionRows, prometheus.CounterValue, float64(st.Rows))
	ch <- prometheus.MustNewConstMetric(descRetentionBytes, prometheus.CounterValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descRetentionRuns, prometheus.CounterValue, float64(st.Runs))
	ch <- prometheus.MustNewConstMetric(descRetentionFailures, prometheus.CounterValue, float64(st.Failures))
}

// compactionCollector exports what compaction did, and its backlog, to
// Prometheus.
type compactionCollector struct{ lake *sink.Lake }

var (
	descCompactFiles     = prometheus.NewDesc("weir_compaction_files_total", "Compacted files written.", nil, nil)
	descCompactDayMerges = prometheus.NewDesc("weir_compaction_day_merges_total", "Compacted files that merged the small files of a past date (docs/format.md).", nil, nil)
	descCompactReplaced  = prometheus.NewDesc("weir_compaction_replaced_files_total", "Published files replaced by compacted ones.", nil, nil)
	descCompactRows      = prometheus.NewDesc("weir_compaction_rows_total", "Records written by compaction.", nil, nil)
	descCompactRead      = prometheus.NewDesc("weir_compaction_read_bytes_total", "Bytes of the files compaction replaced.", nil, nil)
	descCompactWritten   = prometheus.NewDesc("weir_compaction_written_bytes_total", "Bytes of the files compaction wrote.", nil, nil)
	descCompactFailures  = prometheus.NewDesc("weir_compaction_failures_total", "Groups of files that could not be compacted (logged; tried again at the next pass).", nil, nil)
	descCompactBusy      = prometheus.NewDesc("weir_compaction_seconds_total", "Time spent compacting.", nil, nil)
	descCompactDueFiles  = prometheus.NewDesc("weir_compaction_due_files", "Published files old enough to compact and not yet compacted: the backlog.", nil, nil)
	descCompactDueBytes  = prometheus.NewDesc("weir_compaction_due_bytes", "Bytes of the files of weir_compaction_due_files.", nil, nil)
	descCompactDamaged   = prometheus.NewDesc("weir_compaction_undecodable_files", "Published files whose bytes did not decode when compaction read them; it leaves them out (docs/durability.md).", nil, nil)
)

func (c compactionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCompactFiles, descCompactDayMerges, descCompactReplaced, descCompactRows, descCompactRead,
		descCompactWritten, descCompactFailures, descCompactBusy, descCompactDueFiles, descCompactDueBytes, descCompactDamaged} {
		ch <- d
	}
}

func (c compactionCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.lake.CompactionStats()
	ch <- prometheus.MustNewConstMetric(descCompactFiles, prometheus.CounterValue, float64(st.Files))
	ch <- prometheus.MustNewConstMetric(descCompactDayMerges, prometheus.CounterValue, float64(st.DayMerges))
	ch <- prometheus.MustNewConstMetric(descCompactReplaced, prometheus.CounterValue, float64(st.Replaced))
	ch <- prometheus.MustNewConstMetric(descCompactRows, prometheus.CounterValue, float64(st.Rows))
	ch <- prometheus.MustNewConstMetric(descCompactRead, prometheus.CounterValue, float64(st.BytesRead))
	ch <- prometheus.MustNewConstMetric(descCompactWritten, prometheus.CounterValue, float64(st.BytesWritten))
	ch <- prometheus.MustNewConstMetric(descCompactFailures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(descCompactBusy, prometheus.CounterValue, st.Busy.Seconds())
	ch <- prometheus.MustNewConstMetric(descCompactDueFiles, prometheus.GaugeValue, float64(st.DueFiles))
	ch <- prometheus.MustNewConstMetric(descCompactDueBytes, prometheus.GaugeValue, float64(st.DueBytes))
	ch <- prometheus.MustNewConstMetric(descCompactDamaged, prometheus.GaugeValue, float64(st.Undecodable))
}

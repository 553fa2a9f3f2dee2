package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/kafka"
)

// sourcesConfig lists the broker sources weir consumes from
// (docs/sources.md); none by default.
type sourcesConfig struct {
	Kafka []kafkaSourceConfig `yaml:"kafka"`
}

// kafkaSourceConfig is one Kafka source (ingest/kafka.Config); fields
// left out keep the package's defaults.
type kafkaSourceConfig struct {
	Name             string        `yaml:"name"`
	Brokers          []string      `yaml:"brokers"`
	Topics           []string      `yaml:"topics"`
	Group            string        `yaml:"group"`
	Start            string        `yaml:"start"`
	Tenant           string        `yaml:"tenant"`
	Stream           string        `yaml:"stream"`
	StreamFrom       string        `yaml:"stream_from"`
	AckLevel         string        `yaml:"ack_level"`
	BatchRecords     int           `yaml:"batch_records"`
	MaxMessageBytes  int           `yaml:"max_message_bytes"`
	SessionTimeout   time.Duration `yaml:"session_timeout"`
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
}

// sourceLevel reads a source's ack_level; "" keeps def (the source's
// default, Durable).
func sourceLevel(name string, def buffer.Level) (buffer.Level, error) {
	if name == "" {
		return def, nil
	}
	l, ok := levels[name]
	if !ok {
		return 0, fmt.Errorf("ack_level %q: want accepted, durable or committed", name)
	}
	return l, nil
}

func (k *kafkaSourceConfig) config() (kafka.Config, error) {
	c := kafka.DefaultConfig()
	c.Name, c.Brokers, c.Topics, c.Group, c.Tenant, c.StreamFrom = k.Name, k.Brokers, k.Topics, k.Group, k.Tenant, k.StreamFrom
	if k.Start != "" {
		c.Start = k.Start
	}
	if k.Stream != "" {
		c.Stream = k.Stream
	}
	if k.BatchRecords != 0 {
		c.BatchRecords = k.BatchRecords
	}
	if k.MaxMessageBytes != 0 {
		c.MaxMessageBytes = k.MaxMessageBytes
	}
	if k.SessionTimeout != 0 {
		c.SessionTimeout = k.SessionTimeout
	}
	if k.RebalanceTimeout != 0 {
		c.RebalanceTimeout = k.RebalanceTimeout
	}
	var err error
	if c.Level, err = sourceLevel(k.AckLevel, c.Level); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// validate checks every source's configuration.
func (s *sourcesConfig) validate() error {
	for i := range s.Kafka {
		if _, err := s.Kafka[i].config(); err != nil {
			return fmt.Errorf("sources.kafka[%d]: %w", i, err)
		}
	}
	return nil
}

// sourceStats are a running source's counters, whatever its kind.
type sourceStats struct {
	messages, records, deadLettered, retries, errors, dropped, rejected, lag int64
}

// source is one running broker source.
type source struct {
	kind, name string
	shutdown   func(context.Context) error
	stats      func() sourceStats
}

// sources are the running broker sources. They feed the ingest service
// like the HTTP handlers, so they start after it and stop before the
// buffer drains.
type sources []source

// startSources starts the sources cfg configures.
func startSources(ctx context.Context, cfg *config, ing *ingest.Service, log *slog.Logger) (sources, error) {
	var out sources
	fail := func(err error) (sources, error) {
		return nil, errors.Join(err, out.Shutdown(context.Background()))
	}
	for i := range cfg.Sources.Kafka {
		c, err := cfg.Sources.Kafka[i].config()
		if err != nil {
			return fail(fmt.Errorf("config: sources.kafka[%d]: %w", i, err))
		}
		s, err := kafka.New(c, kafka.Deps{Submitter: ing, Log: log})
		if err != nil {
			return fail(err)
		}
		if err := s.Start(ctx); err != nil {
			return fail(err)
		}
		out = append(out, source{kind: "kafka", name: s.Name(), shutdown: s.Shutdown, stats: func() sourceStats {
			st := s.Stats()
			return sourceStats{st.Messages, st.Records, st.DeadLettered, st.Retries, st.Errors, st.Dropped, st.Rejected, st.Lag}
		}})
		log.Info("kafka source consuming", "name", s.Name(), "topics", c.Topics, "group", c.Group)
	}
	return out, nil
}

// Shutdown stops every source, each committing or acknowledging what it
// handed over, within ctx.
func (ss sources) Shutdown(ctx context.Context) error {
	errs := make([]error, len(ss))
	done := make(chan int, len(ss))
	for i, s := range ss {
		go func() {
			if err := s.shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("%s source %q: %w", s.kind, s.name, err)
			}
			done <- i
		}()
	}
	for range ss {
		<-done
	}
	return errors.Join(errs...)
}

// sourceCollector exports the sources' counters to Prometheus.
type sourceCollector struct{ ss sources }

var (
	sourceLabels           = []string{"source", "name"}
	descSourceMessages     = prometheus.NewDesc("weir_source_messages_total", "Messages a broker source received, redeliveries included.", sourceLabels, nil)
	descSourceRecords      = prometheus.NewDesc("weir_source_records_total", "Records a broker source handed to the pipeline (stored or dead-lettered).", sourceLabels, nil)
	descSourceDeadLettered = prometheus.NewDesc("weir_source_dead_lettered_total", "Records of a broker source that went to the dead-letter stream.", sourceLabels, nil)
	descSourceRetries      = prometheus.NewDesc("weir_source_retries_total", "Submits of a broker source retried after backpressure or unavailability.", sourceLabels, nil)
	descSourceErrors       = prometheus.NewDesc("weir_source_errors_total", "Broker errors of a source: fetches, commits, acknowledgements, connections.", sourceLabels, nil)
	descSourceDropped      = prometheus.NewDesc("weir_source_dropped_total", "Messages a broker source gave up on because the pipeline refused them for good.", sourceLabels, nil)
	descSourceRejected     = prometheus.NewDesc("weir_source_rejected_total", "Messages a broker source handed back to the broker as poison (its dead-letter exchange or queue).", sourceLabels, nil)
	descSourceLag          = prometheus.NewDesc("weir_source_lag", "Messages the broker holds that the source has not read, where the broker tells (-1: unknown).", sourceLabels, nil)
)

func (c sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSourceMessages, descSourceRecords, descSourceDeadLettered, descSourceRetries, descSourceErrors, descSourceDropped, descSourceRejected, descSourceLag} {
		ch <- d
	}
}

func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.ss {
		st := s.stats()
		for d, v := range map[*prometheus.Desc]int64{descSourceMessages: st.messages, descSourceRecords: st.records, descSourceDeadLettered: st.deadLettered,
			descSourceRetries: st.retries, descSourceErrors: st.errors, descSourceDropped: st.dropped, descSourceRejected: st.rejected} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), s.kind, s.name)
		}
		ch <- prometheus.MustNewConstMetric(descSourceLag, prometheus.GaugeValue, float64(st.lag), s.kind, s.name)
	}
}

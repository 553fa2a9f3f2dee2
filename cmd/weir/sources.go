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
	"github.com/weirlabs/weir/ingest/amqp"
	"github.com/weirlabs/weir/ingest/kafka"
	"github.com/weirlabs/weir/ingest/sqs"
)

// sourcesConfig lists the broker sources weir consumes from
// (docs/sources.md); none by default.
type sourcesConfig struct {
	Kafka []kafkaSourceConfig `yaml:"kafka"`
	AMQP  []amqpSourceConfig  `yaml:"amqp"`
	SQS   []sqsSourceConfig   `yaml:"sqs"`
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

// amqpSourceConfig is one RabbitMQ source (ingest/amqp.Config); fields
// left out keep the package's defaults.
type amqpSourceConfig struct {
	Name            string        `yaml:"name"`
	URL             string        `yaml:"url"`
	Queue           string        `yaml:"queue"`
	Prefetch        int           `yaml:"prefetch"`
	BatchDelay      time.Duration `yaml:"batch_delay"`
	RetryTimeout    time.Duration `yaml:"retry_timeout"`
	Tenant          string        `yaml:"tenant"`
	Stream          string        `yaml:"stream"`
	StreamFrom      string        `yaml:"stream_from"`
	AckLevel        string        `yaml:"ack_level"`
	MaxMessageBytes int           `yaml:"max_message_bytes"`
}

func (a *amqpSourceConfig) config() (amqp.Config, error) {
	c := amqp.DefaultConfig()
	c.Name, c.URL, c.Queue, c.Tenant, c.StreamFrom = a.Name, a.URL, a.Queue, a.Tenant, a.StreamFrom
	setIf(&c.Prefetch, a.Prefetch)
	setIf(&c.BatchDelay, a.BatchDelay)
	setIf(&c.RetryTimeout, a.RetryTimeout)
	setIf(&c.Stream, a.Stream)
	setIf(&c.MaxMessageBytes, a.MaxMessageBytes)
	var err error
	if c.Level, err = sourceLevel(a.AckLevel, c.Level); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// sqsSourceConfig is one SQS source (ingest/sqs.Config); fields left
// out keep the package's defaults, and empty credentials, region and
// endpoint the AWS SDK's standard chain (AWS_* environment, shared
// files, instance role).
type sqsSourceConfig struct {
	Name              string        `yaml:"name"`
	QueueURL          string        `yaml:"queue_url"`
	Region            string        `yaml:"region"`
	Endpoint          string        `yaml:"endpoint"`
	AccessKeyID       string        `yaml:"access_key_id"`
	SecretAccessKey   string        `yaml:"secret_access_key"`
	Receivers         int           `yaml:"receivers"`
	MaxMessages       int           `yaml:"max_messages"`
	WaitTime          time.Duration `yaml:"wait_time"`
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"`
	Tenant            string        `yaml:"tenant"`
	Stream            string        `yaml:"stream"`
	StreamFrom        string        `yaml:"stream_from"`
	AckLevel          string        `yaml:"ack_level"`
	MaxMessageBytes   int           `yaml:"max_message_bytes"`
}

func (q *sqsSourceConfig) config() (sqs.Config, error) {
	c := sqs.DefaultConfig()
	c.Name, c.QueueURL, c.Region, c.Endpoint, c.AccessKeyID, c.SecretAccessKey = q.Name, q.QueueURL, q.Region, q.Endpoint, q.AccessKeyID, q.SecretAccessKey
	c.Tenant, c.StreamFrom = q.Tenant, q.StreamFrom
	setIf(&c.Receivers, q.Receivers)
	setIf(&c.MaxMessages, q.MaxMessages)
	setIf(&c.WaitTime, q.WaitTime)
	setIf(&c.VisibilityTimeout, q.VisibilityTimeout)
	setIf(&c.Stream, q.Stream)
	setIf(&c.MaxMessageBytes, q.MaxMessageBytes)
	var err error
	if c.Level, err = sourceLevel(q.AckLevel, c.Level); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// setIf sets *dst to v unless v is the zero value (the key was left
// out).
func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
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
	setIf(&c.Start, k.Start)
	setIf(&c.Stream, k.Stream)
	setIf(&c.BatchRecords, k.BatchRecords)
	setIf(&c.MaxMessageBytes, k.MaxMessageBytes)
	setIf(&c.SessionTimeout, k.SessionTimeout)
	setIf(&c.RebalanceTimeout, k.RebalanceTimeout)
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
	for i := range s.AMQP {
		if _, err := s.AMQP[i].config(); err != nil {
			return fmt.Errorf("sources.amqp[%d]: %w", i, err)
		}
	}
	for i := range s.SQS {
		if _, err := s.SQS[i].config(); err != nil {
			return fmt.Errorf("sources.sqs[%d]: %w", i, err)
		}
	}
	return nil
}

// sourceStats are a running source's counters, whatever its kind.
type sourceStats struct {
	messages, records, deadLettered, retries, errors, dropped, rejected, lag int64
}

// statsOf converts the counters the three sources share.
func statsOf(st amqp.Stats) sourceStats {
	return sourceStats{st.Messages, st.Records, st.DeadLettered, st.Retries, st.Errors, st.Dropped, st.Rejected, st.Lag}
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
		out = append(out, source{kind: "kafka", name: s.Name(), shutdown: s.Shutdown, stats: func() sourceStats { return statsOf(s.Stats().Stats) }})
		log.Info("kafka source consuming", "name", s.Name(), "topics", c.Topics, "group", c.Group)
	}
	for i := range cfg.Sources.AMQP {
		c, err := cfg.Sources.AMQP[i].config()
		if err != nil {
			return fail(fmt.Errorf("config: sources.amqp[%d]: %w", i, err))
		}
		s, err := amqp.New(c, amqp.Deps{Submitter: ing, Log: log})
		if err != nil {
			return fail(err)
		}
		if err := s.Start(ctx); err != nil {
			return fail(err)
		}
		out = append(out, source{kind: "amqp", name: s.Name(), shutdown: s.Shutdown, stats: func() sourceStats { return statsOf(s.Stats()) }})
		log.Info("amqp source consuming", "name", s.Name(), "queue", c.Queue)
	}
	for i := range cfg.Sources.SQS {
		c, err := cfg.Sources.SQS[i].config()
		if err != nil {
			return fail(fmt.Errorf("config: sources.sqs[%d]: %w", i, err))
		}
		s, err := sqs.New(c, sqs.Deps{Submitter: ing, Log: log})
		if err != nil {
			return fail(err)
		}
		if err := s.Start(ctx); err != nil {
			return fail(err)
		}
		out = append(out, source{kind: "sqs", name: s.Name(), shutdown: s.Shutdown, stats: func() sourceStats { return statsOf(s.Stats()) }})
		log.Info("sqs source consuming", "name", s.Name(), "queue_url", c.QueueURL)
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

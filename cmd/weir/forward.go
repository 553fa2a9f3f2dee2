package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/forward"
	"github.com/weirlabs/weir/internal/record"
)

// forwardConfig lists the forwarders that publish streams to brokers
// (docs/forward.md); none by default.
type forwardConfig struct {
	Kafka []kafkaForwardConfig `yaml:"kafka"`
	AMQP  []amqpForwardConfig  `yaml:"amqp"`
}

// kafkaForwardConfig is one Kafka forwarder (internal/forward.Config);
// fields left out keep the package's defaults, and the tenant is the
// default tenant.
type kafkaForwardConfig struct {
	Name           string        `yaml:"name"`
	Tenant         string        `yaml:"tenant"`
	Stream         string        `yaml:"stream"`
	Brokers        []string      `yaml:"brokers"`
	Topic          string        `yaml:"topic"`
	BatchRecords   int           `yaml:"batch_records"`
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	MinBackoff     time.Duration `yaml:"min_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
}

func (k *kafkaForwardConfig) config() (forward.Config, error) {
	c := forward.DefaultConfig()
	c.Name, c.Tenant, c.Stream, c.Brokers, c.Topic = k.Name, record.DefaultTenant, k.Stream, k.Brokers, k.Topic
	setIf(&c.Tenant, k.Tenant)
	setIf(&c.BatchRecords, k.BatchRecords)
	setIf(&c.ProduceTimeout, k.ProduceTimeout)
	setIf(&c.MinBackoff, k.MinBackoff)
	setIf(&c.MaxBackoff, k.MaxBackoff)
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, validateForwarder(c.Name, c.Tenant, c.Stream)
}

// amqpForwardConfig is one RabbitMQ forwarder
// (internal/forward.AMQPConfig); fields left out keep the package's
// defaults, and the tenant is the default tenant.
type amqpForwardConfig struct {
	Name           string        `yaml:"name"`
	Tenant         string        `yaml:"tenant"`
	Stream         string        `yaml:"stream"`
	URL            string        `yaml:"url"`
	Exchange       string        `yaml:"exchange"`
	RoutingKey     string        `yaml:"routing_key"`
	BatchRecords   int           `yaml:"batch_records"`
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	MinBackoff     time.Duration `yaml:"min_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
}

func (a *amqpForwardConfig) config() (forward.AMQPConfig, error) {
	c := forward.DefaultAMQPConfig()
	c.Name, c.Tenant, c.Stream, c.URL, c.Exchange, c.RoutingKey = a.Name, record.DefaultTenant, a.Stream, a.URL, a.Exchange, a.RoutingKey
	setIf(&c.Tenant, a.Tenant)
	setIf(&c.BatchRecords, a.BatchRecords)
	setIf(&c.PublishTimeout, a.PublishTimeout)
	setIf(&c.MinBackoff, a.MinBackoff)
	setIf(&c.MaxBackoff, a.MaxBackoff)
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, validateForwarder(c.Name, c.Tenant, c.Stream)
}

// validateForwarder checks the names a forwarder's group is made of.
func validateForwarder(name, tenant, stream string) error {
	// The name becomes part of a group's file name, like a stream's.
	if err := record.ValidateStream(name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if err := record.ValidateTenant(tenant); err != nil {
		return err
	}
	return validateConsumer(stream, "")
}

// validate checks every forwarder's configuration; names are unique
// across brokers, as each names a consumer group.
func (f *forwardConfig) validate() error {
	names := map[string]bool{}
	unique := func(name, at string) error {
		if names[name] {
			return fmt.Errorf("%s: name %q is used twice", at, name)
		}
		names[name] = true
		return nil
	}
	for i := range f.Kafka {
		at := fmt.Sprintf("forward.kafka[%d]", i)
		c, err := f.Kafka[i].config()
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		if err := unique(c.Name, at); err != nil {
			return err
		}
	}
	for i := range f.AMQP {
		at := fmt.Sprintf("forward.amqp[%d]", i)
		c, err := f.AMQP[i].config()
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		if err := unique(c.Name, at); err != nil {
			return err
		}
	}
	return nil
}

// forwarders are the running forwarders. They read the lake through the
// consume manager, so they start once it exists and stop before the
// query engine and the buffer they read.
type forwarders []*forward.Forwarder

// startForwarders starts the forwarders cfg configures.
func startForwarders(ctx context.Context, cfg *config, m *consume.Manager, log *slog.Logger) (forwarders, error) {
	var out forwarders
	for i := range cfg.Forward.Kafka {
		c, err := cfg.Forward.Kafka[i].config()
		if err == nil {
			var f *forward.Forwarder
			if f, err = forward.New(c, m, log); err == nil {
				out = append(out, f)
				err = f.Start(ctx)
			}
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("forward.kafka[%d]: %w", i, err), out.Shutdown(context.Background()))
		}
		log.Info("kafka forwarder running", "name", c.Name, "tenant", c.Tenant, "stream", c.Stream, "topic", c.Topic, "group", c.Group())
	}
	for i := range cfg.Forward.AMQP {
		c, err := cfg.Forward.AMQP[i].config()
		if err == nil {
			var f *forward.Forwarder
			if f, err = forward.NewAMQP(c, m, log); err == nil {
				out = append(out, f)
				err = f.Start(ctx)
			}
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("forward.amqp[%d]: %w", i, err), out.Shutdown(context.Background()))
		}
		log.Info("rabbitmq forwarder running", "name", c.Name, "tenant", c.Tenant, "stream", c.Stream, "exchange", c.Exchange, "group", c.Group())
	}
	return out, nil
}

// Shutdown stops every forwarder within ctx; what they produced but did
// not commit is produced again after the next start.
func (fs forwarders) Shutdown(ctx context.Context) error {
	errs := make([]error, len(fs))
	done := make(chan struct{}, len(fs))
	for i, f := range fs {
		go func() {
			errs[i] = f.Shutdown(ctx)
			done <- struct{}{}
		}()
	}
	for range fs {
		<-done
	}
	return errors.Join(errs...)
}

// forwardCollector exports the forwarders' counters; their lag is the
// lag of their consumer groups (weir_consumer_group_lag_records, group
// forward.<name>).
type forwardCollector struct{ fs forwarders }

var (
	descForwarderRecords = prometheus.NewDesc("weir_forwarder_records_total", "Records a forwarder's broker acknowledged (again after a retried batch).", []string{"name"}, nil)
	descForwarderErrors  = prometheus.NewDesc("weir_forwarder_errors_total", "Failed reads, publishes, unanswered publishes and commits of a forwarder.", []string{"name"}, nil)
)

func (c forwardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descForwarderRecords
	ch <- descForwarderErrors
}

func (c forwardCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.fs {
		st := f.Stats()
		ch <- prometheus.MustNewConstMetric(descForwarderRecords, prometheus.CounterValue, float64(st.Records), f.Name())
		ch <- prometheus.MustNewConstMetric(descForwarderErrors, prometheus.CounterValue, float64(st.Errors), f.Name())
	}
}

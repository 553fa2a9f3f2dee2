package forward

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirlabs/weir/internal/consume"
)

// kafkaProducer produces to one topic with an idempotent franz-go
// producer that waits for every in-sync replica.
type kafkaProducer struct {
	cfg  Config
	cl   *kgo.Client
	slow func(records int, waited time.Duration)
}

func newKafkaProducer(cfg Config, slow func(int, time.Duration), opts []kgo.Opt) (*kafkaProducer, error) {
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent by default with all acks
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.ProducerBatchMaxBytes(16 << 20),
		kgo.ClientID("weir-forward"),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &kafkaProducer{cfg: cfg, cl: cl, slow: slow}, nil
}

func (p *kafkaProducer) close() { p.cl.Close() }

// produce hands recs to the client and waits until Kafka acknowledged
// every one, one failed, or ctx is done. The client retries a batch it
// could not send for as long as it may (an idempotent producer fails a
// record only when that cannot duplicate it); each ProduceTimeout
// without an answer counts as an error, so a stuck Kafka shows on the
// metrics.
func (p *kafkaProducer) produce(ctx context.Context, recs []consume.Record) error {
	// The channel holds every answer, so a promise called after produce
	// returned (Shutdown closing the client) never blocks.
	results := make(chan error, len(recs))
	for i := range recs {
		// kgo owns the records it produces: they are built anew for each
		// attempt.
		kr, err := kafkaRecord(p.cfg.Tenant, p.cfg.Stream, &recs[i])
		if err != nil {
			results <- fmt.Errorf("encode %d:%d: %w", recs[i].Partition, recs[i].Offset, err)
			continue
		}
		p.cl.Produce(ctx, kr, func(_ *kgo.Record, err error) { results <- err })
	}
	slow := time.NewTicker(p.cfg.ProduceTimeout)
	defer slow.Stop()
	var first error
	for range recs {
		for waiting := true; waiting; {
			select {
			case err := <-results:
				if first == nil {
					first = err
				}
				waiting = false
			case <-slow.C:
				p.slow(len(recs), p.cfg.ProduceTimeout)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return first
}

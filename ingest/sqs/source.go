package sqs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest/internal/brokerin"
	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

// Config is what a user sets for one SQS source.
type Config struct {
	// Name labels the source's metrics and logs; "" = the queue's name.
	Name string
	// QueueURL is the queue, https://sqs.REGION.amazonaws.com/ACCOUNT/NAME.
	QueueURL string
	// Region, Endpoint, AccessKeyID and SecretAccessKey override the
	// AWS SDK's standard chain; "" keeps what it finds. Endpoint serves
	// SQS-compatible servers.
	Region, Endpoint             string
	AccessKeyID, SecretAccessKey string
	// Receivers are the concurrent long polls; each holds at most
	// MaxMessages (1 to 10) messages in flight.
	Receivers   int
	MaxMessages int
	// WaitTime is a long poll's wait (at most 20 s).
	WaitTime time.Duration
	// VisibilityTimeout is requested for received messages and renewed
	// every half of it while their batch is being submitted.
	VisibilityTimeout time.Duration
	// Tenant owns the records; "" = record.DefaultTenant.
	Tenant string
	// Stream takes the records; with StreamFrom, the value of that
	// attribute (sqs.attr.NAME, or a JSON field) picks the stream as
	// record.StreamNameFrom makes it one.
	Stream     string
	StreamFrom string
	// Level is the acknowledgement level records reach before their
	// messages are deleted.
	Level buffer.Level
	// MaxMessageBytes bounds a body; a longer one is cut and
	// dead-lettered.
	MaxMessageBytes int
}

// DefaultConfig returns the defaults: two receivers of 10 messages, 20 s
// long polls, a 30 s visibility timeout, stream "sqs", Durable, 256 KiB
// bodies (SQS's own bound).
func DefaultConfig() Config {
	return Config{Receivers: 2, MaxMessages: 10, WaitTime: 20 * time.Second, VisibilityTimeout: 30 * time.Second,
		Stream: "sqs", Level: buffer.Durable, MaxMessageBytes: 256 << 10}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	u, err := url.Parse(c.QueueURL)
	switch {
	case c.QueueURL == "":
		return errors.New("sqs: queue_url is empty")
	case err != nil || u.Host == "" || path.Base(u.Path) == "/" || path.Base(u.Path) == ".":
		return fmt.Errorf("sqs: queue_url %q: want https://HOST/ACCOUNT/QUEUE", c.QueueURL)
	case c.Receivers < 1 || c.Receivers > 64:
		return fmt.Errorf("sqs: receivers must be 1 to 64, got %d", c.Receivers)
	case c.MaxMessages < 1 || c.MaxMessages > 10:
		return fmt.Errorf("sqs: max_messages must be 1 to 10, got %d", c.MaxMessages)
	case c.WaitTime < 0 || c.WaitTime > 20*time.Second:
		return fmt.Errorf("sqs: wait_time must be 0 to 20s, got %s", c.WaitTime)
	case c.VisibilityTimeout < 2*time.Second || c.VisibilityTimeout > 12*time.Hour:
		return fmt.Errorf("sqs: visibility_timeout must be 2s to 12h, got %s", c.VisibilityTimeout)
	case (c.AccessKeyID == "") != (c.SecretAccessKey == ""):
		return errors.New("sqs: set both access_key_id and secret_access_key, or neither")
	case c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 64<<20:
		return fmt.Errorf("sqs: max_message_bytes must be 1 KiB to 64 MiB, got %d", c.MaxMessageBytes)
	case c.Level < buffer.Accepted || c.Level > buffer.Committed:
		return fmt.Errorf("sqs: unknown ack level %d", c.Level)
	}
	if err := record.ValidateStream(c.Stream); err != nil {
		return fmt.Errorf("sqs: stream: %w", err)
	}
	if c.Tenant != "" {
		if err := record.ValidateTenant(c.Tenant); err != nil {
			return fmt.Errorf("sqs: tenant: %w", err)
		}
	}
	return nil
}

// Submitter takes records down the pipeline; *ingest.Service implements
// it.
type Submitter = brokerin.Submitter

// Deps are the source's collaborators.
type Deps struct {
	Submitter Submitter
	Log       *slog.Logger
	// Retry bounds the pauses after a failed receive; zero means 100 ms
	// doubling to 30 s.
	Retry brokerin.Backoff
}

// Stats are the source's counters; Lag is the queue's
// ApproximateNumberOfMessages as last read.
type Stats = brokerin.Stats

// Source consumes the configured queue into the pipeline. Its methods
// are safe for concurrent use.
type Source struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	params brokerin.Params
	c      brokerin.Counters
	queue  string

	// pollCtx ends receiving; submitCtx, the context of every Submit
	// and delete, ends when Shutdown's deadline passes.
	pollCtx      context.Context
	stopPoll     context.CancelFunc
	submitCtx    context.Context
	cancelSubmit context.CancelFunc
	mu           sync.Mutex
	started      bool
	client       *sqs.Client
	wg           sync.WaitGroup
}

// New returns a source for cfg; it polls once started.
func New(cfg Config, deps Deps) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Submitter == nil {
		return nil, errors.New("sqs: no Submitter")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Retry.Min <= 0 || deps.Retry.Max < deps.Retry.Min {
		deps.Retry = brokerin.Backoff{Min: 100 * time.Millisecond, Max: 30 * time.Second}
	}
	u, _ := url.Parse(cfg.QueueURL)
	queue := path.Base(u.Path)
	if cfg.Name == "" {
		cfg.Name = queue
	}
	s := &Source{cfg: cfg, deps: deps, log: deps.Log.With("source", "sqs", "name", cfg.Name), queue: queue,
		params: brokerin.Params{Stream: cfg.Stream, StreamFrom: cfg.StreamFrom, MaxMessageBytes: cfg.MaxMessageBytes}}
	s.c.Lag.Store(-1)
	s.pollCtx, s.stopPoll = context.WithCancel(context.Background())
	s.submitCtx, s.cancelSubmit = context.WithCancel(brokerin.Context(context.Background(), cfg.Tenant, "sqs"))
	return s, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.cfg.Name }

// Stats returns the counters.
func (s *Source) Stats() Stats { return s.c.Stats() }

// Start loads the AWS configuration and starts polling. It fails when
// the SDK's configuration cannot be loaded; an unreachable queue is
// retried with backoff (and counted) instead.
func (s *Source) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("sqs: already started")
	}
	var opts []func(*awsconfig.LoadOptions) error
	if s.cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(s.cfg.Region))
	}
	if s.cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.cfg.AccessKeyID, s.cfg.SecretAccessKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("sqs: AWS configuration: %w", err)
	}
	s.client = sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if s.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(s.cfg.Endpoint)
		}
	})
	s.started = true
	for range s.cfg.Receivers {
		s.wg.Go(s.receive)
	}
	s.wg.Go(s.watchDepth)
	return nil
}

// Shutdown stops polling, submits the batches in hand and deletes their
// messages. When ctx ends first, the batches in hand are abandoned
// undeleted (SQS delivers them again after their visibility timeout)
// and ctx's error is returned. It is safe to call without Start, and
// more than once.
func (s *Source) Shutdown(ctx context.Context) error {
	s.stopPoll()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancelSubmit()
		return nil
	case <-ctx.Done():
	}
	s.cancelSubmit()
	<-done
	return ctx.Err()
}

// receive long-polls and handles batches until polling stops.
func (s *Source) receive() {
	failures := 0
	for s.pollCtx.Err() == nil {
		out, err := s.client.ReceiveMessage(s.pollCtx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(s.cfg.QueueURL),
			MaxNumberOfMessages:         int32(s.cfg.MaxMessages),
			WaitTimeSeconds:             int32(s.cfg.WaitTime / time.Second),
			VisibilityTimeout:           int32(s.cfg.VisibilityTimeout / time.Second),
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameSentTimestamp},
		})
		if err != nil {
			if s.pollCtx.Err() != nil {
				return
			}
			s.c.Errors.Add(1)
			s.c.Warn(s.log, "sqs: receive failed; retrying", "err", err)
			if !brokerin.Sleep(s.pollCtx, s.deps.Retry.Pause(failures, "")) {
				return
			}
			failures++
			continue
		}
		failures = 0
		if len(out.Messages) > 0 {
			s.handle(out.Messages)
		}
	}
}

// handle submits a batch, extending its visibility meanwhile, and
// deletes the messages whose records were taken.
func (s *Source) handle(msgs []types.Message) {
	s.c.Messages.Add(int64(len(msgs)))
	var g httpin.Grouper
	streams := make([]string, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		stream, rec, reject := brokerin.Decode([]byte(aws.ToString(m.Body)), s.meta(m), &s.params)
		streams[i] = stream
		if ts, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil && rec.Timestamp == 0 && reject == nil {
			rec.Timestamp = ts * int64(time.Millisecond)
		}
		g.Add(stream, rec, reject)
	}
	batches := g.Batches()
	stopExtend := s.extend(msgs)
	err := brokerin.Submit(s.submitCtx, s.deps.Submitter, batches, s.cfg.Level, brokerin.DefaultBackoff, &s.c)
	stopExtend()
	var refused *brokerin.PermanentError
	switch {
	case err == nil:
		s.delete(msgs)
	case errors.As(err, &refused):
		// The batches of other streams were taken: delete their
		// messages, and leave the refused ones for the redrive policy.
		var taken []types.Message
		for i := range msgs {
			if !refused.Streams[brokerin.BatchOf(batches, streams[i])] {
				taken = append(taken, msgs[i])
			}
		}
		s.c.Rejected.Add(int64(len(msgs) - len(taken)))
		s.c.Warn(s.log, "sqs: the pipeline refused messages for good; they stay in the queue for its redrive policy", "messages", len(msgs)-len(taken), "err", err)
		if len(taken) > 0 {
			s.delete(taken)
		}
	default:
		// Shut down past the deadline: the messages reappear after
		// their visibility timeout.
	}
}

// extend renews the visibility of msgs every half timeout until the
// returned function is called, which waits for the renewing goroutine.
func (s *Source) extend(msgs []types.Message) (stop func()) {
	ctx, cancel := context.WithCancel(s.submitCtx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.cfg.VisibilityTimeout / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(msgs))
			for i := range msgs {
				entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)),
					ReceiptHandle: msgs[i].ReceiptHandle, VisibilityTimeout: int32(s.cfg.VisibilityTimeout / time.Second)}
			}
			out, err := s.client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(s.cfg.QueueURL), Entries: entries})
			if ctx.Err() != nil {
				return
			}
			if err != nil || len(out.Failed) > 0 {
				s.c.Errors.Add(1)
				s.c.Warn(s.log, "sqs: extending the visibility of a slow batch failed; its messages may be delivered twice", "err", err)
			} else {
				s.c.Extensions.Add(1)
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// delete removes msgs from the queue.
func (s *Source) delete(msgs []types.Message) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(msgs))
	for i := range msgs {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: msgs[i].ReceiptHandle}
	}
	for n := 0; ; n++ {
		out, err := s.client.DeleteMessageBatch(s.submitCtx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(s.cfg.QueueURL), Entries: entries})
		if err == nil && len(out.Failed) == 0 {
			return
		}
		if s.submitCtx.Err() != nil {
			return
		}
		s.c.Errors.Add(1)
		if err == nil {
			// Retry only the entries that failed.
			failed := map[string]bool{}
			for _, f := range out.Failed {
				failed[aws.ToString(f.Id)] = true
			}
			entries = slices.DeleteFunc(entries, func(e types.DeleteMessageBatchRequestEntry) bool { return !failed[aws.ToString(e.Id)] })
			err = fmt.Errorf("%d deletes failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		if n >= 4 {
			s.c.Warn(s.log, "sqs: deleting received messages failed; they will be delivered again", "err", err)
			return
		}
		if !brokerin.Sleep(s.submitCtx, s.deps.Retry.Pause(n, "")) {
			return
		}
	}
}

// watchDepth reads the queue's depth for the Lag metric every 15 s
// until polling stops.
func (s *Source) watchDepth() {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		out, err := s.client.GetQueueAttributes(s.pollCtx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(s.cfg.QueueURL),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages}})
		if err == nil {
			if n, err := strconv.ParseInt(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)], 10, 64); err == nil {
				s.c.Lag.Store(n)
			}
		}
		select {
		case <-s.pollCtx.Done():
			return
		case <-t.C:
		}
	}
}

// meta returns a message's broker attributes.
func (s *Source) meta(m *types.Message) []record.KV {
	kvs := make([]record.KV, 0, 2+len(m.MessageAttributes))
	kvs = append(kvs, record.KV{Key: "sqs.queue", Value: s.queue}, record.KV{Key: "sqs.message_id", Value: aws.ToString(m.MessageId)})
	for _, k := range slices.Sorted(maps.Keys(m.MessageAttributes)) {
		v := m.MessageAttributes[k]
		text := aws.ToString(v.StringValue)
		if v.StringValue == nil && v.BinaryValue != nil {
			text = string(v.BinaryValue)
		}
		kvs = append(kvs, record.KV{Key: "sqs.attr." + k, Value: text})
	}
	return kvs
}

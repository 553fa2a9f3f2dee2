package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirlabs/weir/internal/brokertest"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// Forward crash tests: the records, the batch of a push and of a
// forward, and how many records the broker must hold before weir is
// killed.
const (
	crashForwardRecords = 4000
	crashForwardPush    = 50
	crashForwardBatch   = 100
	crashForwardKillAt  = 300
)

// forwardCrashConfig is weir's config for a forwarder of stream app
// (forwarder is its list entry under forward:) with batches of
// crashForwardBatch. The timeouts are long so that no batch is
// published twice without a crash.
func forwardCrashConfig(t *testing.T, kind, forwarder string) string {
	t.Helper()
	cfg := fmt.Sprintf(`sink:
  max_file_age: 200ms
transform:
  max_age: 50ms
consume:
  poll_interval: 10ms
forward:
  %s:
    - name: orders
      stream: app
      batch_records: %d
      min_backoff: 10ms
      max_backoff: 200ms
%s`, kind, crashForwardBatch, forwarder)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// crashPusher pushes records "a-0".."a-(n-1)" to stream app as one
// idempotent producer, crashForwardPush records a batch, DURABLE. A
// batch that was not acknowledged is sent again, with its sequence, to
// the next server, which keeps it once.
type crashPusher struct {
	next  int          // first record of the pending batch
	acked atomic.Int64 // records acknowledged: "a-0".."a-(acked-1)"
}

// push sends batches until all n are acknowledged or a push fails.
func (cp *crashPusher) push(ctx context.Context, url string, n int) error {
	client, _ := newClients(url)
	for cp.next < n {
		var recs []*weirv1.LogRecord
		for i := cp.next; i < min(n, cp.next+crashForwardPush); i++ {
			r := tailRecord(fmt.Sprintf("a-%d", i), fmt.Sprintf("svc%d", i%3), "INFO", weirv1.SeverityNumber_SEVERITY_NUMBER_INFO)
			r.Attributes = []*weirv1.KeyValue{{Key: "i", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: strconv.Itoa(i)}}}}
			recs = append(recs, r)
		}
		_, err := client.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs,
			AckLevel: weirv1.AckLevel_ACK_LEVEL_DURABLE, ProducerId: "forward-crash", Sequence: uint64(cp.next/crashForwardPush + 1)}))
		if err != nil {
			return err
		}
		cp.next += len(recs)
		cp.acked.Store(int64(cp.next))
	}
	return nil
}

// forwardCrash runs weir as a child process with config, pushes
// crashForwardRecords records while it forwards them, kills it with
// SIGKILL once brokerCount reports at least crashForwardKillAt records
// at the broker, checks the forwarder was mid-stream, restarts weir on
// the same data directory and pushes the rest. It returns the server
// and the records acknowledged before the kill, once the forwarder has
// committed every record.
func forwardCrash(t *testing.T, config string, brokerCount func() int) (*weirProcess, int) {
	t.Helper()
	data := t.TempDir()
	p := startWeir(t, data, config)
	cp := &crashPusher{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var pushErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		pushErr = cp.push(ctx, p.url, crashForwardRecords)
	}()
	waitForward(t, fmt.Sprintf("%d records at the broker", crashForwardKillAt), func() bool { return brokerCount() >= crashForwardKillAt })
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	wg.Wait()
	ackedAtKill := int(cp.acked.Load())
	atBroker := brokerCount()
	t.Logf("killed weir with %d records acknowledged to the pusher (push error %v), %d at the broker", ackedAtKill, pushErr, atBroker)
	if atBroker >= crashForwardRecords {
		t.Fatalf("the broker had all %d records before the kill: the forwarder was not mid-stream", atBroker)
	}

	p = startWeir(t, data, config)
	if err := cp.push(context.Background(), p.url, crashForwardRecords); err != nil {
		t.Fatalf("pushing after the restart: %v", err)
	}
	waitCount(t, p.url, "SELECT count(*) FROM app", crashForwardRecords)
	waitForward(t, "the forwarder's commit of every record", func() bool { return forwardLag(t, p.url) == 0 })
	return p, ackedAtKill
}

// checkForwardCrash checks msgs, all the broker holds: every stored
// record arrived (so every acknowledged one: the pusher's records are
// all stored), as stored; what arrived twice is at most one forward
// batch, the one acknowledged by the broker but not yet committed when
// weir was killed.
func checkForwardCrash(t *testing.T, url string, msgs []forwarded, ackedAtKill int) {
	t.Helper()
	dups := checkForwarded(t, url, msgs)
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Body] = true
	}
	for i := range crashForwardRecords {
		if !seen[fmt.Sprintf("a-%d", i)] {
			t.Fatalf("record a-%d lost (acknowledged before the kill: %v)", i, i < ackedAtKill)
		}
	}
	t.Logf("%d messages for %d records: %d forwarded again after the restart (bound %d, one forward batch)",
		len(msgs), crashForwardRecords, dups, crashForwardBatch)
	if dups > crashForwardBatch {
		t.Errorf("%d records forwarded twice, more than one forward batch of %d", dups, crashForwardBatch)
	}
}

// TestForwardKafkaCrash kills weir with SIGKILL while its Kafka
// forwarder is mid-stream and restarts it: no acknowledged record is
// lost, and only the uncommitted tail, at most one forward batch, comes
// twice.
func TestForwardKafkaCrash(t *testing.T) {
	c := forwardCluster(t, 0, "")
	brokers := c.ListenAddrs()
	config := forwardCrashConfig(t, "kafka", fmt.Sprintf("      brokers: [%q]\n      topic: out\n", brokers[0]))
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// atBroker sums the end offsets of topic out: the records Kafka
	// acknowledged (the producer is idempotent and not transactional).
	atBroker := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, "out")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			n += int(o.Offset)
		})
		return n
	}
	p, ackedAtKill := forwardCrash(t, config, atBroker)
	checkForwardCrash(t, p.url, readForwarded(t, brokers, atBroker()), ackedAtKill)
}

// TestForwardAMQPCrash is TestForwardKafkaCrash with RabbitMQ: a
// durable queue bound to the forwarder's exchange holds every
// confirmed message.
func TestForwardAMQPCrash(t *testing.T) {
	rabbit := brokertest.StartRabbit(t)
	conn, err := amqp091.Dial(rabbit)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("crash", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("crash-all", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("crash-all", "#", "crash", false, nil); err != nil {
		t.Fatal(err)
	}
	config := forwardCrashConfig(t, "amqp", fmt.Sprintf("      url: %q\n      exchange: crash\n", rabbit))
	inQueue := func() int {
		q, err := ch.QueueDeclarePassive("crash-all", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q.Messages
	}
	p, ackedAtKill := forwardCrash(t, config, inQueue)
	checkForwardCrash(t, p.url, readExchange(t, ch, "crash-all", inQueue()), ackedAtKill)
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// ackBatchRecords is the number of records in one Push of
// BenchmarkAckLatency.
const ackBatchRecords = 100

// BenchmarkAckLatency measures how long a unary Connect Push of 100 Loghub
// records takes to be acknowledged at each level, with 1, 8 and 64
// producers, each pushing in a closed loop over its own connection to a
// fresh in-process server with the default configuration (one partition,
// write-ahead log with fsync group commit). One op is one Push. It reports
// the p50, p99 and p99.9 of the per-Push latencies (from the call to its
// answer) and the acknowledged records/s; the allocations are the client's
// and the server's together.
//
// COMMITTED waits for a published Parquet file, so its servers publish
// files after 200ms (sink.max_file_age) and flush Arrow batches after 50ms
// (transform.max_age) instead of the defaults, 1m and 250ms. An op then
// takes about a third of a second, so run it for a time rather than a
// count:
//
//	go test -run '^$' -bench 'AckLatency/level=(accepted|durable)' -benchtime 5000x ./cmd/weir/
//	go test -run '^$' -bench 'AckLatency/level=committed' -benchtime 10s ./cmd/weir/
//
// level=durable/half-rate/producers=8 answers issue 3 ("p99 ack latency at
// half the maximum rate"): it paces 8 producers to half the records/s that
// level=durable/producers=8 reached just before it in the same run, and
// also reports the latencies counted from each Push's scheduled start, so
// that a producer falling behind its schedule shows.
func BenchmarkAckLatency(b *testing.B) {
	batches, bodyBytes := ackBatches(b)
	committedConfig := func(c *config) {
		c.Sink.MaxFileAge = 200 * time.Millisecond
		c.Transform.MaxAge = 50 * time.Millisecond
	}
	levels := []struct {
		name   string
		level  weirv1.AckLevel
		mutate func(*config)
	}{
		{"accepted", weirv1.AckLevel_ACK_LEVEL_ACCEPTED, nil},
		{"durable", weirv1.AckLevel_ACK_LEVEL_DURABLE, nil},
		{"committed", weirv1.AckLevel_ACK_LEVEL_COMMITTED, committedConfig},
	}
	var durable8 float64 // records/s of the last level=durable/producers=8 run
	for _, l := range levels {
		b.Run("level="+l.name, func(b *testing.B) {
			for _, producers := range []int{1, 8, 64} {
				b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
					rate := ackLatency(b, batches, bodyBytes, l.level, producers, 0, l.mutate)
					if l.level == weirv1.AckLevel_ACK_LEVEL_DURABLE && producers == 8 {
						durable8 = rate
					}
				})
			}
			if l.level != weirv1.AckLevel_ACK_LEVEL_DURABLE {
				return
			}
			b.Run("half-rate/producers=8", func(b *testing.B) {
				if durable8 == 0 {
					b.Skip("needs level=durable/producers=8 to run first, in the same invocation")
				}
				const producers = 8
				target := durable8 / 2
				// Each producer pushes once per interval, so together they
				// offer target records/s.
				interval := time.Duration(float64(time.Second) * producers * ackBatchRecords / target)
				ackLatency(b, batches, bodyBytes, l.level, producers, interval, nil)
				b.ReportMetric(target, "target-records/s")
			})
		})
	}
}

// ackBatches cuts the Loghub records into batches of ackBatchRecords and
// returns them with the mean body bytes of a batch, for b.SetBytes.
func ackBatches(b *testing.B) ([][]*weirv1.LogRecord, int64) {
	b.Helper()
	recs := loghubRecords(b)
	var batches [][]*weirv1.LogRecord
	var bodyBytes int64
	for len(recs) >= ackBatchRecords {
		batches = append(batches, recs[:ackBatchRecords])
		for _, r := range recs[:ackBatchRecords] {
			bodyBytes += int64(len(r.GetBody()))
		}
		recs = recs[ackBatchRecords:]
	}
	if len(batches) == 0 {
		b.Fatalf("fewer than %d records in %s", ackBatchRecords, loghubDir)
	}
	return batches, bodyBytes / int64(len(batches))
}

// ackLatency starts a server configured by mutate and has producers
// goroutines share b.N unary Pushes at level, each on its own client and
// connection. With interval 0 each producer pushes as soon as its previous
// Push is answered; otherwise producer w starts its pushes at
// start + w*interval/producers + k*interval, or as soon as it can when it
// is behind. It reports the latency percentiles and records/s, and returns
// the records/s.
func ackLatency(b *testing.B, batches [][]*weirv1.LogRecord, bodyBytes int64, level weirv1.AckLevel, producers int, interval time.Duration, mutate func(*config)) float64 {
	s := startServer(b, "", mutate)
	ctx := context.Background()
	reqs := make([]*weirv1.PushRequest, len(batches))
	for i, recs := range batches {
		reqs[i] = &weirv1.PushRequest{Stream: "bench", Records: recs, AckLevel: level}
	}
	clients := make([]weirv1connect.IngestServiceClient, producers)
	for w := range clients {
		clients[w], _ = newClients(s.url)
		// Open the connection and create the stream before the clock
		// starts; ACCEPTED, so that COMMITTED does not wait for a file.
		warm := &weirv1.PushRequest{Stream: "bench", Records: batches[w%len(batches)], AckLevel: weirv1.AckLevel_ACK_LEVEL_ACCEPTED}
		if _, err := clients[w].Push(ctx, connect.NewRequest(warm)); err != nil {
			b.Fatalf("warm-up push: %v", err)
		}
	}
	// lat[w] and sched[w] are producer w's alone until wg.Wait.
	lat := make([][]time.Duration, producers)
	sched := make([][]time.Duration, producers)
	ops := make([]int, producers)
	for w := range producers {
		ops[w] = b.N / producers
		if w < b.N%producers {
			ops[w]++
		}
		lat[w] = make([]time.Duration, 0, ops[w])
		if interval > 0 {
			sched[w] = make([]time.Duration, 0, ops[w])
		}
	}
	b.SetBytes(bodyBytes)
	b.ReportAllocs()
	b.ResetTimer()

	start := time.Now()
	var wg sync.WaitGroup
	for w := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(interval * time.Duration(w) / time.Duration(producers))
			for i := range ops[w] {
				if interval > 0 {
					time.Sleep(time.Until(next))
				}
				t0 := time.Now()
				_, err := clients[w].Push(ctx, connect.NewRequest(reqs[(w+i*producers)%len(reqs)]))
				if err != nil {
					b.Errorf("producer %d, push %d: %v", w, i, err)
					return
				}
				done := time.Now()
				lat[w] = append(lat[w], done.Sub(t0))
				if interval > 0 {
					sched[w] = append(sched[w], done.Sub(next))
					next = next.Add(interval)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	all := slices.Concat(lat...)
	rate := float64(len(all)*ackBatchRecords) / elapsed.Seconds()
	reportPercentiles(b, all, "")
	if interval > 0 {
		reportPercentiles(b, slices.Concat(sched...), "-sched")
	}
	b.ReportMetric(rate, "records/s")
	// What the acks did not wait for: records still queued for the sink
	// when the last ack came (the buffer holds up to 256 Ki records, 64 MiB).
	b.ReportMetric(serverGauge(b, s.url, "weir_buffer_queued_records"), "backlog-records")
	return rate
}

// serverGauge reads an unlabelled gauge from the server's /metrics.
func serverGauge(b *testing.B, url, name string) float64 {
	b.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	b.Fatalf("%s/metrics has no %s (%v)", url, name, sc.Err())
	return 0
}

// reportPercentiles reports the p50, p99 and p99.9 of lat in µs, with
// suffix after the quantile's name. It sorts lat.
func reportPercentiles(b *testing.B, lat []time.Duration, suffix string) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}, {"p99.9", 0.999}} {
		// Nearest rank: the smallest latency with at least q of them at or
		// below it.
		i := max(int(math.Ceil(q.q*float64(len(lat))))-1, 0)
		b.ReportMetric(float64(lat[i])/float64(time.Microsecond), q.name+suffix+"-µs")
	}
}

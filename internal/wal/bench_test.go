package wal_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/wal"
)

// BenchmarkAppendSync measures durable appends on the real disk: each op is
// one 16 KiB Append (about 100 encoded log records) followed by a Sync of
// its position, spread over a number of concurrent producers. ns/op is
// wall time per op over all producers.
func BenchmarkAppendSync(b *testing.B) {
	const payloadBytes, recordsPerPayload = 16 << 10, 100
	payload := make([]byte, payloadBytes)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte('a' + r.IntN(26))
	}
	policies := []struct {
		name     string
		policy   wal.SyncPolicy
		interval time.Duration
	}{
		{"every", wal.SyncEvery, 0},
		{"interval-10ms", wal.SyncInterval, 10 * time.Millisecond},
	}
	for _, pc := range policies {
		for _, producers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("policy=%s/producers=%d", pc.name, producers), func(b *testing.B) {
				o := wal.DefaultOptions()
				o.Policy = pc.policy
				if pc.interval > 0 {
					o.Interval = pc.interval
				}
				l, err := wal.Open(b.TempDir(), o, nil)
				if err != nil {
					b.Fatal(err)
				}
				fsyncs0, appends0 := l.Stats()
				var next, latency atomic.Int64
				var failed atomic.Value
				b.SetBytes(payloadBytes)
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for range producers {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							start := time.Now()
							pos, err := l.Append(payload)
							if err == nil {
								err = l.Sync(context.Background(), pos)
							}
							if err != nil {
								failed.Store(err)
								return
							}
							latency.Add(int64(time.Since(start)))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				fsyncs, appends := l.Stats()
				fsyncs -= fsyncs0
				appends -= appends0
				secs := b.Elapsed().Seconds()
				b.ReportMetric(float64(fsyncs)/secs, "fsyncs/s")
				b.ReportMetric(float64(appends)/float64(max(fsyncs, 1)), "appends/fsync")
				b.ReportMetric(float64(b.N*recordsPerPayload)/secs, "records/s")
				b.ReportMetric(float64(latency.Load())/float64(b.N)/1e3, "µs/ack")
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

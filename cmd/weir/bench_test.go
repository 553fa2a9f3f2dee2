package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// loghubRecords returns the Loghub sample lines as records with a service
// name and a severity, as weir push sends them.
func loghubRecords(b *testing.B) []*weirv1.LogRecord {
	b.Helper()
	files, _ := filepath.Glob(filepath.Join(loghubDir, "*_2k.log"))
	var out []*weirv1.LogRecord
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			r := textRecord(sc.Text())
			r.SeverityText = guessSeverity(sc.Text())
			out = append(out, r)
		}
		f.Close()
	}
	return out
}

// BenchmarkPipeline pushes Loghub records through the whole pipeline on
// loopback (Connect PushStream, 1000 records a batch, 4 concurrent
// streams) and reports accepted records/s, then how long until all of
// them are visible to SQL.
func BenchmarkPipeline(b *testing.B) {
	recs := loghubRecords(b)
	const batch, senders = 1000, 4
	s := startServer(b, "", nil)
	ingest, _ := newClients(s.url)
	var bytes int64
	for _, r := range recs[:batch] {
		bytes += int64(len(r.GetBody()))
	}
	b.SetBytes(bytes)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + senders - 1) / senders
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := ingest.PushStream(context.Background())
			acks := make(chan error, 1)
			go func() {
				for range per {
					ack, err := st.Receive()
					if err == nil && ack.GetErrorCode() != "" {
						err = errors.New(ack.GetErrorMessage())
					}
					if err != nil {
						acks <- err
						return
					}
				}
				acks <- nil
			}()
			for i := 0; i < per; i++ {
				off := ((w*per + i) * batch) % (len(recs) - batch)
				if err := st.Send(&weirv1.PushStreamRequest{BatchId: uint64(i), Stream: "bench", Records: recs[off : off+batch]}); err != nil {
					b.Error(err)
					return
				}
			}
			st.CloseRequest()
			if err := <-acks; err != nil {
				b.Error(err)
			}
			st.CloseResponse()
		}()
	}
	wg.Wait()
	accepted := b.Elapsed()
	b.StopTimer()
	total := int64(per * senders * batch)
	start := time.Now()
	for {
		res := mustSQL(b, s.url, "SELECT count(*) AS n FROM logs WHERE stream = 'bench'")
		if n, _ := res.Rows[0]["n"].(json.Number).Int64(); n == total {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("only %v of %d records visible after a minute", res.Rows[0]["n"], total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(float64(total)/accepted.Seconds(), "records/s")
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-visible")
}

package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weirlabs/weir/bench"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunDiscard runs each protocol, mode and format against the
// in-process Discard server.
func TestRunDiscard(t *testing.T) {
	srv, err := bench.StartDiscard()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	for _, tc := range []struct{ protocol, mode, format string }{
		{"connect", "stream", bench.FormatRecords}, {"grpc", "stream", bench.FormatRecords},
		{"connect", "unary", bench.FormatRecords}, {"grpc-web", "unary", bench.FormatRecords},
		{"connect", "stream", bench.FormatArrow}, {"grpc", "stream", bench.FormatArrow},
		{"connect", "unary", bench.FormatArrow}, {"grpc-web", "unary", bench.FormatArrow},
	} {
		t.Run(tc.protocol+"_"+tc.mode+"_"+tc.format, func(t *testing.T) {
			cfg := bench.DefaultConfig()
			cfg.Server = srv.URL()
			cfg.Protocol, cfg.Mode, cfg.Format = tc.protocol, tc.mode, tc.format
			cfg.Concurrency, cfg.BatchSize = 2, 100
			cfg.Duration = 300 * time.Millisecond
			var progress bytes.Buffer
			rep, err := bench.Run(context.Background(), cfg, &progress)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records == 0 || rep.Records != rep.Batches*100 || rep.ErrorCount() != 0 {
				t.Errorf("records %d, batches %d, errors %v", rep.Records, rep.Batches, rep.Errors)
			}
			if rep.Freshness != nil || rep.ServerCPUSeconds != nil || rep.ServerPeakRSSBytes != nil {
				t.Errorf("discard server: freshness %v, cpu %v, rss %v; want unknown", rep.Freshness, rep.ServerCPUSeconds, rep.ServerPeakRSSBytes)
			}
			if l := rep.AckLatency; l.Samples == 0 || l.P50Ms > l.P99Ms || l.P99Ms > l.P999Ms {
				t.Errorf("ack latency %+v", l)
			}
			// Bodies average ~190 bytes; a loaded machine may ack only a
			// couple of 100-record batches in the 300 ms, whose mean
			// strays further from it.
			if rep.BodyBytes < rep.Records*120 || rep.BodyBytes > rep.Records*300 {
				t.Errorf("%d body bytes for %d synthetic records", rep.BodyBytes, rep.Records)
			}
			var table strings.Builder
			if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "unknown (not measured, or no query endpoint)") ||
				!strings.Contains(table.String(), tc.mode+", "+tc.format+",") {
				t.Errorf("table: %v\n%s", err, table.String())
			}
			raw, err := json.Marshal(rep)
			if err != nil || !bytes.Contains(raw, []byte(`"server_cpu_seconds":null`)) || !bytes.Contains(raw, []byte(`"format":"`+tc.format+`"`)) {
				t.Errorf("json: %v: %s", err, raw)
			}
		})
	}
}

func TestRunInvalidConfig(t *testing.T) {
	t.Parallel()
	f := func(mutate func(*bench.Config)) {
		t.Helper()
		cfg := bench.DefaultConfig()
		mutate(&cfg)
		if _, err := bench.Run(context.Background(), cfg, nil); !errors.Is(err, bench.ErrInvalidConfig) {
			t.Errorf("%+v: err %v, want ErrInvalidConfig", cfg, err)
		}
	}
	f(func(c *bench.Config) { c.Protocol, c.Mode = "grpc-web", "stream" })
	f(func(c *bench.Config) { c.Protocol = "http3" })
	f(func(c *bench.Config) { c.AckLevel = "eventually" })
	f(func(c *bench.Config) { c.Stream = "Bad-Name" })
	f(func(c *bench.Config) { c.Concurrency = 0 })
	f(func(c *bench.Config) { c.Server = "127.0.0.1:7070" })
	f(func(c *bench.Config) { c.Format = "parquet" })
	f(func(c *bench.Config) { c.Protocol, c.Format = bench.ProtocolJSONLine, bench.FormatArrow })
	f(func(c *bench.Config) { c.Freshness = "promql" })
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/esbulk"
	"github.com/weirlabs/weir/ingest/otlp"
	"github.com/weirlabs/weir/internal/alert"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/rpcgzip"
	"github.com/weirlabs/weir/internal/tail"
	"github.com/weirlabs/weir/internal/ui"
	weirv1connect "github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/query"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform"
)

// pipeline is the running pipeline as the HTTP API and the control plane
// see it.
type pipeline struct {
	engine *query.Engine
	lake   *sink.Lake
	pipe   *transform.Pipeline
	buf    *buffer.Buffer
	ing    *ingest.Service
	// budget bounds the request bytes of every ingest endpoint
	// (withEndpoint serves them through it).
	budget *ingest.Budget
	alerts *alert.Manager
	hub    *tail.Hub
	// consumers is set by newAPI.
	consumers *consume.Manager
	// hold keeps what consumer groups have not committed from retention
	// once newAPI gives it the groups.
	hold *retentionHold
}

// compressMinBytes is the smallest RPC message sent compressed to a
// client that accepts it. Acknowledgements and other small messages go
// as they are: gzip makes a few bytes no smaller and costs a compressor
// reset each (~1 % of the server's CPU at saturation, in PushStream's
// acks); query answers' chunks are far larger.
const compressMinBytes = 1024

// maxControlMessage bounds a request message (after decompression) of
// the services that take small requests: Tail, Subscribe, Admin and
// reflection. Ingest and Query have their own bounds.
const maxControlMessage = 1 << 20

// newReload returns the reload of the configuration file's stream rules
// and alerting rules (SIGHUP, AdminService.Reload): both are checked
// before either changes, and on error the running ones stay.
func newReload(cfg *config, p *pipeline, log *slog.Logger) func() (transform.Rules, error) {
	return func() (transform.Rules, error) {
		if cfg.path == "" {
			return nil, errors.New("the server was started without --config: there is no file to reload")
		}
		next := defaultConfig()
		if err := loadConfigFile(&next, cfg.path); err != nil {
			return nil, err
		}
		if err := p.alerts.CheckRules(context.Background(), next.Alerts.Rules); err != nil {
			return nil, fmt.Errorf("config %s: alerts: %w", cfg.path, err)
		}
		if err := p.pipe.Reload(next.Streams); err != nil {
			return nil, fmt.Errorf("config %s: %w", cfg.path, err)
		}
		if err := p.alerts.SetRules(context.Background(), next.Alerts.Rules); err != nil {
			return nil, fmt.Errorf("config %s: alerts: %w", cfg.path, err)
		}
		log.Info("stream processors reloaded", "config", cfg.path, "streams", len(next.Streams))
		return next.Streams, nil
	}
}

// newAPI returns the mux of weir's HTTP API over p (Connect services,
// SQL, the shipper protocols, metrics, probes and the UI) and the
// Prometheus registry behind /metrics. Tail streams end when ctx does.
func newAPI(ctx context.Context, cfg *config, p *pipeline, reload func() (transform.Rules, error), ready *readiness, log *slog.Logger) (*http.ServeMux, *prometheus.Registry, error) {
	uiHandler, err := newUIHandler(*cfg, p.engine, func(ctx context.Context) []ui.IngestEndpoint { return ingestRows(p.ing, auth.TenantOf(ctx)) },
		func(ctx context.Context) []ui.ConsumerGroup { return groupRows(p.consumers, auth.TenantOf(ctx)) })
	if err != nil {
		return nil, nil, err
	}
	replayer := ingest.NewReplayer(p.ing, func(ctx context.Context, tenant string, from ingest.Position, limit int, fn func(ingest.Position, record.Record) error) (int, error) {
		return p.engine.Scan(ctx, tenant, logschema.DeadLetterStream, query.Position(from), limit, func(pos query.Position, r record.Record) error {
			return fn(ingest.Position(pos), r)
		})
	}, filepath.Join(cfg.Data, "dead_letter_replay.json"))

	// Subscriptions read streams like queues over what queries see
	// (docs/consume.md).
	consumers, err := consume.New(cfg.consumeConfig(), newConsumeSource(p.engine, p.buf, p.lake, cfg.Buffer.Partitions), consumeDeadLetters{buf: p.buf, pipe: p.pipe}, log)
	if err != nil {
		return nil, nil, err
	}
	p.consumers = consumers
	p.hold.set(consumers)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		bufferCollector{p.buf}, lakeCollector{lake: p.lake, pipe: p.pipe}, endpointCollector{p.ing}, budgetCollector{p.budget}, retentionCollector{p.lake}, compactionCollector{p.lake}, p.alerts)
	reg.MustRegister(consumeCollector{consumers, p.hold}, nativeMemoryCollector{})

	// Connect requests must carry Connect-Protocol-Version, which a
	// cross-site form cannot set (docs/security.md).
	rpcOpts := connect.WithHandlerOptions(connect.WithRequireConnectProtocolHeader(), connect.WithCompressMinBytes(compressMinBytes))
	mux := http.NewServeMux()
	// Ingest's gzip decompressor charges the in-flight budget.
	ingestOpts := connect.WithHandlerOptions(rpcOpts, p.budget.ConnectCompression(cfg.Ingest.MaxMessageBytes))
	mux.Handle(p.ing.Handler(ingestOpts))
	mux.Handle(query.NewService(p.engine, auth.TenantOf).Handler(rpcOpts))
	// The other services' requests are small: bound them.
	ctlOpts := connect.WithHandlerOptions(rpcOpts, connect.WithReadMaxBytes(maxControlMessage), rpcgzip.Option(maxControlMessage, nil))
	mux.Handle(weirv1connect.NewTailServiceHandler(tailService{hub: p.hub, stopping: ctx}, ctlOpts))
	mux.Handle(weirv1connect.NewSubscribeServiceHandler(subscribeService{m: consumers, stopping: ctx, sendTimeout: cfg.Consume.SessionTimeout}, ctlOpts))
	mux.Handle(weirv1connect.NewAdminServiceHandler(adminService{reload: reload, replay: replayer, log: log, del: &deleter{engine: p.engine, lake: p.lake, log: log}}, ctlOpts))
	reflector := grpcreflect.NewStaticReflector(weirv1connect.IngestServiceName, weirv1connect.QueryServiceName,
		weirv1connect.TailServiceName, weirv1connect.AdminServiceName, weirv1connect.SubscribeServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, ctlOpts))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, ctlOpts))
	mux.Handle("/v1/sql", p.engine.HTTPHandler(auth.TenantOf))
	mux.Handle(alert.PathAlerts, p.alerts.Handler())
	mux.Handle(alert.PathTest, p.alerts.Handler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err := mountLogProtocols(mux, cfg, p.ing); err != nil {
		return nil, nil, err
	}
	// OpenTelemetry logs: the OTLP/gRPC LogsService beside weir's own
	// services, and OTLP/HTTP (docs/ingest-protocols.md).
	otelLogs, err := otlp.NewService(cfg.otlp(), p.ing)
	if err != nil {
		return nil, nil, err
	}
	mux.Handle(otelLogs.GRPCHandler(ingestOpts))
	mux.Handle(otelLogs.HTTPHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/readyz", ready)
	// The Elasticsearch API (_bulk and the probes shippers make) is at
	// the root, where shippers expect it, and under /es/ for those that
	// take a path; a browser asking for / gets the UI.
	es := esbulk.New(esbulk.Config{MaxBodyBytes: cfg.Ingest.MaxMessageBytes, MaxBatchRecords: cfg.Ingest.MaxBatchRecords}, p.ing, log)
	mux.Handle("/es/", http.StripPrefix("/es", es))
	mux.Handle("/", es.Handler(uiHandler))

	return mux, reg, nil
}

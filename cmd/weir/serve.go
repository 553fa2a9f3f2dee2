package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/hec"
	"github.com/weirlabs/weir/ingest/jsonl"
	"github.com/weirlabs/weir/ingest/loki"
	"github.com/weirlabs/weir/ingest/syslog"
	"github.com/weirlabs/weir/internal/arrowmem"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/guard"
	"github.com/weirlabs/weir/internal/tail"
	"github.com/weirlabs/weir/internal/tlsfiles"
	"github.com/weirlabs/weir/query"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := defaultConfig()
	configPath := fs.String("config", "", "YAML configuration file (flags override it)")
	addr := fs.String("addr", cfg.Addr, "listen address for Connect, gRPC, gRPC-Web and HTTP")
	data := fs.String("data", cfg.Data, "data directory (the lake and its state)")
	logLevel := fs.String("log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	pprofAddr := fs.String("pprof-addr", cfg.Profiling.PprofAddr, "serve /debug/pprof/ on this separate listen address (default: off)")
	pyroscopeURL := fs.String("pyroscope-url", cfg.Profiling.PyroscopeURL, "push continuous profiles to this Pyroscope server (default: off)")
	allowInsecure := fs.Bool("allow-insecure", cfg.Server.AllowInsecure, "listen on a non-loopback address without API keys or TLS (something in front must authenticate and encrypt)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *configPath != "" {
		if err := loadConfigFile(&cfg, *configPath); err != nil {
			return err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "addr":
			cfg.Addr = *addr
		case "data":
			cfg.Data = *data
		case "log-level":
			cfg.LogLevel = *logLevel
		case "pprof-addr":
			cfg.Profiling.PprofAddr = *pprofAddr
		case "pyroscope-url":
			cfg.Profiling.PyroscopeURL = *pyroscopeURL
		case "allow-insecure":
			cfg.Server.AllowInsecure = *allowInsecure
		}
	})
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if lim := cfg.goMemoryLimit(); lim > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(lim)
		gogc := "GOGC=" + os.Getenv("GOGC")
		if gc := cfg.goGCPercent(os.Getenv); gc > 0 {
			debug.SetGCPercent(gc)
			gogc = strconv.Itoa(gc)
		}
		log.Info("memory budget", "memory", cfg.Memory, "go_limit_mib", lim>>20, "go_gc_percent", gogc, "query_memory_limit", cfg.Query.MemoryLimit,
			"query_memory_ceiling", cfg.Query.MemoryCeiling, "buffer_max_bytes", cfg.Buffer.MaxBytes, "compaction_sort_rows", cfg.Sink.Compaction.SortRows)
	}
	if ceil, _ := parseBytes(cfg.Query.MemoryCeiling); ceil > 0 { // checked by validate
		if _, err := query.SetNativeMemoryLimit(ceil); err != nil {
			log.Warn("query.memory_ceiling is not enforced: a query may take DuckDB past it", "err", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, ln, log)
}

// serve runs the pipeline on ln until ctx is done, then drains it: every
// record acknowledged to a client is in a published Parquet file when
// serve returns nil.
//
// The stages are built and started back to front, and shut down front to
// back by the lifecycle (lifecycle.go):
//
//	query ← sink ← transform ← buffer ← ingest ← syslog, broker sources, HTTP server
//
// transform's processors run in ingest, before the buffer; its batchers
// are the buffer's consumers, turning each stream partition's records
// into Arrow batches for the sink. The forwarders read the engine
// through the consume manager: they start once it exists and stop
// before the stages they read.
func serve(ctx context.Context, cfg config, ln net.Listener, log *slog.Logger) (err error) {
	defer ln.Close()
	authn, err := auth.New(cfg.Auth)
	if err != nil {
		return fmt.Errorf("config: auth: %w", err)
	}
	var certs *tlsfiles.Reloader
	if cfg.Server.TLS.Enabled() {
		if certs, err = tlsfiles.New(cfg.Server.TLS); err != nil {
			return fmt.Errorf("config: server.tls: %w", err)
		}
	}
	loopback := isLoopback(ln.Addr())
	if problem := exposure(authn.Enabled(), certs != nil); !loopback && problem != "" {
		if !cfg.Server.AllowInsecure {
			return fmt.Errorf("refusing to serve on %s %s. Listen on a loopback address, configure auth.keys and server.tls, or set server.allow_insecure (--allow-insecure) if something in front of weir authenticates and encrypts every request", ln.Addr(), problem)
		}
		log.Warn("serving on a non-loopback address "+problem+"; something in front of weir must authenticate and encrypt every request", "addr", ln.Addr().String())
	}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	unlock, err := lockDataDir(cfg.Data)
	if err != nil {
		return err
	}
	defer unlock()

	stopPprof, err := startPprof(cfg.Profiling.PprofAddr, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopPprof(context.Background())) }()
	stopPyroscope, err := startPyroscope(cfg.Profiling.PyroscopeURL, cfg.Profiling.UploadInterval, ln.Addr().String(), log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopPyroscope()) }()

	// The pipeline, back to front: each stage starts once what it feeds
	// runs, and the lifecycle shuts the stages down in reverse, front to
	// back, once what feeds them has stopped (lifecycle.go).
	run := &lifecycle{log: log}
	defer func() {
		drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if serr := run.shutdown(drainCtx); serr != nil {
			err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
		} else if err == nil {
			log.Info("shut down cleanly")
		}
	}()

	engine, err := query.Open(cfg.query(), log) // query: SQL over published and staged files
	if err != nil {
		return err
	}
	run.add("query", engine)
	lakeObs := &icebergNudge{Observer: engine}
	scfg := cfg.sink()
	// Uploads confirmed and objects deleted change the lake's committed
	// files without an Observer call: they nudge the reconciler too.
	scfg.OnCommitted = lakeObs.nudge
	if scfg.Remote, err = lakeRemote(ctx, &cfg, log); err != nil {
		return err
	}
	if cfg.Iceberg.Enabled && scfg.Remote != nil {
		// No object a table's current snapshot lists is deleted.
		scfg.Remote.Referenced = lakeObs.referenced
	}
	// Retention waits for consumer groups (docs/consume.md), which newAPI
	// loads.
	hold := &retentionHold{ret: cfg.Retention.sink(), maxHold: cfg.Consume.MaxRetentionHold}
	scfg.Retention.Hold = hold.keep
	lake, err := sink.New(scfg, lakeObs, log) // sink: Parquet files, shown to the engine
	if err != nil {
		return err
	}
	// Queries fetch the files evicted from the lake's local cache.
	engine.SetFetcher(lake)
	if err := showLake(engine, lake); err != nil {
		return err
	}
	if err := run.start(ctx, "sink", lake); err != nil {
		return err
	}
	// Iceberg: a table per stream, following the lake's files; nudged
	// by the lake's changes (iceberg.go).
	ice, err := newIceberg(&cfg, lake, log)
	if err != nil {
		return err
	}
	if ice != nil {
		lakeObs.rec.Store(ice)
		if err := run.start(ctx, "iceberg", ice); err != nil {
			return err
		}
	}
	pipe, err := transform.NewPipeline(cfg.pipeline(log)) // transform: processors, before the buffer
	if err != nil {
		return err
	}
	if err := run.start(ctx, "transform", pipe); err != nil {
		return err
	}
	tcfg := cfg.transform()
	batchMem := arrowmem.NewPool(64<<10, 2*int64(tcfg.MaxBytes)) // batches' buffers, reused once encoded (memory.go)
	hub := tail.NewHub(cfg.tail())
	buf, err := buffer.New(cfg.buffer(), buffer.Deps{ // buffer: rings and write-ahead log
		NewConsumer: func(k buffer.Key) buffer.Consumer {
			// After the buffer, a stream partition's records become
			// Arrow batches for the sink.
			b, err := arrowbatch.NewBatcher(tcfg, k.Tenant, k.Stream, k.Partition, lake, batchMem, log)
			if err != nil {
				panic(err) // tcfg was validated at start-up
			}
			return tailConsumer{Batcher: b, hub: hub}
		},
		NewStream: func(tenant, stream string) {
			// The stream's view exists before its first push is
			// acknowledged, so a query right after the ack finds it.
			if err := engine.EnsureStream(tenant, stream); err != nil {
				log.Error("query: create the view of a new stream", "tenant", tenant, "stream", stream, "err", err)
			}
		},
		FirstOffset: func(k buffer.Key) int64 { return lake.LastOffset(k.Tenant, k.Stream, k.Partition) },
		Published: func(ctx context.Context, k buffer.Key, from int64) (func(int64) bool, error) {
			set, err := lake.PublishedOffsets(ctx, k.Tenant, k.Stream, k.Partition, from)
			return set.Contains, err
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	if err := run.start(ctx, "buffer", buf); err != nil {
		return err
	}
	ing, err := ingest.NewService(cfg.ingest(), pipe, buf, log) // ingest: every protocol's way in
	if err != nil {
		return err
	}
	// Alerting rules run through the engine; their SQL is checked and
	// planned here, so a bad rule stops the start. They are first
	// evaluated once replayed records are queryable (startAlerts).
	alerts, err := newAlerts(&cfg, engine, ln, log)
	if err != nil {
		return err
	}
	run.add("alerts", alerts)

	// Request bodies in flight, every ingest endpoint together, shared
	// among the tenants that contend for them.
	budget, err := ingest.NewBudget(ingest.BudgetConfig{
		Size: cfg.Ingest.MaxInflightBytes, Wait: cfg.Ingest.PushTimeout, Stall: cfg.Ingest.InflightStallTimeout, MaxHold: cfg.Server.ReadTimeout,
		Tenant: auth.TenantOf, MinShare: int64(cfg.Ingest.MaxMessageBytes),
	})
	if err != nil {
		return err
	}
	p := &pipeline{engine: engine, lake: lake, pipe: pipe, buf: buf, ing: ing, budget: budget, alerts: alerts, hub: hub, hold: hold}
	reload := newReload(&cfg, p, log)
	stopHUP := onHangup(func() {
		if _, err := reload(); err != nil {
			log.Error("reload failed; the running processors stay", "err", err)
		}
		if certs != nil {
			if err := certs.Reload(); err != nil {
				log.Error("TLS certificate reload failed; the running certificate stays", "err", err)
			} else {
				log.Info("TLS certificate reloaded")
			}
		}
	})
	defer stopHUP()
	ready := newReadiness()
	var readyWG sync.WaitGroup
	readyCtx, stopReady := context.WithCancel(ctx)
	readyWG.Go(func() {
		awaitRecovery(readyCtx, ready, buf, lake, engine, cfg.Buffer.TickInterval, log)
	})
	// Rules are first evaluated once replayed records are queryable, so
	// a restart does not resolve an alert for want of its records.
	readyWG.Go(func() { startAlerts(readyCtx, ready, alerts, log) })
	defer func() { stopReady(); readyWG.Wait() }()
	mux, reg, err := newAPI(ctx, &cfg, p, reload, ready, log)
	if err != nil {
		return err
	}
	if ice != nil {
		reg.MustRegister(icebergCollector{ice})
		ready.addDetail("iceberg", icebergDetail(ice))
	}
	if scfg.Remote != nil {
		reg.MustRegister(lakeRemoteCollector{lake})
		ready.addDetail("lake", lakeRemoteDetail(lake))
	}
	// The forwarders read the lake through the consume manager: they
	// stop before the query engine and the buffer they read.
	fwd, err := startForwarders(ctx, &cfg, p.consumers, log)
	if err != nil {
		return err
	}
	run.add("forwarders", fwd)
	reg.MustRegister(forwardCollector{fwd})

	// The syslog listeners and the broker sources feed the ingest
	// service like the HTTP handlers; they stop before the buffer drains.
	// They start before the HTTP server, so that a server that answers
	// HTTP also listens for syslog.
	syslogSrv, err := newSyslog(&cfg, ing, log)
	if err != nil {
		return err
	}
	if err := run.start(ctx, "syslog", syslogSrv); err != nil {
		return err
	}
	announceSyslog(syslogSrv, cfg.Syslog.TLS.Enabled(), log)
	reg.MustRegister(syslogCollector{syslogSrv})
	// Each source commits what reached its ack level as it goes.
	brokerSources, err := startSources(ctx, &cfg, ing, log)
	if err != nil {
		return err
	}
	run.add("broker sources", brokerSources)
	reg.MustRegister(sourceCollector{brokerSources})
	hosts := cfg.Server.Hosts
	if len(hosts) == 0 && loopback {
		hosts = guard.LoopbackHosts
	}
	// The host check comes first, so a rebinding page learns nothing,
	// not even whether a key is needed; then the key and its roles.
	front := guard.Handler(guard.Config{Hosts: hosts, Origins: cfg.Server.Origins}, authn.Handler(withEndpoint(mux, budget)))
	web, err := newWebServer(&cfg, stageLabels(front), ln, certs, ctx)
	if err != nil {
		return err
	}
	if err := run.start(ctx, "http server", web); err != nil {
		return err
	}
	log.Info("weir serving", "addr", ln.Addr().String(), "data", cfg.Data)

	select {
	case <-ctx.Done():
	case <-web.failed():
		log.Error("server failed", "err", web.err)
	}
	log.Info("shutting down: draining every stage")
	ready.set("shutting down")
	return nil
}

// bufferCollector exports the buffer's statistics to Prometheus.
type bufferCollector struct{ b *buffer.Buffer }

var (
	descQueuedRecords = prometheus.NewDesc("weir_buffer_queued_records", "Records waiting in the ring buffers.", nil, nil)
	descQueuedBytes   = prometheus.NewDesc("weir_buffer_queued_bytes", "Accounted bytes waiting in the ring buffers.", nil, nil)
	descStreams       = prometheus.NewDesc("weir_buffer_streams", "Streams with ring buffers.", nil, nil)
	descPushedRecords = prometheus.NewDesc("weir_ingest_records_total", "Records accepted into the buffer.", nil, nil)
	descPushedBatches = prometheus.NewDesc("weir_ingest_batches_total", "Batches accepted into the buffer.", nil, nil)
	descRejectedFull  = prometheus.NewDesc("weir_ingest_rejected_full_total", "Batches rejected because the buffer stayed full.", nil, nil)
	descUncommitted   = prometheus.NewDesc("weir_buffer_uncommitted_records", "Records pushed but not yet in a published Parquet file.", nil, nil)
	descWALDamage     = prometheus.NewDesc("weir_wal_damage_total", "Damaged spans of the write-ahead log skipped at recovery (docs/wal.md).", nil, nil)
	descWALLost       = prometheus.NewDesc("weir_wal_lost_records_total", "Unpublished records lost to write-ahead-log damage.", nil, nil)
	descWALSalvaged   = prometheus.NewDesc("weir_wal_salvaged_records_total", "Records of damaged log records sent to the dead-letter stream.", nil, nil)
	descRecoveryFails = prometheus.NewDesc("weir_wal_recovery_failures_total", "Streams whose write-ahead log could not be recovered; they refuse pushes.", nil, nil)
	descProdsDamaged  = prometheus.NewDesc("weir_buffer_producer_tables_damaged_total", "Streams whose saved table of idempotent producers did not parse and was set aside (docs/durability.md).", nil, nil)
)

func (c bufferCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueuedRecords, descQueuedBytes, descStreams, descPushedRecords, descPushedBatches, descRejectedFull, descUncommitted,
		descWALDamage, descWALLost, descWALSalvaged, descRecoveryFails, descProdsDamaged} {
		ch <- d
	}
}

func (c bufferCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(descQueuedRecords, prometheus.GaugeValue, float64(s.QueuedRecords))
	ch <- prometheus.MustNewConstMetric(descQueuedBytes, prometheus.GaugeValue, float64(s.QueuedBytes))
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(s.Streams))
	ch <- prometheus.MustNewConstMetric(descPushedRecords, prometheus.CounterValue, float64(s.PushedRecords))
	ch <- prometheus.MustNewConstMetric(descPushedBatches, prometheus.CounterValue, float64(s.PushedBatches))
	ch <- prometheus.MustNewConstMetric(descRejectedFull, prometheus.CounterValue, float64(s.RejectedFull))
	ch <- prometheus.MustNewConstMetric(descUncommitted, prometheus.GaugeValue, float64(s.Uncommitted))
	ch <- prometheus.MustNewConstMetric(descWALDamage, prometheus.CounterValue, float64(s.WALDamage))
	ch <- prometheus.MustNewConstMetric(descWALLost, prometheus.CounterValue, float64(s.WALLostRecords))
	ch <- prometheus.MustNewConstMetric(descWALSalvaged, prometheus.CounterValue, float64(s.WALSalvagedRecords))
	ch <- prometheus.MustNewConstMetric(descRecoveryFails, prometheus.CounterValue, float64(s.RecoveryFailures))
	ch <- prometheus.MustNewConstMetric(descProdsDamaged, prometheus.CounterValue, float64(s.ProducerTablesDamaged))
}

// lakeCollector exports the published lake's size and the stream
// processors' counters to Prometheus.
type lakeCollector struct {
	lake *sink.Lake
	pipe *transform.Pipeline
}

var (
	descLakeFiles   = prometheus.NewDesc("weir_lake_files", "Published Parquet files.", nil, nil)
	descLakeBytes   = prometheus.NewDesc("weir_lake_bytes", "Bytes on disk of the published Parquet files.", nil, nil)
	descLakeRows    = prometheus.NewDesc("weir_lake_rows", "Records in the published Parquet files.", nil, nil)
	descLakeDamaged = prometheus.NewDesc("weir_lake_damaged_files", "Published files found damaged at start and moved to <data>/lake/.damaged/ (docs/durability.md).", nil, nil)
	descDeadLetters = prometheus.NewDesc("weir_transform_dead_letters_total", "Records sent to the dead-letter stream.", nil, nil)
	descDropped     = prometheus.NewDesc("weir_transform_dropped_total", "Records dropped by filter, drop, sample or on_error: drop.", nil, nil)
	descRouted      = prometheus.NewDesc("weir_transform_routed_total", "Records routed to another stream.", nil, nil)
	descLimited     = prometheus.NewDesc("weir_transform_limited_total", "Records whose attributes were cut to the limits.", nil, nil)
)

func (c lakeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLakeFiles, descLakeBytes, descLakeRows, descLakeDamaged, descDeadLetters, descDropped, descRouted, descLimited} {
		ch <- d
	}
}

func (c lakeCollector) Collect(ch chan<- prometheus.Metric) {
	var bytes, rows int64
	files := c.lake.Files()
	for _, f := range files {
		bytes += f.Bytes
		rows += f.Rows
	}
	ch <- prometheus.MustNewConstMetric(descLakeFiles, prometheus.GaugeValue, float64(len(files)))
	ch <- prometheus.MustNewConstMetric(descLakeBytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(descLakeRows, prometheus.GaugeValue, float64(rows))
	ch <- prometheus.MustNewConstMetric(descLakeDamaged, prometheus.GaugeValue, float64(len(c.lake.Damaged())))
	st := c.pipe.Stats()
	ch <- prometheus.MustNewConstMetric(descDeadLetters, prometheus.CounterValue, float64(st.DeadLetters))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descRouted, prometheus.CounterValue, float64(st.Routed))
	ch <- prometheus.MustNewConstMetric(descLimited, prometheus.CounterValue, float64(st.Limited))
}

// isLoopback reports whether addr is a TCP address on a loopback
// interface (127.0.0.0/8, ::1).
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// exposure says what is missing for serving beyond loopback: "" when
// requests are authenticated and encrypted.
func exposure(authenticated, encrypted bool) string {
	switch {
	case !authenticated && !encrypted:
		return "without authentication or TLS: every client could read and change every stream"
	case !authenticated:
		return "without authentication: every client could read and change every stream"
	case !encrypted:
		return "without TLS: API keys and records would cross the network in clear text"
	}
	return ""
}

// mountLogProtocols serves the push APIs of Loki, VictoriaLogs' JSON
// lines, weir's own JSON lines and Splunk HEC (docs/ingest-protocols.md).
func mountLogProtocols(mux *http.ServeMux, cfg *config, ing *ingest.Service) error {
	lokiH, err := loki.NewHandler(cfg.loki(), ing)
	if err != nil {
		return err
	}
	vl, err := jsonl.NewVictoriaLogs(cfg.jsonl(), ing)
	if err != nil {
		return err
	}
	native, err := jsonl.NewNative(cfg.jsonl(), ing)
	if err != nil {
		return err
	}
	hecH, err := hec.NewHandler(cfg.hec(), ing)
	if err != nil {
		return err
	}
	mux.Handle(loki.Path, lokiH)
	mux.Handle(jsonl.VictoriaLogsPath, vl)
	mux.Handle(jsonl.NativePath, native)
	for path, h := range hecH.Routes() {
		mux.Handle(path, h)
	}
	return nil
}

// newSyslog returns the syslog listeners cfg configures (none by
// default) on the ingest service, not yet started.
func newSyslog(cfg *config, ing *ingest.Service, log *slog.Logger) (*syslog.Server, error) {
	deps := syslog.Deps{Submitter: ing, Log: log}
	if cfg.Syslog.TLS.Enabled() {
		certs, err := tlsfiles.New(cfg.Syslog.TLS)
		if err != nil {
			return nil, fmt.Errorf("config: syslog.tls: %w", err)
		}
		deps.TLS = certs.TLSConfig()
	}
	s, err := syslog.New(cfg.syslogConfig(), deps)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return s, nil
}

// announceSyslog logs where the started syslog listeners listen.
func announceSyslog(s *syslog.Server, tls bool, log *slog.Logger) {
	if a := s.TCPAddr(); a != nil {
		log.Info("syslog listening", "tcp", a.String(), "tls", tls)
	}
	if a := s.UDPAddr(); a != nil {
		log.Info("syslog listening", "udp", a.String())
	}
}

// syslogCollector exports the syslog listeners' counters to Prometheus.
type syslogCollector struct{ s *syslog.Server }

var (
	descSyslogConns      = prometheus.NewDesc("weir_syslog_connections", "Open syslog TCP connections.", nil, nil)
	descSyslogMessages   = prometheus.NewDesc("weir_syslog_messages_total", "Syslog messages read, including those dead-lettered.", nil, nil)
	descSyslogBad        = prometheus.NewDesc("weir_syslog_dead_lettered_total", "Syslog messages dead-lettered: unparseable, oversized or cut off.", nil, nil)
	descSyslogFraming    = prometheus.NewDesc("weir_syslog_framing_errors_total", "Syslog TCP connections closed on a broken octet count.", nil, nil)
	descSyslogWaits      = prometheus.NewDesc("weir_syslog_backpressure_waits_total", "Syslog TCP batches that waited for buffer room, slowing their sender.", nil, nil)
	descSyslogDropped    = prometheus.NewDesc("weir_syslog_dropped_total", "Syslog TCP records the pipeline refused or that shutdown cut off.", nil, nil)
	descSyslogUDPDropped = prometheus.NewDesc("weir_syslog_udp_dropped_total", "Syslog UDP records dropped because the pipeline could not keep up.", nil, nil)
)

func (c syslogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSyslogConns, descSyslogMessages, descSyslogBad, descSyslogFraming, descSyslogWaits, descSyslogDropped, descSyslogUDPDropped} {
		ch <- d
	}
}

func (c syslogCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descSyslogConns, prometheus.GaugeValue, float64(st.Connections))
	ch <- prometheus.MustNewConstMetric(descSyslogMessages, prometheus.CounterValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(descSyslogBad, prometheus.CounterValue, float64(st.Unparseable+st.Oversized))
	ch <- prometheus.MustNewConstMetric(descSyslogFraming, prometheus.CounterValue, float64(st.FramingErrors))
	ch <- prometheus.MustNewConstMetric(descSyslogWaits, prometheus.CounterValue, float64(st.BackpressureWaits))
	ch <- prometheus.MustNewConstMetric(descSyslogDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descSyslogUDPDropped, prometheus.CounterValue, float64(st.UDPDropped))
}

// showLake makes the lake's files visible to the engine at start. A file
// whose footer DuckDB cannot read (some damage passes the lake's reader)
// would fail every view change of its tenant: the lake sets such files
// aside before its start, as it does files it cannot read itself, and the
// rest are shown (docs/durability.md, "A damaged lake file").
func showLake(engine *query.Engine, lake *sink.Lake) error {
	// A file is reported at most twice: a lake in object storage first
	// puts the bucket's copy in its place.
	reported := map[string]int{}
	for {
		err := engine.AddFiles(lake.Files())
		var ue *query.UnreadableFilesError
		if !errors.As(err, &ue) {
			return err
		}
		for _, f := range ue.Files {
			if reported[f.Path]++; reported[f.Path] > 2 {
				return err
			}
		}
		if err := lake.SetAside(ue.Files, ue.Errs); err != nil {
			return fmt.Errorf("%w (%w)", err, ue)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/weirlabs/weir/bench"
)

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("weir bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Server, "server", cfg.Server, "weir server URL")
	fs.StringVar(&cfg.Protocol, "protocol", cfg.Protocol, "connect, grpc or grpc-web (weir's Connect clients), otlp (OTLP/HTTP protobuf to --server), or jsonline (JSON lines to the URL --server names, e.g. http://127.0.0.1:7070/insert/jsonline or a peer's)")
	fs.StringVar(&cfg.Mode, "mode", cfg.Mode, "stream (PushStream) or unary (Push); grpc-web: unary only")
	fs.StringVar(&cfg.Format, "format", cfg.Format, "records (the records field) or arrow (each batch as an Arrow IPC stream in arrow_ipc)")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "workers, each with one stream or one call in flight")
	fs.IntVar(&cfg.BatchSize, "batch", cfg.BatchSize, "records per batch")
	fs.IntVar(&cfg.Window, "window", cfg.Window, "batches in flight per stream")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "target records/s over all workers (0: as fast as possible)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to send")
	fs.StringVar(&cfg.AckLevel, "ack", cfg.AckLevel, "acknowledgement level: accepted, durable or committed")
	fs.StringVar(&cfg.Source, "source", cfg.Source, "synthetic, or a glob of files whose lines are sent (e.g. 'testdata/loghub/*.log')")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "target stream")
	fs.StringVar(&cfg.Freshness, "freshness", "", "how freshness is measured: sql (weir's /v1/sql), logsql (VictoriaLogs' /select/logsql/query) or off; default sql, off with --protocol jsonline")
	peerFreshness := fs.String("peer-freshness", bench.FreshnessLogsQL, "how the --peer's freshness is measured: sql, logsql or off (both systems carry the polls' load, or neither)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	ceiling := fs.Bool("ceiling", false, "run against an in-process server that acks without storing, instead of --server")
	compare := fs.Bool("compare", false, "run the ceiling first, then --server, and print both and the efficiency")
	peer := fs.String("peer", "", "also send the same load to another system's JSON-lines ingest URL (e.g. VictoriaLogs' http://127.0.0.1:9428/insert/jsonline) and print both")
	queries := fs.Int("queries", 0, "after the load, time the dashboard queries over --stream, each this many runs (0: none); with --duration 0, only the queries")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir bench [flags]\n\nSends load to a weir server with the Connect clients and reports throughput,\nack latency, freshness (ack until visible to SQL) and the server's CPU and RSS.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *ceiling && *compare {
		return fmt.Errorf("%w: --ceiling and --compare exclude each other", errUsage)
	}
	if *queries < 0 {
		return fmt.Errorf("%w: --queries %d: want 0 or more runs", errUsage, *queries)
	}
	if *queries > 0 {
		if *ceiling || *compare || *peer != "" {
			return fmt.Errorf("%w: --queries runs without --ceiling, --compare and --peer", errUsage)
		}
		return runWithQueries(ctx, cfg, *queries, *asJSON, stdout, stderr)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *peer != "" {
		if *ceiling || *compare {
			return fmt.Errorf("%w: --peer runs without --ceiling and --compare", errUsage)
		}
		return runPeer(ctx, cfg, *peer, *peerFreshness, *asJSON, stdout, stderr)
	}

	if !*ceiling && !*compare {
		rep, err := bench.Run(ctx, cfg, stderr)
		if err != nil {
			return err
		}
		return printReport(stdout, *asJSON, rep)
	}
	ceil, err := runCeiling(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if *ceiling {
		return printReport(stdout, *asJSON, ceil)
	}
	rep, err := bench.Run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	var efficiency float64
	if ceil.RecordsPerSecond > 0 {
		efficiency = rep.RecordsPerSecond / ceil.RecordsPerSecond
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Ceiling    bench.Report `json:"ceiling"`
			Server     bench.Report `json:"server"`
			Efficiency float64      `json:"efficiency"`
		}{ceil, rep, efficiency})
	}
	fmt.Fprintln(stdout, "ceiling (in-process server that acks without storing):")
	if err := ceil.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nserver (full pipeline):")
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "\nefficiency: %.1f %% of the ceiling's records/s (%.0f / %.0f)\n", 100*efficiency, rep.RecordsPerSecond, ceil.RecordsPerSecond)
	return err
}

// runWithQueries runs cfg's load unless its duration is 0, then times the
// dashboard queries over its stream, and prints both.
func runWithQueries(ctx context.Context, cfg bench.Config, runs int, asJSON bool, stdout, stderr io.Writer) error {
	var rep *bench.Report
	if cfg.Duration != 0 {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		r, err := bench.Run(ctx, cfg, stderr)
		if err != nil {
			return err
		}
		rep = &r
	}
	qrep, err := bench.RunQueries(ctx, cfg.Server, cfg.Stream, runs)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Load    *bench.Report     `json:"load,omitempty"`
			Queries bench.QueryReport `json:"queries"`
		}{rep, qrep})
	}
	if rep != nil {
		if err := rep.WriteTable(stdout); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	return qrep.WriteTable(stdout)
}

// runCeiling runs cfg against an in-process bench.Discard server.
func runCeiling(ctx context.Context, cfg bench.Config, progress io.Writer) (bench.Report, error) {
	srv, err := bench.StartDiscard()
	if err != nil {
		return bench.Report{}, err
	}
	cfg.Server = srv.URL()
	rep, err := bench.Run(ctx, cfg, progress)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rep, errors.Join(err, srv.Shutdown(shutCtx))
}

func printReport(w io.Writer, asJSON bool, rep bench.Report) error {
	if !asJSON {
		return rep.WriteTable(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// runPeer runs cfg against the weir server, then the same load against a
// peer's JSON-lines endpoint, its freshness measured as freshness says,
// and prints both side by side.
func runPeer(ctx context.Context, cfg bench.Config, peerURL, freshness string, asJSON bool, stdout, stderr io.Writer) error {
	pcfg := cfg
	pcfg.Server, pcfg.Protocol, pcfg.Format, pcfg.Freshness = peerURL, bench.ProtocolJSONLine, bench.FormatRecords, freshness
	if err := pcfg.Validate(); err != nil {
		return fmt.Errorf("%w: --peer: %v", errUsage, err)
	}
	rep, err := bench.Run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	prep, err := bench.Run(ctx, pcfg, stderr)
	if err != nil {
		return err
	}
	var ratio float64
	if prep.RecordsPerSecond > 0 {
		ratio = rep.RecordsPerSecond / prep.RecordsPerSecond
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Weir  bench.Report `json:"weir"`
			Peer  bench.Report `json:"peer"`
			Ratio float64      `json:"ratio"`
		}{rep, prep, ratio})
	}
	fmt.Fprintln(stdout, "weir:")
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\npeer (%s, JSON lines):\n", peerURL)
	if err := prep.WriteTable(stdout); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "\nweir / peer: %.2f × the records/s (%.0f / %.0f)\n", ratio, rep.RecordsPerSecond, prep.RecordsPerSecond)
	return err
}

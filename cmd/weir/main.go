// Command weir is the weir log pipeline: a server (weir serve) and its
// command-line clients (weir push, query, tail, consume, export and the
// others its usage lists).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `weir: a log and event pipeline.

Usage:
  weir serve [flags]            run the server
  weir push  [flags] [files]    send log lines from files (or stdin) to a stream
  weir query [flags] SQL        run a read-only SQL query
  weir bench [flags]            measure throughput, latency and freshness of a server
  weir tail  [flags]            print records as they arrive
  weir consume [flags]          read a stream from a position, then live, in offset order
  weir export [flags]           write a stream's records to Parquet, CSV or JSON lines files
  weir delete [flags]           delete the records of a stream that match a SQL predicate
  weir reload [flags]           make a running server re-read its configuration
  weir replay-dead-letter [flags]  send dead letters through their stream's processors again
  weir key new|hash             make an API key, or hash a token read on stdin
  weir alert test FILE          check alerting rules on a server and run them once

Run 'weir <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "weir:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks errors in how weir was called.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], stderr)
	case "push":
		return pushCmd(ctx, args[1:], stdin, stdout, stderr)
	case "query":
		return queryCmd(ctx, args[1:], stdout, stderr)
	case "tail":
		return tailCmd(ctx, args[1:], stdout, stderr)
	case "consume":
		return consumeCmd(ctx, args[1:], stdout, stderr)
	case "export":
		return exportCmd(ctx, args[1:], stdout, stderr)
	case "delete":
		return deleteCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchCmd(ctx, args[1:], stdout, stderr)
	case "reload":
		return reloadCmd(ctx, args[1:], stdout, stderr)
	case "replay-dead-letter":
		return replayCmd(ctx, args[1:], stdout, stderr)
	case "key":
		return keyCmd(args[1:], stdin, stdout, stderr)
	case "alert":
		return alertCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

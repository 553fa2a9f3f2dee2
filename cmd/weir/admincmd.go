package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// replayCmd is `weir replay-dead-letter`.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir replay-dead-letter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	var streams streamList
	fs.Var(&streams, "stream", "only dead letters sent to this stream (repeatable or a comma list; default: all)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir replay-dead-letter [flags]\n\nSends the records of the _dead_letter stream through their stream's current\nprocessors again, after the configuration was fixed and reloaded. Each dead\nletter is replayed once; records that fail again become new dead letters.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	for _, s := range streams {
		if err := record.ValidateStream(s); err != nil {
			return fmt.Errorf("%w: --stream: %v", errUsage, err)
		}
	}
	client := weirv1connect.NewAdminServiceClient(newHTTPClient(), strings.TrimRight(*server, "/"))
	resp, err := client.ReplayDeadLetter(ctx, connect.NewRequest(&weirv1.ReplayDeadLetterRequest{Streams: streams}))
	if err != nil {
		return err
	}
	m := resp.Msg
	fmt.Fprintf(stdout, "read %d dead letters: %d replayed, %d failed again, %d dropped, %d skipped (other streams)\n",
		m.GetRead(), m.GetReplayed(), m.GetFailedAgain(), m.GetDropped(), m.GetSkipped())
	return nil
}

// reloadCmd is `weir reload`.
func reloadCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir reload [flags]\n\nMakes a running server re-read its configuration file and apply its stream\nprocessors (as SIGHUP does). An invalid file is reported and changes nothing.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	client := weirv1connect.NewAdminServiceClient(newHTTPClient(), strings.TrimRight(*server, "/"))
	resp, err := client.ReloadConfig(ctx, connect.NewRequest(&weirv1.ReloadConfigRequest{}))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reloaded: processors for %d streams %v\n", len(resp.Msg.GetStreams()), resp.Msg.GetStreams())
	return nil
}

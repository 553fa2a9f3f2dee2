package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// deleteCmd is `weir delete`.
func deleteCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir delete", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	stream := fs.String("stream", "", "stream to delete from (required)")
	where := fs.String("where", "", "SQL predicate selecting the records to delete (required; \"true\" for all in the range)")
	fromS := fs.String("from", "", "first timestamp, inclusive (required), as for weir export")
	toS := fs.String("to", "now", "end timestamp, exclusive, as for weir export")
	dryRun := fs.Bool("dry-run", false, "only count the records that would be deleted")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir delete --stream NAME --where SQL --from TIME [--to TIME] [--dry-run]\n\nDeletes the records of a stream between two times that match a SQL predicate,\nby rewriting the lake files that hold them (right-to-erasure requests). Needs\nthe admin role; WEIR_TOKEN holds the API key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *stream == "" || *fromS == "" || strings.TrimSpace(*where) == "" {
		fs.Usage()
		return fmt.Errorf("%w: --stream, --where and --from are required", errUsage)
	}
	if err := record.ValidateStream(*stream); err != nil {
		return fmt.Errorf("%w: --stream: %v", errUsage, err)
	}
	now := time.Now()
	from, err := parseTime(*fromS, now)
	if err != nil {
		return fmt.Errorf("%w: --from: %v", errUsage, err)
	}
	to, err := parseTime(*toS, now)
	if err != nil {
		return fmt.Errorf("%w: --to: %v", errUsage, err)
	}
	if !from.Before(to) {
		return fmt.Errorf("%w: --from %s is not before --to %s", errUsage, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	client := weirv1connect.NewAdminServiceClient(newHTTPClient(), strings.TrimRight(*server, "/"))
	resp, err := client.Delete(ctx, connect.NewRequest(&weirv1.DeleteRequest{
		Stream: *stream, FromUnixNano: uint64(from.UnixNano()), ToUnixNano: uint64(to.UnixNano()), Where: *where, DryRun: *dryRun,
	}))
	if err != nil {
		return err
	}
	m := resp.Msg
	if *dryRun {
		fmt.Fprintf(stdout, "dry run: %d records in %d hours would be deleted from stream %q\n", m.GetMatched(), m.GetHours(), *stream)
		return nil
	}
	fmt.Fprintf(stdout, "deleted %d of %d matching records from stream %q: %d files rewritten, %d removed\n",
		m.GetDeleted(), m.GetMatched(), *stream, m.GetFilesRewritten(), m.GetFilesRemoved())
	if m.GetDeleted() < m.GetMatched() {
		fmt.Fprintln(stderr, "some matching records arrived during the delete and were not reached; run it again")
	}
	return nil
}

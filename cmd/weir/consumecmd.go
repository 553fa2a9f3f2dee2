package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

func consumeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	stream := fs.String("stream", "", "stream to read (required)")
	group := fs.String("group", "", "consumer group to join: its members share the stream's partitions")
	from := fs.String("from", "earliest", "where to start: earliest, latest, PARTITION:OFFSET,... or an RFC 3339 time")
	service := fs.String("service", "", "only records whose service.name equals this")
	severity := fs.String("severity", "", "minimum severity: a name such as WARN or ERROR, or a number 1..24")
	format := fs.String("format", "text", "output: text or json (one object per line)")
	batch := fs.Uint("batch", 0, "most records per batch (0: the server's bound)")
	commit := fs.Bool("commit", true, "with --group, commit each batch once it is printed")
	limit := fs.Int64("max", 0, "exit after this many records (0: run until interrupted)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir consume --stream NAME [flags]\n\nPrints a stream's records from a start position, the stored ones and then\nthe live ones, in offset order per partition, until interrupted. With\n--group, the group's members share the partitions and resume from what the\ngroup committed. Needs the query role; WEIR_TOKEN holds the API key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *stream == "" {
		fs.Usage()
		return fmt.Errorf("%w: --stream is required", errUsage)
	}
	if err := validateConsumer(*stream, *group); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: unknown --format %q", errUsage, *format)
	}
	minSev, err := parseMinSeverity(*severity)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	req := &weirv1.SubscribeRequest{Stream: *stream, Group: *group, Service: *service, MinSeverityNumber: minSev, MaxBatchRecords: uint32(min(*batch, 1<<31))}
	if err := parseStart(*from, req); err != nil {
		return fmt.Errorf("%w: --from: %v", errUsage, err)
	}
	httpc := newHTTPClient()
	base := strings.TrimRight(*server, "/")
	client := weirv1connect.NewSubscribeServiceClient(httpc, base)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := client.Subscribe(ctx, connect.NewRequest(req))
	if err != nil {
		return consumeErr(ctx, err)
	}
	defer sub.Close()
	var n int64
	for sub.Receive() {
		msg := sub.Msg()
		for _, l := range msg.GetLost() {
			fmt.Fprintf(stderr, "weir consume: partition %d: retention removed records the group had not committed, up to offset %d\n", l.GetPartition(), l.GetOffset())
		}
		recs := msg.GetRecords()
		if *limit > 0 && n+int64(len(recs)) > *limit {
			recs = recs[:*limit-n]
		}
		if err := printConsumed(stdout, *stream, *format, recs); err != nil {
			return err
		}
		n += int64(len(recs))
		if *group != "" && *commit && len(recs) > 0 {
			if err := commitConsumed(ctx, client, *stream, *group, recs); err != nil {
				return consumeErr(ctx, err)
			}
		}
		if *limit > 0 && n >= *limit {
			return nil
		}
	}
	return consumeErr(ctx, sub.Err())
}

// parseStart sets req's start from --from.
func parseStart(s string, req *weirv1.SubscribeRequest) error {
	switch s {
	case "", "earliest":
		req.Start = &weirv1.SubscribeRequest_Edge{Edge: weirv1.StartEdge_START_EDGE_EARLIEST}
		return nil
	case "latest":
		req.Start = &weirv1.SubscribeRequest_Edge{Edge: weirv1.StartEdge_START_EDGE_LATEST}
		return nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		req.Start = &weirv1.SubscribeRequest_TimeUnixNano{TimeUnixNano: t.UnixNano()}
		return nil
	}
	offs := &weirv1.PartitionOffsets{}
	for item := range strings.SplitSeq(s, ",") {
		ps, os, ok := strings.Cut(strings.TrimSpace(item), ":")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
			return fmt.Errorf("%q: want earliest, latest, PARTITION:OFFSET,... or an RFC 3339 time", s)
		}
		offs.Offsets = append(offs.Offsets, &weirv1.PartitionOffset{Partition: int32(p), Offset: o})
	}
	req.Start = &weirv1.SubscribeRequest_Offsets{Offsets: offs}
	return nil
}

// commitConsumed commits one past the last record of each partition in
// recs.
func commitConsumed(ctx context.Context, c weirv1connect.SubscribeServiceClient, stream, group string, recs []*weirv1.ConsumedRecord) error {
	next := map[int32]int64{}
	for _, r := range recs {
		next[r.GetPartition()] = max(next[r.GetPartition()], r.GetOffset()+1)
	}
	req := &weirv1.CommitRequest{Stream: stream, Group: group}
	for p, o := range next {
		req.Offsets = append(req.Offsets, &weirv1.PartitionOffset{Partition: p, Offset: o})
	}
	_, err := c.Commit(ctx, connect.NewRequest(req))
	return err
}

// consumeLine is one record in --format json.
type consumeLine struct {
	tailLine
	Redelivered bool `json:"redelivered,omitempty"`
}

// printConsumed writes one line per record.
func printConsumed(w io.Writer, stream, format string, recs []*weirv1.ConsumedRecord) error {
	for _, cr := range recs {
		r := cr.GetRecord()
		ts := time.Unix(0, int64(r.GetTimeUnixNano())).UTC().Format("2006-01-02T15:04:05.000Z07:00")
		sev := r.GetSeverityText()
		service := stringAttr(r.GetResource(), "service.name")
		var err error
		if format == "json" {
			var line []byte
			line, err = json.Marshal(consumeLine{tailLine: tailLine{
				Time: ts, Stream: stream, Partition: cr.GetPartition(), Offset: cr.GetOffset(),
				SeverityText: sev, SeverityNumber: int32(r.GetSeverityNumber()), Service: service, Body: r.GetBody(),
				Attributes: attrMap(r.GetAttributes()), Resource: attrMap(r.GetResource()),
			}, Redelivered: cr.GetRedelivered()})
			if err == nil {
				_, err = fmt.Fprintf(w, "%s\n", escapeJSONControls(line))
			}
		} else {
			_, err = fmt.Fprintf(w, "%d:%d %s %s %s %s\n", cr.GetPartition(), cr.GetOffset(), ts,
				escapeTerminal(orDash(sev)), escapeTerminal(orDash(service)), escapeTerminal(r.GetBody()))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// consumeErr is nil when the subscription ended because ctx did (the user
// interrupted it) and err otherwise.
func consumeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || connect.CodeOf(err) == connect.CodeCanceled) {
		return nil
	}
	if err == nil {
		return errors.New("consume: server ended the stream")
	}
	return fmt.Errorf("consume: %w", err)
}

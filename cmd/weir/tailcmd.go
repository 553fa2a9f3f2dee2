package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// streamList is a repeatable flag of stream names, each a comma list.
type streamList []string

func (l *streamList) String() string { return strings.Join(*l, ",") }

func (l *streamList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func tailCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	var streams streamList
	fs.Var(&streams, "stream", "stream to follow (repeatable or a comma list; default: all)")
	service := fs.String("service", "", "only records whose service.name equals this")
	severity := fs.String("severity", "", "minimum severity: a name such as WARN or ERROR, or a number 1..24")
	grep := fs.String("grep", "", "only records whose body contains this text")
	format := fs.String("format", "text", "output: text or json (one object per line)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir tail [flags]\n\nPrints records as they arrive until interrupted. A viewer that reads too\nslowly is told how many records it missed.")
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
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: unknown --format %q", errUsage, *format)
	}
	minSev, err := parseMinSeverity(*severity)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	client := weirv1connect.NewTailServiceClient(newHTTPClient(), strings.TrimRight(*server, "/"))
	stream, err := client.Tail(ctx, connect.NewRequest(&weirv1.TailRequest{
		Streams:           streams,
		Service:           *service,
		MinSeverityNumber: minSev,
		Contains:          *grep,
	}))
	if err != nil {
		return tailErr(ctx, err)
	}
	defer stream.Close()
	for stream.Receive() {
		msg := stream.Msg()
		if err := printTail(stdout, *format, msg); err != nil {
			return err
		}
	}
	return tailErr(ctx, stream.Err())
}

// tailErr is nil when the tail ended because ctx did (the user
// interrupted it) and err otherwise.
func tailErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || connect.CodeOf(err) == connect.CodeCanceled) {
		return nil
	}
	if err == nil {
		return errors.New("tail: server ended the stream")
	}
	return fmt.Errorf("tail: %w", err)
}

// parseMinSeverity reads --severity: "" (all), a number 0..24 or a name.
func parseMinSeverity(s string) (int32, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		if n < 0 || n > 24 {
			return 0, fmt.Errorf("--severity %d out of range 0..24", n)
		}
		return int32(n), nil
	}
	if n := record.ParseSeverity(s); n != 0 {
		return n, nil
	}
	return 0, fmt.Errorf("unknown --severity %q", s)
}

// tailLine is one record in --format json.
type tailLine struct {
	Time           string            `json:"time"`
	Stream         string            `json:"stream"`
	Partition      int32             `json:"partition"`
	Offset         int64             `json:"offset"`
	SeverityText   string            `json:"severity_text,omitempty"`
	SeverityNumber int32             `json:"severity_number,omitempty"`
	Service        string            `json:"service,omitempty"`
	Body           string            `json:"body"`
	Attributes     map[string]string `json:"attributes,omitempty"`
	Resource       map[string]string `json:"resource,omitempty"`
}

// printTail writes the missed notice, if any, then one line per record.
func printTail(w io.Writer, format string, msg *weirv1.TailResponse) error {
	if n := msg.GetMissed(); n > 0 {
		var err error
		if format == "json" {
			_, err = fmt.Fprintf(w, "{\"missed\":%d}\n", n)
		} else {
			_, err = fmt.Fprintf(w, "... %d records missed (viewer too slow)\n", n)
		}
		if err != nil {
			return err
		}
	}
	for _, tr := range msg.GetRecords() {
		r := tr.GetRecord()
		ts := time.Unix(0, int64(r.GetTimeUnixNano())).UTC().Format("2006-01-02T15:04:05.000Z07:00")
		sev := r.GetSeverityText()
		if sev == "" {
			sev = record.SeverityText(int32(r.GetSeverityNumber()))
		}
		service := stringAttr(r.GetResource(), "service.name")
		var err error
		if format == "json" {
			var line []byte
			line, err = json.Marshal(tailLine{
				Time: ts, Stream: tr.GetStream(), Partition: tr.GetPartition(), Offset: tr.GetOffset(),
				SeverityText: sev, SeverityNumber: int32(r.GetSeverityNumber()), Service: service, Body: r.GetBody(),
				Attributes: attrMap(r.GetAttributes()), Resource: attrMap(r.GetResource()),
			})
			if err == nil {
				_, err = fmt.Fprintf(w, "%s\n", escapeJSONControls(line))
			}
		} else {
			_, err = fmt.Fprintf(w, "%s %s %s %s %s\n", ts, escapeTerminal(tr.GetStream()), escapeTerminal(orDash(sev)),
				escapeTerminal(orDash(service)), escapeTerminal(r.GetBody()))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stringAttr(kvs []*weirv1.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func attrMap(kvs []*weirv1.KeyValue) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// escapeTerminal makes s safe to print on a terminal: C0 controls other
// than tab, DEL, C1 controls (CSI, OSC, ... as single code points),
// the characters that reorder bidirectional text and bytes that are not
// UTF-8 are written as visible escapes (\n, \r, \x1b, \u009b, \u202e,
// \xff), so that a record cannot move the cursor, recolour, retitle or
// clear the viewer's terminal, or hide text. Everything else is kept.
func escapeTerminal(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\n':
			b.WriteString("\\n")
		case r == '\r':
			b.WriteString("\\r")
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, "\\x%02x", r)
		case unsafeRune(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeRune reports whether escapeTerminal escapes r.
func unsafeRune(r rune) bool {
	switch {
	case r == '\t':
		return false
	case r < 0x20, r >= 0x7f && r <= 0x9f, r == utf8.RuneError:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true // bidirectional marks, embeddings, overrides and isolates
	}
	return false
}

// escapeJSONControls rewrites what escapeTerminal escapes and JSON
// allows raw in strings (DEL, the C1 controls, the bidirectional marks)
// as \u escapes in a marshalled JSON document; encoding/json already
// escapes the C0 controls and replaces bytes that are not UTF-8.
func escapeJSONControls(doc []byte) []byte {
	raw := func(r rune) bool { return r >= 0x7f && r != utf8.RuneError && unsafeRune(r) }
	if !bytes.ContainsFunc(doc, raw) {
		return doc
	}
	out := make([]byte, 0, len(doc)+16)
	for i := 0; i < len(doc); {
		r, n := utf8.DecodeRune(doc[i:])
		if raw(r) {
			out = fmt.Appendf(out, "\\u%04x", r)
		} else {
			out = append(out, doc[i:i+n]...)
		}
		i += n
	}
	return out
}

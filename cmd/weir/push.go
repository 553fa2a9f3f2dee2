package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/transform/parse"
)

// maxLineBytes bounds one input line; longer lines are split.
const maxLineBytes = 1 << 20

func pushCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	stream := fs.String("stream", "", "target stream (required)")
	service := fs.String("service", "", "service.name resource attribute (default: the stream name)")
	batch := fs.Int("batch", 1000, "lines per batch")
	window := fs.Int("window", 8, "batches in flight before waiting for acknowledgements")
	ack := fs.String("ack", "", "acknowledgement level: accepted, durable or committed (default: the server's, durable)")
	guess := fs.Bool("guess-severity", false, "set each record's severity from a level word (INFO, WARNING, ...) among the line's first eight words, normalised as the server does (WARNING is WARN); a stream's severity processor on the server (docs/transforms.md) is the better tool")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir push --stream NAME [flags] [FILE ...]\n\nSends each line of the files as a log record over a PushStream. With no FILE,\nor where FILE is -, reads stdin. On a terminal, shows progress on stderr.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *stream == "" {
		fs.Usage()
		return fmt.Errorf("%w: --stream is required", errUsage)
	}
	if err := record.ValidateStream(*stream); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *batch < 1 || *window < 1 {
		return fmt.Errorf("%w: --batch and --window must be positive", errUsage)
	}
	if *service == "" {
		*service = *stream
	}
	level, ok := map[string]weirv1.AckLevel{
		"":          weirv1.AckLevel_ACK_LEVEL_UNSPECIFIED,
		"accepted":  weirv1.AckLevel_ACK_LEVEL_ACCEPTED,
		"durable":   weirv1.AckLevel_ACK_LEVEL_DURABLE,
		"committed": weirv1.AckLevel_ACK_LEVEL_COMMITTED,
	}[*ack]
	if !ok {
		return fmt.Errorf("%w: unknown --ack %q", errUsage, *ack)
	}
	p := &pusher{
		client:  weirv1connect.NewIngestServiceClient(newHTTPClient(), strings.TrimRight(*server, "/")),
		stream:  *stream,
		service: *service,
		batch:   *batch,
		window:  *window,
		level:   level,
		guess:   *guess,
	}
	names := fs.Args()
	if len(names) == 0 {
		names = []string{"-"}
	}
	var (
		inputs []io.Reader
		total  int64 // bytes of the input, for the ETA; -1 when unknown
	)
	for _, name := range names {
		var in io.Reader = stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		inputs = append(inputs, in)
		if size := inputSize(in); size >= 0 && total >= 0 {
			total += size
		} else {
			total = -1
		}
	}
	if isTerminal(stderr) {
		p.progress = newProgress(stderr, total, time.Now)
	}
	start := time.Now()
	n, err := p.run(ctx, io.MultiReader(inputs...))
	p.progress.clear()
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "pushed %d records to stream %q in %s (%.0f records/s)\n", n, *stream, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return nil
}

// newHTTPClient returns a client that speaks HTTP/1.1 and cleartext
// HTTP/2, so that bidirectional streams work against a plain-text server.
// newHTTPClient returns the client of weir's commands: HTTP/2 to the
// server, without TLS (h2c) for http:// URLs and with it for https://
// ones (trusting the system's roots; SSL_CERT_FILE names others), and the
// API key in WEIR_TOKEN, if set, as a bearer token on every request.
func newHTTPClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP2(true)
	var rt http.RoundTripper = &http.Transport{Protocols: &protocols}
	if token := os.Getenv("WEIR_TOKEN"); token != "" {
		rt = bearer{token: token, next: rt}
	}
	return &http.Client{Transport: rt}
}

// bearer adds an API key to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// inputSize is the size of a regular file, or -1 for any other input
// (a pipe, a terminal).
func inputSize(r io.Reader) int64 {
	f, ok := r.(*os.File)
	if !ok {
		return -1
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return -1
	}
	return fi.Size()
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

type pusher struct {
	client   weirv1connect.IngestServiceClient
	stream   string
	service  string
	batch    int
	window   int
	level    weirv1.AckLevel
	guess    bool      // guess severities from the lines' first words
	progress *progress // nil: no progress shown
}

// run sends the lines of r in batches over one PushStream and waits for
// every acknowledgement. It fails on the first batch the server rejects.
func (p *pusher) run(ctx context.Context, r io.Reader) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := p.client.PushStream(ctx)
	credits := make(chan struct{}, p.window)
	var (
		wg       sync.WaitGroup
		acked    int64
		ackErr   error
		sentMu   sync.Mutex
		sentIDs  []uint64
		sentRecs = map[uint64]int{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ack, err := st.Receive()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					ackErr = err
				}
				cancel()
				return
			}
			sentMu.Lock()
			want := len(sentIDs) > 0 && sentIDs[0] == ack.GetBatchId()
			n := sentRecs[ack.GetBatchId()]
			if want {
				sentIDs = sentIDs[1:]
				delete(sentRecs, ack.GetBatchId())
			}
			sentMu.Unlock()
			if !want {
				ackErr = fmt.Errorf("acknowledgement for unexpected batch %d", ack.GetBatchId())
				cancel()
				return
			}
			if code := ack.GetCode(); code != weirv1.ErrorCode_ERROR_CODE_UNSPECIFIED || ack.GetErrorCode() != "" {
				name := ack.GetErrorCode() // from a server that sets only that
				if code != weirv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
					name = connect.Code(code).String()
				}
				ackErr = fmt.Errorf("batch %d rejected: %s: %s", ack.GetBatchId(), name, ack.GetErrorMessage())
				cancel()
				return
			}
			if int(ack.GetAccepted()) != n {
				ackErr = fmt.Errorf("batch %d: %d of %d records accepted", ack.GetBatchId(), ack.GetAccepted(), n)
				cancel()
				return
			}
			acked += int64(n)
			<-credits
		}
	}()

	var sendErr error
	send := func(id uint64, recs []*weirv1.LogRecord) bool {
		select {
		case credits <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		sentMu.Lock()
		sentIDs = append(sentIDs, id)
		sentRecs[id] = len(recs)
		sentMu.Unlock()
		if err := st.Send(&weirv1.PushStreamRequest{BatchId: id, Stream: p.stream, Records: recs, AckLevel: p.level}); err != nil {
			if !errors.Is(err, io.EOF) {
				sendErr = err
			}
			return false
		}
		return true
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	resource := []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: p.service}}}}
	var (
		id   uint64
		recs []*weirv1.LogRecord
	)
	ok := true
	for ok && sc.Scan() {
		p.progress.add(len(sc.Bytes()) + 1)
		line := strings.TrimRight(sc.Text(), "\r")
		line = strings.ToValidUTF8(line, "\uFFFD")
		rec := &weirv1.LogRecord{
			ObservedTimeUnixNano: uint64(time.Now().UnixNano()),
			Body:                 line,
			Resource:             resource,
		}
		if p.guess {
			rec.SeverityText = guessSeverity(line)
		}
		recs = append(recs, rec)
		if len(recs) == p.batch {
			id++
			ok = send(id, recs)
			recs = nil
		}
	}
	if ok && len(recs) > 0 {
		id++
		send(id, recs)
	}
	scanErr := sc.Err()
	closeErr := st.CloseRequest()
	wg.Wait()
	st.CloseResponse()
	switch {
	case ackErr != nil:
		return acked, ackErr
	case sendErr != nil:
		return acked, sendErr
	case scanErr != nil:
		return acked, fmt.Errorf("read input: %w", scanErr)
	case closeErr != nil:
		return acked, closeErr
	case ctx.Err() != nil && len(sentIDs) > 0:
		return acked, fmt.Errorf("%d batches not acknowledged: %w", len(sentIDs), context.Cause(ctx))
	}
	return acked, nil
}

// guessSeverity finds a severity word among the first fields of a log
// line, such as "INFO" in "081109 203615 148 INFO dfs.DataNode: ...", and
// returns its OpenTelemetry name as the server's severity processor
// normalises it (parse.Severity): "WARN" for "warning", "FATAL" for
// "CRITICAL". It is deliberately simple, and wrong on lines whose first
// words include a level word used otherwise ("Setting BTCoex Config" is
// INFO): full parsing belongs to the server's transforms. Only words of
// four letters or more count, so that short tokens in timestamps and ids
// do not.
func guessSeverity(line string) string {
	fields := 0
	for len(line) > 0 && fields < 8 {
		i := strings.IndexAny(line, " \t")
		var tok string
		if i < 0 {
			tok, line = line, ""
		} else {
			tok, line = line[:i], line[i+1:]
		}
		if tok == "" {
			continue
		}
		fields++
		tok = strings.Trim(tok, "[]():,<>")
		if len(tok) < 4 {
			continue
		}
		if n, name := parse.Severity(tok); n != 0 {
			return name
		}
	}
	return ""
}

// progressEvery bounds how often the progress line is redrawn.
const progressEvery = 250 * time.Millisecond

// progress draws one line on a terminal, redrawn in place at most every
// progressEvery: the records and bytes read so far, the rate, and with a
// known input size the share done and the time left. Its methods do
// nothing on a nil *progress, which is what a push whose stderr is not a
// terminal has. Not safe for concurrent use.
type progress struct {
	w       io.Writer
	now     func() time.Time
	total   int64 // bytes of the input; -1 when unknown
	start   time.Time
	last    time.Time // of the last redraw
	records int64
	bytes   int64
	drawn   bool
}

func newProgress(w io.Writer, total int64, now func() time.Time) *progress {
	t := now()
	return &progress{w: w, now: now, total: total, start: t, last: t}
}

// add counts one record of n input bytes and redraws the line when it is
// due.
func (p *progress) add(n int) {
	if p == nil {
		return
	}
	p.records++
	p.bytes += int64(n)
	if t := p.now(); t.Sub(p.last) >= progressEvery {
		p.last = t
		p.draw(t)
	}
}

func (p *progress) draw(t time.Time) {
	el := t.Sub(p.start).Seconds()
	line := fmt.Sprintf("%d records, %s", p.records, formatBytes(p.bytes))
	if p.total > 0 {
		line += fmt.Sprintf(" of %s (%.0f%%)", formatBytes(p.total), 100*float64(min(p.bytes, p.total))/float64(p.total))
	}
	if el > 0 {
		line += fmt.Sprintf(", %.0f records/s", float64(p.records)/el)
		if p.total > 0 && p.bytes > 0 {
			left := time.Duration(float64(max(p.total-p.bytes, 0)) / (float64(p.bytes) / el) * float64(time.Second))
			line += ", ETA " + left.Round(time.Second).String()
		}
	}
	// Carriage return, the line, and erase what a longer line left.
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.drawn = true
}

// clear erases the line, if one was drawn, before the summary is printed.
func (p *progress) clear() {
	if p == nil || !p.drawn {
		return
	}
	fmt.Fprint(p.w, "\r\x1b[K")
	p.drawn = false
}

// formatBytes renders n in the largest binary unit that keeps it at 1 or
// more: "512 B", "1.5 KiB", "12.0 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// exportCmd is `weir export`.
func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	stream := fs.String("stream", "", "stream to export (required)")
	fromS := fs.String("from", "", "first timestamp, inclusive (required): RFC 3339, YYYY-MM-DD, YYYY-MM-DDTHH, or relative to now such as -7d or -36h")
	toS := fs.String("to", "now", "end timestamp, exclusive, in the forms of --from")
	where := fs.String("where", "", "SQL predicate over the stream's columns, such as \"severity_number >= 17\"")
	format := fs.String("format", "parquet", "file format: parquet, csv or jsonl")
	dest := fs.String("dest", "", "destination directory (required); files go to DEST/date=YYYY-MM-DD/hour=HH/")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir export --stream NAME --from TIME [--to TIME] [--where SQL] [--format F] --dest DIR\n\nWrites a stream's records between two times, optionally filtered by a SQL\npredicate, into DIR in a Hive-partitioned layout (date=/hour=), one file per\nhour. On a terminal, shows progress on stderr. WEIR_TOKEN holds the API key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *stream == "" || *fromS == "" || *dest == "" {
		fs.Usage()
		return fmt.Errorf("%w: --stream, --from and --dest are required", errUsage)
	}
	if err := record.ValidateStream(*stream); err != nil {
		return fmt.Errorf("%w: --stream: %v", errUsage, err)
	}
	if strings.Contains(*dest, "://") {
		scheme, _, _ := strings.Cut(*dest, "://")
		return fmt.Errorf("%w: --dest %s:// destinations are not supported yet; export to a directory and upload it", errUsage, scheme)
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
	formats := map[string]weirv1.ExportFormat{
		"parquet": weirv1.ExportFormat_EXPORT_FORMAT_PARQUET,
		"csv":     weirv1.ExportFormat_EXPORT_FORMAT_CSV,
		"jsonl":   weirv1.ExportFormat_EXPORT_FORMAT_JSONL,
	}
	f, ok := formats[*format]
	if !ok {
		return fmt.Errorf("%w: unknown --format %q (parquet, csv or jsonl)", errUsage, *format)
	}
	if err := os.MkdirAll(*dest, 0o755); err != nil {
		return err
	}
	client := weirv1connect.NewQueryServiceClient(newHTTPClient(), strings.TrimRight(*server, "/"))
	res, err := client.Export(ctx, connect.NewRequest(&weirv1.ExportRequest{
		Stream: *stream, FromUnixNano: uint64(from.UnixNano()), ToUnixNano: uint64(to.UnixNano()), Where: *where, Format: f,
	}))
	if err != nil {
		return err
	}
	defer res.Close()
	var prog *exportProgress
	if isTerminal(stderr) {
		prog = &exportProgress{w: stderr, start: time.Now()}
	}
	start := time.Now()
	st, err := receiveExport(res, *dest, prog)
	prog.clear()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported %d records of stream %q into %d files (%s) under %s in %s\n",
		st.rows, *stream, st.files, formatBytes(st.bytes), *dest, time.Since(start).Round(time.Millisecond))
	return nil
}

type exportStats struct {
	files, rows uint64
	bytes       int64
}

// receiveExport writes the files of an export stream under dest. A file
// is written under a hidden temporary name and renamed once complete;
// an existing file is never overwritten.
func receiveExport(res *connect.ServerStreamForClient[weirv1.ExportResponse], dest string, prog *exportProgress) (exportStats, error) {
	var st exportStats
	var out *os.File
	var tmp, final string
	defer func() {
		if out != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	for res.Receive() {
		m := res.Msg()
		if m.GetTotalFiles() > 0 || m.GetTotalRows() > 0 {
			prog.plan(m.GetTotalFiles(), m.GetTotalRows())
		}
		if p := m.GetPath(); p != "" {
			if out != nil {
				return st, fmt.Errorf("server started %s before finishing %s", p, final)
			}
			rel := filepath.FromSlash(p)
			if !filepath.IsLocal(rel) || strings.HasPrefix(filepath.Base(rel), ".") {
				return st, fmt.Errorf("server sent an unsafe file path %q", p)
			}
			final = filepath.Join(dest, rel)
			if _, err := os.Lstat(final); err == nil {
				return st, fmt.Errorf("%s exists; export into an empty directory", final)
			}
			if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
				return st, err
			}
			tmp = filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".tmp")
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return st, err
			}
			out = f
		}
		if d := m.GetData(); len(d) > 0 {
			if out == nil {
				return st, errors.New("server sent data before naming its file")
			}
			if _, err := out.Write(d); err != nil {
				return st, err
			}
			st.bytes += int64(len(d))
			prog.received(len(d))
		}
		if m.GetFileEnd() {
			if out == nil {
				return st, errors.New("server ended a file it never named")
			}
			err := out.Close()
			out = nil
			if err == nil {
				err = os.Rename(tmp, final)
			}
			if err != nil {
				os.Remove(tmp)
				return st, err
			}
			st.files++
			st.rows += m.GetRows()
			prog.fileDone(m.GetRows())
		}
	}
	if err := res.Err(); err != nil {
		return st, err
	}
	if out != nil {
		return st, fmt.Errorf("the export ended in the middle of %s", final)
	}
	return st, nil
}

// parseTime reads an export bound: RFC 3339, a date, a date and hour
// (2006-01-02T15), "now", or an offset from now such as -7d or -36h.
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		d, err := parsePeriod(rest)
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02T15", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-01-02T03:04:05Z), YYYY-MM-DD, YYYY-MM-DDTHH, now, or -7d / -36h", s)
}

// exportProgress draws one line on a terminal: files and records done
// of the plan, bytes written, and the time left. Its methods do nothing
// on a nil *exportProgress.
type exportProgress struct {
	w                 io.Writer
	start, last       time.Time
	totalFiles, files uint32
	totalRows, rows   uint64
	bytes             int64
	drawn             bool
}

func (p *exportProgress) plan(files uint32, rows uint64) {
	if p == nil {
		return
	}
	p.totalFiles, p.totalRows = files, rows
	p.draw(time.Now())
}

// received counts n bytes written and redraws the line when it is due.
func (p *exportProgress) received(n int) {
	if p == nil {
		return
	}
	p.bytes += int64(n)
	p.maybeDraw()
}

// fileDone counts a finished file of rows records.
func (p *exportProgress) fileDone(rows uint64) {
	if p == nil {
		return
	}
	p.files++
	p.rows += rows
	p.maybeDraw()
}

func (p *exportProgress) maybeDraw() {
	if t := time.Now(); t.Sub(p.last) >= progressEvery {
		p.draw(t)
	}
}

func (p *exportProgress) draw(t time.Time) {
	p.last = t
	line := fmt.Sprintf("%d/%d files, %d of %d records", p.files, p.totalFiles, p.rows, p.totalRows)
	if p.totalRows > 0 {
		line += fmt.Sprintf(" (%.0f%%)", 100*float64(min(p.rows, p.totalRows))/float64(p.totalRows))
	}
	line += ", " + formatBytes(p.bytes)
	if el := t.Sub(p.start); p.rows > 0 && p.totalRows > p.rows {
		left := time.Duration(float64(el) * float64(p.totalRows-p.rows) / float64(p.rows))
		line += ", ETA " + left.Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.drawn = true
}

func (p *exportProgress) clear() {
	if p == nil || !p.drawn {
		return
	}
	fmt.Fprint(p.w, "\r\x1b[K")
	p.drawn = false
}

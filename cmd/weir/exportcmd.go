package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/objstore"
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
	dest := fs.String("dest", "", "destination (required): a directory, or s3://bucket/prefix; files go to DEST/date=YYYY-MM-DD/hour=HH/")
	s3Endpoint := fs.String("s3-endpoint", "", "with an s3:// --dest: the server's URL for S3-compatible servers (MinIO: http://host:9000); empty means AWS S3")
	s3Region := fs.String("s3-region", "", "with an s3:// --dest: the region; empty means AWS_REGION or the shared config's")
	s3PathStyle := fs.Bool("s3-path-style", false, "with an s3:// --dest: address the bucket as ENDPOINT/BUCKET (most S3-compatible servers need it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir export --stream NAME --from TIME [--to TIME] [--where SQL] [--format F] --dest DIR|s3://BUCKET/PREFIX\n\nWrites a stream's records between two times, optionally filtered by a SQL\npredicate, into DIR (or under PREFIX in an S3 bucket) in a Hive-partitioned\nlayout (date=/hour=), one file per hour. On a terminal, shows progress on\nstderr. WEIR_TOKEN holds the API key; the AWS environment variables and\nshared files the bucket's credentials.")
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
	var out exportDest
	if strings.Contains(*dest, "://") {
		bucket, prefix, err := parseS3Dest(*dest)
		if err != nil {
			return fmt.Errorf("%w: --dest: %v", errUsage, err)
		}
		if *s3Endpoint != "" {
			if u, err := url.Parse(*s3Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%w: --s3-endpoint %q: want http(s)://host[:port]", errUsage, *s3Endpoint)
			}
		}
		st, err := objstore.NewS3(ctx, objstore.S3Config{Bucket: bucket, Endpoint: *s3Endpoint, Region: *s3Region, PathStyle: *s3PathStyle})
		if err != nil {
			return fmt.Errorf("--dest %s: %w", *dest, err)
		}
		if err := st.Check(ctx); err != nil {
			return fmt.Errorf("--dest %s: %w", *dest, err)
		}
		tmp, err := os.MkdirTemp("", "weir-export-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		out = &s3Dest{ctx: ctx, st: st, prefix: prefix, tmp: tmp, uri: *dest}
	} else {
		out = dirDest(*dest)
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
	if d, ok := out.(dirDest); ok {
		if err := os.MkdirAll(string(d), 0o755); err != nil {
			return err
		}
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
	st, err := receiveExport(res, out, prog)
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

// exportDest is where weir export puts its files.
type exportDest interface {
	// begin checks that rel (a local, slash-separated path) may be
	// written, and returns the local file to write it to.
	begin(rel string) (tmp string, err error)
	// commit puts the complete file tmp at rel, and removes tmp.
	commit(tmp, rel string) error
	// name returns where rel goes, for messages.
	name(rel string) string
}

// dirDest is a local directory: a file is written under a hidden
// temporary name beside its final one and renamed once complete; an
// existing file is never overwritten.
type dirDest string

func (d dirDest) name(rel string) string { return filepath.Join(string(d), filepath.FromSlash(rel)) }

func (d dirDest) begin(rel string) (string, error) {
	final := d.name(rel)
	if _, err := os.Lstat(final); err == nil {
		return "", fmt.Errorf("%s exists; export into an empty directory", final)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".tmp"), nil
}

func (d dirDest) commit(tmp, rel string) error { return os.Rename(tmp, d.name(rel)) }

// s3Dest is a prefix in a bucket: a file is written to a local
// temporary directory, uploaded once complete (verified by checksum, see
// objstore.Store.Put), and removed, so the local disk holds one file at
// a time; an existing object is never overwritten.
type s3Dest struct {
	ctx    context.Context
	st     objstore.Store
	prefix string // no leading or trailing slash
	tmp    string
	uri    string
}

func (d *s3Dest) key(rel string) string {
	if d.prefix == "" {
		return rel
	}
	return d.prefix + "/" + rel
}

func (d *s3Dest) name(rel string) string { return d.st.URI(d.key(rel)) }

func (d *s3Dest) begin(rel string) (string, error) {
	switch _, err := d.st.Head(d.ctx, d.key(rel)); {
	case err == nil:
		return "", fmt.Errorf("%s exists; export under an empty prefix", d.name(rel))
	case !errors.Is(err, objstore.ErrNotFound):
		return "", err
	}
	return filepath.Join(d.tmp, "part.tmp"), nil
}

func (d *s3Dest) commit(tmp, rel string) error {
	_, err := d.st.Put(d.ctx, d.key(rel), tmp, nil)
	if rerr := os.Remove(tmp); err == nil {
		err = rerr
	}
	return err
}

// parseS3Dest parses s3://bucket[/prefix].
func parseS3Dest(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		scheme, _, _ := strings.Cut(s, "://")
		if scheme != "s3" {
			return "", "", fmt.Errorf("%s:// destinations are not supported (a directory or s3://bucket/prefix)", scheme)
		}
		return "", "", fmt.Errorf("%q: want s3://bucket or s3://bucket/prefix", s)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// receiveExport writes the files of an export stream to dest.
func receiveExport(res *connect.ServerStreamForClient[weirv1.ExportResponse], dest exportDest, prog *exportProgress) (exportStats, error) {
	var st exportStats
	var out *os.File
	var tmp, rel string
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
				return st, fmt.Errorf("server started %s before finishing %s", p, dest.name(rel))
			}
			local := filepath.FromSlash(p)
			if !filepath.IsLocal(local) || strings.HasPrefix(filepath.Base(local), ".") || strings.Contains(p, "\\") {
				return st, fmt.Errorf("server sent an unsafe file path %q", p)
			}
			rel = filepath.ToSlash(local)
			var err error
			if tmp, err = dest.begin(rel); err != nil {
				return st, err
			}
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
				err = dest.commit(tmp, rel)
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
		return st, fmt.Errorf("the export ended in the middle of %s", dest.name(rel))
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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/weirlabs/weir/query"
)

func queryCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weir query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "weir server URL")
	format := fs.String("format", "table", "output: table, json, csv or arrow (an Arrow IPC stream)")
	maxRows := fs.Uint64("max-rows", 0, "row limit (0: the server's default)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weir query [flags] SQL\n\nRuns one read-only statement over the logs view and the per-stream views.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("%w: no SQL given", errUsage)
	}
	sql := strings.Join(fs.Args(), " ")
	accept := map[string]string{"table": query.MediaJSON, "json": query.MediaJSON, "csv": query.MediaCSV, "arrow": query.MediaArrow}[*format]
	if accept == "" {
		return fmt.Errorf("%w: unknown --format %q", errUsage, *format)
	}
	body, _ := json.Marshal(query.SQLRequest{SQL: sql, MaxRows: *maxRows})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*server, "/")+"/v1/sql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", query.MediaJSON)
	req.Header.Set("Accept", accept)
	resp, err := newHTTPClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Error string }
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", e.Code, e.Error)
		}
		return fmt.Errorf("server answered %s: %s", resp.Status, raw)
	}
	if *format != "table" {
		if _, err := io.Copy(stdout, resp.Body); err != nil {
			return err
		}
		if e := resp.Trailer.Get("Weir-Error"); e != "" {
			return fmt.Errorf("query failed mid-stream: %s", e)
		}
		return nil
	}
	var res struct {
		Columns   []query.Column
		Rows      []map[string]json.RawMessage
		Truncated bool
		Error     string
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		return fmt.Errorf("decode result: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for i, c := range res.Columns {
		if i > 0 {
			io.WriteString(tw, "\t")
		}
		io.WriteString(tw, c.Name)
	}
	io.WriteString(tw, "\n")
	for _, row := range res.Rows {
		for i, c := range res.Columns {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			io.WriteString(tw, cell(row[c.Name]))
		}
		io.WriteString(tw, "\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "(%d rows)\n", len(res.Rows))
	if res.Truncated {
		fmt.Fprintln(stderr, "(truncated by the row limit: raise --max-rows)")
	}
	if res.Error != "" {
		return fmt.Errorf("query failed mid-stream: %s", res.Error)
	}
	return nil
}

// cell renders a JSON value for the table: strings unquoted and on one
// line, null empty, the rest as JSON.
func cell(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.NewReplacer("\n", `\n`, "\t", `\t`).Replace(s)
	}
	if string(raw) == "null" {
		return ""
	}
	return string(raw)
}

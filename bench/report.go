package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Report is the outcome of one run. Its JSON field names are stable.
type Report struct {
	Server      string  `json:"server"`
	Protocol    string  `json:"protocol"`
	Mode        string  `json:"mode"`
	Format      string  `json:"format"`
	Concurrency int     `json:"concurrency"`
	BatchSize   int     `json:"batch_size"`
	TargetRate  float64 `json:"target_rate"`
	AckLevel    string  `json:"ack_level"`
	Source      string  `json:"source"`
	Stream      string  `json:"stream"`

	// ElapsedSeconds runs from the first send until the last worker has
	// its last ack (or gave up waiting for it).
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Records, Batches and BodyBytes count acknowledged records, batches
	// and the bytes of those records' bodies.
	Records          int64   `json:"records"`
	Batches          int64   `json:"batches"`
	BodyBytes        int64   `json:"body_bytes"`
	RecordsPerSecond float64 `json:"records_per_second"`
	MBPerSecond      float64 `json:"mb_per_second"`
	// AckLatency is per batch, from send to ack.
	AckLatency Latency `json:"ack_latency"`
	// Errors counts failed batches (and broken streams) by Connect code
	// name; "unacknowledged" counts batches whose ack never came.
	Errors map[string]int64 `json:"errors"`
	// Freshness is nil when it could not be measured.
	Freshness *Freshness `json:"freshness"`
	// ServerCPUSeconds and ServerPeakRSSBytes come from the server's
	// /metrics; nil when it has none.
	ServerCPUSeconds   *float64 `json:"server_cpu_seconds"`
	ServerPeakRSSBytes *float64 `json:"server_peak_rss_bytes"`
	// DiskBytesPerRecord is the size on disk per record of the server's
	// published Parquet files at the end of the run (the whole lake,
	// including earlier data; records not yet published are not in it);
	// nil when the server does not export it or has published nothing.
	DiskBytesPerRecord *float64 `json:"disk_bytes_per_record"`
}

// ErrorCount returns the number of errors of all codes.
func (r Report) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// WriteTable writes the report as a table for people.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rate := "max"
	if r.TargetRate > 0 {
		rate = fmt.Sprintf("%.0f records/s", r.TargetRate)
	}
	fmt.Fprintf(tw, "target\t%s (%s %s, %s, %d workers x %d records, ack %s, rate %s, source %s)\n",
		r.Server, r.Protocol, r.Mode, r.Format, r.Concurrency, r.BatchSize, r.AckLevel, rate, r.Source)
	fmt.Fprintf(tw, "acknowledged\t%d records, %d batches in %.1f s\n", r.Records, r.Batches, r.ElapsedSeconds)
	fmt.Fprintf(tw, "throughput\t%.0f records/s, %.1f MB/s of bodies\n", r.RecordsPerSecond, r.MBPerSecond)
	fmt.Fprintf(tw, "ack latency\tp50 %s, p99 %s, p99.9 %s, max %s\n", ms(r.AckLatency.P50Ms), ms(r.AckLatency.P99Ms), ms(r.AckLatency.P999Ms), ms(r.AckLatency.MaxMs))
	switch f := r.Freshness; {
	case f == nil:
		fmt.Fprintf(tw, "freshness\tunknown (not measured, or no query endpoint)\n")
	case f.Seen == 0:
		fmt.Fprintf(tw, "freshness\tno marker seen (%d acked)\n", f.Markers)
	default:
		fmt.Fprintf(tw, "freshness\tp50 %s, p99 %s (%d of %d markers seen)\n", ms(f.P50Ms), ms(f.P99Ms), f.Seen, f.Markers)
	}
	cpu, rss := "unknown", "unknown"
	if r.ServerCPUSeconds != nil {
		cpu = fmt.Sprintf("%.1f s (%.2f cores)", *r.ServerCPUSeconds, *r.ServerCPUSeconds/r.ElapsedSeconds)
	}
	if r.ServerPeakRSSBytes != nil {
		rss = fmt.Sprintf("%.0f MB", *r.ServerPeakRSSBytes/1e6)
	}
	fmt.Fprintf(tw, "server CPU\t%s\n", cpu)
	fmt.Fprintf(tw, "server peak RSS\t%s\n", rss)
	disk := "unknown (nothing published yet)"
	if r.DiskBytesPerRecord != nil {
		disk = fmt.Sprintf("%.1f B per record (the published lake)", *r.DiskBytesPerRecord)
	}
	fmt.Fprintf(tw, "on disk\t%s\n", disk)
	errs := "none"
	if len(r.Errors) > 0 {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(r.Errors)) {
			parts = append(parts, fmt.Sprintf("%s %d", code, r.Errors[code]))
		}
		errs = strings.Join(parts, ", ")
	}
	fmt.Fprintf(tw, "errors\t%s\n", errs)
	return tw.Flush()
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirlabs/weir/internal/objstore"
	"github.com/weirlabs/weir/sink"
)

// s3Config is sink.s3: how to reach the bucket of sink.lake.
type s3Config struct {
	// Endpoint is the server's URL, for S3-compatible servers (MinIO:
	// http://host:9000); empty means AWS S3.
	Endpoint string `yaml:"endpoint"`
	// Region; empty means AWS_REGION or the shared config's, else
	// us-east-1.
	Region string `yaml:"region"`
	// PathStyle addresses <endpoint>/<bucket>/<key>: most S3-compatible
	// servers need it.
	PathStyle bool `yaml:"path_style"`
	// AccessKeyID and SecretAccessKey; when empty, the standard AWS
	// chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the shared
	// credentials file, an instance role) supplies them.
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// Uploads is how many files are uploaded at once.
	Uploads int `yaml:"uploads"`
	// PartBytes is the part size of multipart uploads, used for larger
	// files.
	PartBytes int64 `yaml:"part_bytes"`
	// CacheBytes bounds the local copies of uploaded files (the local
	// cache, docs/lake.md); 0 keeps every file local.
	CacheBytes int64 `yaml:"cache_bytes"`
}

// parseLake parses sink.lake: "" (the lake on local disk only) or
// s3://bucket[/prefix].
func parseLake(s string) (bucket, prefix string, err error) {
	if s == "" {
		return "", "", nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("sink.lake %q: want s3://bucket or s3://bucket/prefix", s)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// validateLake checks sink.lake and sink.s3.
func (c *config) validateLake() error {
	bucket, _, err := parseLake(c.Sink.Lake)
	if err != nil {
		return err
	}
	s := c.Sink.S3
	switch {
	case bucket == "" && s != (s3Config{}):
		return fmt.Errorf("sink.s3 is set but sink.lake is not an s3:// URL")
	case (s.AccessKeyID == "") != (s.SecretAccessKey == ""):
		return fmt.Errorf("sink.s3: set both access_key_id and secret_access_key, or neither (the AWS environment variables and shared files are used then)")
	case s.Uploads < 0 || s.Uploads > 64:
		return fmt.Errorf("sink.s3.uploads must be in [0, 64], got %d", s.Uploads)
	case s.PartBytes != 0 && s.PartBytes < 5<<20:
		return fmt.Errorf("sink.s3.part_bytes must be at least 5 MiB (S3's smallest part), got %d", s.PartBytes)
	case s.CacheBytes < 0:
		return fmt.Errorf("sink.s3.cache_bytes must not be negative (0 keeps every file local), got %d", s.CacheBytes)
	}
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("sink.s3.endpoint %q: want http(s)://host[:port]", s.Endpoint)
		}
	}
	return nil
}

// lakeRemote returns the sink's object storage for sink.lake, or nil
// when the lake is on local disk only. It checks the bucket: a refusal
// (wrong credentials, no such bucket) or an unreachable server is
// logged, not fatal, since ingest goes on locally and uploads resume by
// themselves once the bucket answers (/readyz and the metrics say so
// meanwhile).
func lakeRemote(ctx context.Context, c *config, log *slog.Logger) (*sink.Remote, error) {
	bucket, prefix, err := parseLake(c.Sink.Lake)
	if err != nil || bucket == "" {
		return nil, err
	}
	s := c.Sink.S3
	st, err := objstore.NewS3(ctx, objstore.S3Config{
		Bucket: bucket, Endpoint: s.Endpoint, Region: s.Region, PathStyle: s.PathStyle,
		AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey, PartBytes: s.PartBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("sink.lake %s: %w", c.Sink.Lake, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch err := st.Check(cctx); {
	case err == nil:
		log.Info("sink: the lake is kept in object storage", "lake", c.Sink.Lake, "endpoint", s.Endpoint)
	case objstore.IsPermanent(err):
		log.Error("sink: object storage refuses the lake's bucket; files are kept locally until this is fixed and weir restarted, or the bucket appears",
			"lake", c.Sink.Lake, "err", err)
	default:
		log.Warn("sink: object storage unreachable at start; files wait locally and are uploaded once it answers",
			"lake", c.Sink.Lake, "err", err)
	}
	return &sink.Remote{Store: st, Prefix: prefix, Uploads: s.Uploads, CacheBytes: s.CacheBytes}, nil
}

// lakeRemoteDetail is the /readyz detail: non-empty while uploads fail.
func lakeRemoteDetail(lake *sink.Lake) func() string {
	return func() string {
		s, ok := lake.RemoteStats()
		if !ok || !s.Failing {
			return ""
		}
		return fmt.Sprintf("uploads to object storage failing (%d files, %d bytes waiting locally): %s",
			s.PendingFiles, s.PendingBytes, s.LastError)
	}
}

// lakeRemoteCollector exports the uploads' state.
type lakeRemoteCollector struct{ lake *sink.Lake }

var (
	descUploadPendingFiles = prometheus.NewDesc("weir_lake_upload_pending_files", "Published lake files waiting for their upload to object storage.", nil, nil)
	descUploadPendingBytes = prometheus.NewDesc("weir_lake_upload_pending_bytes", "Bytes of the lake files waiting for their upload.", nil, nil)
	descUploadedFiles      = prometheus.NewDesc("weir_lake_uploaded_files_total", "Lake files uploaded to object storage and recorded.", nil, nil)
	descUploadedBytes      = prometheus.NewDesc("weir_lake_uploaded_bytes_total", "Bytes of the lake files uploaded.", nil, nil)
	descUploadFailures     = prometheus.NewDesc("weir_lake_upload_failures_total", "Failed upload attempts (retried with backoff).", nil, nil)
	descRemoteDeletes      = prometheus.NewDesc("weir_lake_remote_deletes_total", "Objects deleted from the bucket (removed or replaced files).", nil, nil)
	descRemoteDelFailures  = prometheus.NewDesc("weir_lake_remote_delete_failures_total", "Failed deletes of objects (retried with backoff).", nil, nil)
	descUploadFailing      = prometheus.NewDesc("weir_lake_upload_failing", "1 while the latest attempt to reach object storage failed.", nil, nil)
	descMended             = prometheus.NewDesc("weir_lake_mended_files_total", "Local lake files a query or compaction could not read, replaced by their copies in the bucket.", nil, nil)

	descCacheLocalBytes    = prometheus.NewDesc("weir_lake_cache_local_bytes", "Bytes of the local copies of uploaded lake files (the local cache).", nil, nil)
	descCacheEvictedFiles  = prometheus.NewDesc("weir_lake_cache_evicted_files", "Lake files kept in object storage only.", nil, nil)
	descCacheEvictedBytes  = prometheus.NewDesc("weir_lake_cache_evicted_bytes", "Bytes of the lake files kept in object storage only.", nil, nil)
	descCacheEvictions     = prometheus.NewDesc("weir_lake_cache_evictions_total", "Local copies of uploaded files deleted to keep the cache within sink.s3.cache_bytes.", nil, nil)
	descCacheFetches       = prometheus.NewDesc("weir_lake_cache_fetches_total", "Evicted files downloaded back for queries and consumers.", nil, nil)
	descCacheFetchedBytes  = prometheus.NewDesc("weir_lake_cache_fetched_bytes_total", "Bytes of the evicted files downloaded back.", nil, nil)
	descCacheFetchFailures = prometheus.NewDesc("weir_lake_cache_fetch_failures_total", "Downloads of evicted files that failed.", nil, nil)
)

func (c lakeRemoteCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUploadPendingFiles, descUploadPendingBytes, descUploadedFiles, descUploadedBytes,
		descUploadFailures, descRemoteDeletes, descRemoteDelFailures, descUploadFailing, descMended,
		descCacheLocalBytes, descCacheEvictedFiles, descCacheEvictedBytes, descCacheEvictions, descCacheFetches, descCacheFetchedBytes, descCacheFetchFailures} {
		ch <- d
	}
}

func (c lakeRemoteCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.lake.RemoteStats()
	if !ok {
		return
	}
	failing := 0.0
	if s.Failing {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(descUploadPendingFiles, prometheus.GaugeValue, float64(s.PendingFiles))
	ch <- prometheus.MustNewConstMetric(descUploadPendingBytes, prometheus.GaugeValue, float64(s.PendingBytes))
	ch <- prometheus.MustNewConstMetric(descUploadedFiles, prometheus.CounterValue, float64(s.UploadedFiles))
	ch <- prometheus.MustNewConstMetric(descUploadedBytes, prometheus.CounterValue, float64(s.UploadedBytes))
	ch <- prometheus.MustNewConstMetric(descUploadFailures, prometheus.CounterValue, float64(s.UploadFailures))
	ch <- prometheus.MustNewConstMetric(descRemoteDeletes, prometheus.CounterValue, float64(s.DeletedObjects))
	ch <- prometheus.MustNewConstMetric(descRemoteDelFailures, prometheus.CounterValue, float64(s.DeleteFailures))
	ch <- prometheus.MustNewConstMetric(descUploadFailing, prometheus.GaugeValue, failing)
	ch <- prometheus.MustNewConstMetric(descMended, prometheus.CounterValue, float64(s.Mended))
	if cs, ok := c.lake.CacheStats(); ok {
		ch <- prometheus.MustNewConstMetric(descCacheLocalBytes, prometheus.GaugeValue, float64(cs.LocalBytes))
		ch <- prometheus.MustNewConstMetric(descCacheEvictedFiles, prometheus.GaugeValue, float64(cs.EvictedFiles))
		ch <- prometheus.MustNewConstMetric(descCacheEvictedBytes, prometheus.GaugeValue, float64(cs.EvictedBytes))
		ch <- prometheus.MustNewConstMetric(descCacheEvictions, prometheus.CounterValue, float64(cs.Evictions))
		ch <- prometheus.MustNewConstMetric(descCacheFetches, prometheus.CounterValue, float64(cs.Fetches))
		ch <- prometheus.MustNewConstMetric(descCacheFetchedBytes, prometheus.CounterValue, float64(cs.FetchedBytes))
		ch <- prometheus.MustNewConstMetric(descCacheFetchFailures, prometheus.CounterValue, float64(cs.FetchFailures))
	}
}

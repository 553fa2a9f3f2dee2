package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/hec"
	"github.com/weirlabs/weir/ingest/jsonl"
	"github.com/weirlabs/weir/ingest/loki"
	"github.com/weirlabs/weir/ingest/otlp"
	"github.com/weirlabs/weir/ingest/syslog"
	"github.com/weirlabs/weir/internal/alert"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/consume"
	"github.com/weirlabs/weir/internal/logschema"
	"github.com/weirlabs/weir/internal/record"
	"github.com/weirlabs/weir/internal/tail"
	"github.com/weirlabs/weir/internal/tlsfiles"
	"github.com/weirlabs/weir/internal/wal"
	"github.com/weirlabs/weir/query"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/transform"
	"github.com/weirlabs/weir/transform/arrowbatch"
)

// config is everything `weir serve` can be told, in the shape of its YAML
// configuration file. Keys left out keep their defaults; unknown keys are
// an error. README.md documents every key.
type config struct {
	Addr     string `yaml:"addr"`
	Data     string `yaml:"data"`
	LogLevel string `yaml:"log_level"`
	// Memory bounds the whole process; the settings that hold most of
	// its memory are derived from it unless set (memory.go).
	Memory string `yaml:"memory"`

	// Server bounds the HTTP server's connections and how long clients
	// may take (newHTTPServer documents each bound).
	Server struct {
		// MaxConnections bounds the open client connections; more
		// wait to be accepted.
		MaxConnections int `yaml:"max_connections"`
		// IdleTimeout closes a connection with no request in flight.
		IdleTimeout time.Duration `yaml:"idle_timeout"`
		// ReadTimeout bounds the time a unary request's body takes
		// to arrive.
		ReadTimeout time.Duration `yaml:"read_timeout"`
		// StreamIdleTimeout ends a streaming RPC whose client sends
		// nothing for this long.
		StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout"`
		// Hosts are the host names clients use to reach the server;
		// requests naming another (DNS rebinding) are refused. Empty
		// means the loopback names when the server listens on a
		// loopback address, and any name otherwise.
		Hosts []string `yaml:"hosts"`
		// Origins are web origins besides the server's own whose pages
		// may call it from a browser.
		Origins []string `yaml:"origins"`
		// AllowInsecure lets the server listen on a non-loopback
		// address without API keys or without TLS, for deployments
		// where something in front of it authenticates every request
		// and encrypts the connection.
		AllowInsecure bool `yaml:"allow_insecure"`
		// TLS serves HTTPS (HTTP/1.1 and HTTP/2) with these files,
		// read again on SIGHUP; empty means plain HTTP and h2c.
		TLS tlsfiles.Config `yaml:"tls"`
	} `yaml:"server"`

	// Auth holds the API keys (docs/security.md); without keys every
	// request is the default tenant's, which is allowed only on
	// loopback addresses.
	Auth auth.Config `yaml:"auth"`

	Ingest struct {
		MaxMessageBytes int `yaml:"max_message_bytes"`
		// MaxInflightBytes bounds the request bytes all ingest
		// endpoints hold at once (ingest.Budget); from memory.
		MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
		// InflightStallTimeout cuts a request that holds some of the
		// in-flight budget and sends nothing more for this long.
		InflightStallTimeout time.Duration `yaml:"inflight_stall_timeout"`
		MaxBatchRecords      int           `yaml:"max_batch_records"`
		MaxFuture            time.Duration `yaml:"max_future"`
		// MaxPast bounds how old a record's time may be; 0 = any time
		// since 1970 (record.Limits.MaxPast).
		MaxPast         time.Duration `yaml:"max_past"`
		PushTimeout     time.Duration `yaml:"push_timeout"`
		DefaultAckLevel string        `yaml:"default_ack_level"`
		// TenantRecordsPerSecond and TenantBytesPerSecond bound each
		// tenant's ingest rate; 0 = no bound.
		TenantRecordsPerSecond int `yaml:"tenant_records_per_second"`
		TenantBytesPerSecond   int `yaml:"tenant_bytes_per_second"`
	} `yaml:"ingest"`

	// Loki, JSONL and HEC configure the push APIs of those protocols
	// (docs/ingest-protocols.md); ingest.max_message_bytes bounds their
	// bodies, after decompression too.
	Loki struct {
		StreamLabels  []string `yaml:"stream_labels"`
		DefaultStream string   `yaml:"default_stream"`
	} `yaml:"loki"`
	JSONL struct {
		MaxLineBytes  int    `yaml:"max_line_bytes"`
		DefaultStream string `yaml:"default_stream"`
	} `yaml:"jsonl"`
	HEC struct {
		DefaultStream string `yaml:"default_stream"`
	} `yaml:"hec"`
	// OTLP says where OpenTelemetry logs go (ingest/otlp.Config);
	// ingest.max_message_bytes bounds a request, decompressed too.
	OTLP struct {
		Stream          string `yaml:"stream"`
		StreamAttribute string `yaml:"stream_attribute"`
		DefaultStream   string `yaml:"default_stream"`
	} `yaml:"otlp"`

	// Syslog configures the syslog listeners (ingest/syslog.Config); an
	// empty address leaves that listener off.
	Syslog struct {
		TCP                string          `yaml:"tcp"`
		UDP                string          `yaml:"udp"`
		TLS                tlsfiles.Config `yaml:"tls"`
		Stream             string          `yaml:"stream"`
		StreamFrom         string          `yaml:"stream_from"`
		AckLevel           string          `yaml:"ack_level"`
		MaxConnections     int             `yaml:"max_connections"`
		MaxTCPMessageBytes int             `yaml:"max_tcp_message_bytes"`
		MaxUDPMessageBytes int             `yaml:"max_udp_message_bytes"`
		IdleTimeout        time.Duration   `yaml:"idle_timeout"`
		BatchRecords       int             `yaml:"batch_records"`
		BatchDelay         time.Duration   `yaml:"batch_delay"`
	} `yaml:"syslog"`

	// Sources are the Kafka, RabbitMQ and SQS consumers (sources.go,
	// docs/sources.md).
	Sources sourcesConfig `yaml:"sources"`

	// Forward lists the forwarders that publish streams to brokers
	// (forward.go, docs/forward.md).
	Forward forwardConfig `yaml:"forward"`

	Buffer struct {
		Partitions   int           `yaml:"partitions"`
		RingSlots    int           `yaml:"ring_slots"`
		MaxRecords   int           `yaml:"max_records"`
		MaxBytes     int64         `yaml:"max_bytes"`
		TickInterval time.Duration `yaml:"tick_interval"`
		MaxStreams   int           `yaml:"max_streams"`
		// MaxTenantStreams bounds one tenant's streams; 0 means
		// max_streams without API keys (one tenant) and the buffer's
		// default with them.
		MaxTenantStreams int           `yaml:"max_tenant_streams"`
		PriorityShare    float64       `yaml:"priority_share"`
		MaxProducers     int           `yaml:"max_producers"`
		ProducerTTL      time.Duration `yaml:"producer_ttl"`
		WAL              struct {
			Sync         string        `yaml:"sync"`
			SyncInterval time.Duration `yaml:"sync_interval"`
			SegmentBytes int64         `yaml:"segment_bytes"`
		} `yaml:"wal"`
	} `yaml:"buffer"`

	Transform struct {
		MaxRows    int           `yaml:"max_rows"`
		MaxBytes   int           `yaml:"max_bytes"`
		MaxAge     time.Duration `yaml:"max_age"`
		MaxColumns int           `yaml:"max_columns"`
	} `yaml:"transform"`

	Sink struct {
		TargetFileBytes int64         `yaml:"target_file_bytes"`
		MaxFileAge      time.Duration `yaml:"max_file_age"`
		RowGroupRows    int64         `yaml:"row_group_rows"`
		ZstdLevel       int           `yaml:"zstd_level"`
		Codec           sink.Codec    `yaml:"codec"`
		// DayFilesAfter: rows of dates that ended longer ago go to one
		// file per date (sink.Config.DayFilesAfter); 0 turns that off.
		DayFilesAfter time.Duration `yaml:"day_files_after"`
		// Encoders is how many batches are encoded to Parquet at once;
		// 0 means one per core (sink.Config.Encoders).
		Encoders int `yaml:"encoders"`
		// MaxDamagedFiles: published files whose footers do not parse
		// are moved to <data>/lake/.damaged/ at start, up to this many;
		// more stop the start (sink.Config.MaxDamagedFiles).
		MaxDamagedFiles int `yaml:"max_damaged_files"`
		Compaction      struct {
			Age        time.Duration `yaml:"age"`
			InputBytes int64         `yaml:"input_bytes"`
			SortRows   int64         `yaml:"sort_rows"`
			ZstdLevel  int           `yaml:"zstd_level"`
		} `yaml:"compaction"`
		// Lake is where the lake lives for good: "" for <data>/lake only,
		// s3://bucket/prefix for object storage (lakeremote.go), with
		// <data>/lake as the local copy.
		Lake string   `yaml:"lake"`
		S3   s3Config `yaml:"s3"`
	} `yaml:"sink"`

	// Retention removes expired lake files (retention.go).
	Retention retentionConfig `yaml:"retention"`

	// Iceberg keeps a table per stream (iceberg.go).
	Iceberg icebergConfig `yaml:"iceberg"`

	Query struct {
		Threads          int           `yaml:"threads"`
		MemoryLimit      string        `yaml:"memory_limit"`
		MaxSpill         string        `yaml:"max_spill"`
		MaxAnswer        string        `yaml:"max_answer"`
		MemoryCeiling    string        `yaml:"memory_ceiling"`
		MaxConcurrent    int           `yaml:"max_concurrent"`
		TenantConcurrent int           `yaml:"tenant_concurrent"`
		DefaultRows      uint64        `yaml:"default_rows"`
		MaxRows          uint64        `yaml:"max_rows"`
		DefaultTimeout   time.Duration `yaml:"default_timeout"`
		MaxTimeout       time.Duration `yaml:"max_timeout"`
	} `yaml:"query"`

	// Tail bounds the live-tail viewers (internal/tail.Config).
	Tail struct {
		MaxViewers          int           `yaml:"max_viewers"`
		MaxViewersPerTenant int           `yaml:"max_viewers_per_tenant"`
		ViewerBytes         int           `yaml:"viewer_bytes"`
		TotalBytes          int           `yaml:"total_bytes"`
		IdleTimeout         time.Duration `yaml:"idle_timeout"`
	} `yaml:"tail"`

	// Consume bounds subscriptions and consumer groups (consume.Config,
	// docs/consume.md).
	Consume struct {
		MaxBatchRecords        int           `yaml:"max_batch_records"`
		MaxTenantSubscriptions int           `yaml:"max_tenant_subscriptions"`
		MaxGroups              int           `yaml:"max_groups"`
		PollInterval           time.Duration `yaml:"poll_interval"`
		Heartbeat              time.Duration `yaml:"heartbeat"`
		// SessionTimeout bounds one send to a subscriber: one that reads
		// nothing for that long is gone.
		SessionTimeout time.Duration `yaml:"session_timeout"`
		// MaxDeliveries: a record a group delivered this many times
		// without a commit goes to the dead-letter stream; 0: no limit.
		MaxDeliveries int `yaml:"max_deliveries"`
		// MaxRetentionHold is how long past their expiry retention keeps
		// files whose records a group has not committed; 0: it never waits.
		MaxRetentionHold time.Duration `yaml:"max_retention_hold"`
		// Groups holds settings of named consumer groups.
		Groups map[string]struct {
			// MaxDeliveries overrides consume.max_deliveries (0: no limit).
			MaxDeliveries *int `yaml:"max_deliveries"`
		} `yaml:"groups"`
	} `yaml:"consume"`

	// Profiling configures pprof and continuous profiling.
	Profiling struct {
		PprofAddr      string        `yaml:"pprof_addr"`
		PyroscopeURL   string        `yaml:"pyroscope_url"`
		UploadInterval time.Duration `yaml:"upload_interval"`
	} `yaml:"profiling"`

	// UI configures the web UI served at /.
	UI struct {
		// Dashboards is a dashboards file (docs/ui.md), relative to this
		// file; "" means the built-in dashboard only.
		Dashboards string `yaml:"dashboards"`
	} `yaml:"ui"`

	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// Alerts are the alerting rules and their receivers (docs/alerts.md).
	Alerts alert.Config `yaml:"alerts"`

	// Streams are the processors of each stream (docs/transforms.md).
	Streams transform.Rules `yaml:"streams"`
	// Include names more files (globs, relative to this file) whose
	// "streams" sections are merged into Streams; a stream may be defined
	// once.
	Include []string `yaml:"include"`

	// path is the file the configuration was read from, for reloads.
	path string
}

func defaultConfig() config {
	var c config
	c.Addr = "127.0.0.1:7070"
	c.Data = "./weir-data"
	c.LogLevel = "info"
	c.ShutdownTimeout = time.Minute
	c.Profiling.UploadInterval = 15 * time.Second
	// 1024 connections leave most of a typical descriptor limit (Go
	// raises the soft limit to the hard one) to the lake's files.
	c.Server.MaxConnections = 1024
	c.Server.IdleTimeout = 2 * time.Minute
	c.Server.ReadTimeout = time.Minute
	c.Server.StreamIdleTimeout = 5 * time.Minute

	ic := ingest.DefaultConfig()
	c.Ingest.MaxMessageBytes, c.Ingest.MaxBatchRecords, c.Ingest.PushTimeout =
		ic.MaxMessageBytes, ic.MaxBatchRecords, ic.PushTimeout
	c.Ingest.MaxFuture = 24 * time.Hour
	// A client on a bad link can pause for seconds; ten of silence
	// mid-body is a stall.
	c.Ingest.InflightStallTimeout = 10 * time.Second
	c.Ingest.DefaultAckLevel = strings.ToLower(ic.DefaultLevel.String())
	lokiC, jsonlC, hecC := loki.DefaultConfig(), jsonl.DefaultConfig(), hec.DefaultConfig()
	c.Loki.StreamLabels, c.Loki.DefaultStream = lokiC.StreamLabels, lokiC.DefaultStream
	c.JSONL.MaxLineBytes, c.JSONL.DefaultStream = jsonlC.MaxLineBytes, jsonlC.DefaultStream
	c.HEC.DefaultStream = hecC.DefaultStream
	otlpC := otlp.DefaultConfig()
	c.OTLP.Stream, c.OTLP.StreamAttribute, c.OTLP.DefaultStream = otlpC.Stream, otlpC.StreamAttribute, otlpC.DefaultStream

	syslogC := syslog.DefaultConfig()
	c.Syslog.Stream, c.Syslog.MaxConnections, c.Syslog.MaxTCPMessageBytes, c.Syslog.MaxUDPMessageBytes =
		syslogC.Stream, syslogC.MaxConnections, syslogC.MaxTCPMessageBytes, syslogC.MaxUDPMessageBytes
	c.Syslog.IdleTimeout, c.Syslog.BatchRecords, c.Syslog.BatchDelay = syslogC.IdleTimeout, syslogC.BatchRecords, syslogC.BatchDelay

	bc := buffer.DefaultConfig()
	c.Buffer.Partitions, c.Buffer.RingSlots, c.Buffer.MaxRecords, c.Buffer.MaxBytes, c.Buffer.TickInterval, c.Buffer.MaxStreams =
		bc.Partitions, bc.RingSlots, bc.MaxRecords, bc.MaxBytes, bc.TickInterval, bc.MaxStreams
	c.Buffer.PriorityShare, c.Buffer.MaxProducers, c.Buffer.ProducerTTL = bc.PriorityShare, bc.MaxProducers, bc.ProducerTTL
	c.Buffer.WAL.Sync = "every"
	c.Buffer.WAL.SyncInterval, c.Buffer.WAL.SegmentBytes = bc.WAL.Interval, bc.WAL.SegmentBytes

	tc := arrowbatch.DefaultConfig()
	c.Transform.MaxRows, c.Transform.MaxBytes, c.Transform.MaxAge, c.Transform.MaxColumns = tc.MaxRows, tc.MaxBytes, tc.MaxAge, tc.MaxColumns

	sc := sink.DefaultConfig()
	c.Sink.TargetFileBytes, c.Sink.MaxFileAge, c.Sink.RowGroupRows, c.Sink.ZstdLevel, c.Sink.Codec, c.Sink.DayFilesAfter =
		sc.TargetFileBytes, sc.MaxFileAge, sc.RowGroupRows, sc.ZstdLevel, sc.Codec, sc.DayFilesAfter
	c.Sink.MaxDamagedFiles = sc.MaxDamagedFiles
	cc := &c.Sink.Compaction
	cc.Age, cc.InputBytes, cc.SortRows, cc.ZstdLevel = sc.CompactAge, sc.CompactInputBytes, sc.CompactSortRows, sc.CompactZstdLevel
	c.Retention.Interval = sink.DefaultRetentionInterval
	c.Iceberg = defaultIcebergConfig()

	qc := query.DefaultConfig()
	c.Query.Threads, c.Query.MemoryLimit, c.Query.MaxSpill, c.Query.MaxConcurrent = qc.Threads, qc.MemoryLimit, qc.MaxSpill, qc.MaxConcurrent
	c.Query.TenantConcurrent = qc.TenantConcurrent
	c.Query.MaxAnswer = "1GiB"
	hc := tail.DefaultConfig()
	c.Tail.MaxViewers, c.Tail.MaxViewersPerTenant, c.Tail.ViewerBytes, c.Tail.TotalBytes, c.Tail.IdleTimeout =
		hc.MaxSubscribers, hc.MaxSubscribersPerTenant, hc.QueueBytes, hc.TotalBytes, hc.IdleTimeout
	c.Query.DefaultRows, c.Query.MaxRows, c.Query.DefaultTimeout, c.Query.MaxTimeout =
		qc.DefaultRows, qc.MaxRows, qc.DefaultTimeout, qc.MaxTimeout
	kc := consume.DefaultConfig()
	c.Consume.MaxBatchRecords, c.Consume.MaxTenantSubscriptions, c.Consume.MaxGroups, c.Consume.PollInterval, c.Consume.Heartbeat =
		kc.MaxBatchRecords, kc.MaxTenantSubscriptions, kc.MaxGroups, kc.PollInterval, kc.Heartbeat
	c.Consume.SessionTimeout = 30 * time.Second
	c.Consume.MaxRetentionHold = 24 * time.Hour
	c.Alerts = alert.DefaultConfig()
	c.Memory = defaultMemory
	if err := c.applyMemory(nil); err != nil {
		panic(err) // the default is valid
	}
	return c
}

// loadConfigFile decodes a YAML file over c, then the stream rules of the
// files it includes. Errors name the file and, where YAML knows it, the
// line.
func loadConfigFile(c *config, path string) error {
	if err := decodeStrict(path, c); err != nil {
		return err
	}
	c.path = path
	set, err := configKeys(path)
	if err != nil {
		return err
	}
	if err := c.applyMemory(set); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := checkRules(path, c.Streams); err != nil {
		return err
	}
	if err := loadAlertRules(c, path); err != nil {
		return err
	}
	from := map[string]string{}
	for s := range c.Streams {
		from[s] = path
	}
	for _, pat := range c.Include {
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(filepath.Dir(path), pat)
		}
		files, err := filepath.Glob(pat)
		if err != nil {
			return fmt.Errorf("config %s: include %q: %w", path, pat, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("config %s: include %q matches no file", path, pat)
		}
		for _, f := range files {
			var inc struct {
				Streams transform.Rules `yaml:"streams"`
			}
			if err := decodeStrict(f, &inc); err != nil {
				return err
			}
			if err := checkRules(f, inc.Streams); err != nil {
				return err
			}
			for s, ch := range inc.Streams {
				if prev, ok := from[s]; ok {
					return fmt.Errorf("config %s: stream %q is defined in %s too", f, s, prev)
				}
				if c.Streams == nil {
					c.Streams = transform.Rules{}
				}
				c.Streams[s], from[s] = ch, f
			}
		}
	}
	return nil
}

// decodeStrict decodes a YAML file into v, refusing unknown keys.
func decodeStrict(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// checkRules compiles a file's stream rules, naming the file on error.
func checkRules(path string, r transform.Rules) error {
	if err := transform.CheckRules(r); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func (c *config) ingest() ingest.Config {
	ic := ingest.DefaultConfig()
	ic.MaxMessageBytes, ic.MaxBatchRecords, ic.PushTimeout =
		c.Ingest.MaxMessageBytes, c.Ingest.MaxBatchRecords, c.Ingest.PushTimeout
	ic.DefaultLevel = levels[c.Ingest.DefaultAckLevel]
	ic.TenantRecordsPerSecond, ic.TenantBytesPerSecond = c.Ingest.TenantRecordsPerSecond, c.Ingest.TenantBytesPerSecond
	// A COMMITTED ack comes when the record's file is published, at
	// most sink.max_file_age after its first row.
	ic.CommittedTimeout = c.Sink.MaxFileAge + c.Ingest.PushTimeout
	return ic
}

func (c *config) loki() loki.Config {
	return loki.Config{MaxBodyBytes: c.Ingest.MaxMessageBytes, StreamLabels: c.Loki.StreamLabels, DefaultStream: c.Loki.DefaultStream}
}

func (c *config) jsonl() jsonl.Config {
	return jsonl.Config{MaxBodyBytes: c.Ingest.MaxMessageBytes, MaxLineBytes: c.JSONL.MaxLineBytes, DefaultStream: c.JSONL.DefaultStream}
}

func (c *config) hec() hec.Config {
	return hec.Config{MaxBodyBytes: c.Ingest.MaxMessageBytes, DefaultStream: c.HEC.DefaultStream}
}

func (c *config) otlp() otlp.Config {
	return otlp.Config{Stream: c.OTLP.Stream, StreamAttribute: c.OTLP.StreamAttribute, DefaultStream: c.OTLP.DefaultStream, MaxMessageBytes: c.Ingest.MaxMessageBytes}
}

// syslogConfig is the syslog listeners' configuration; the ack level
// defaults to ingest.default_ack_level.
func (c *config) syslogConfig() syslog.Config {
	sc := syslog.DefaultConfig()
	sc.TCPAddr, sc.UDPAddr, sc.Stream, sc.StreamFromAppName = c.Syslog.TCP, c.Syslog.UDP, c.Syslog.Stream, c.Syslog.StreamFrom == "app_name"
	sc.MaxConnections, sc.MaxTCPMessageBytes, sc.MaxUDPMessageBytes = c.Syslog.MaxConnections, c.Syslog.MaxTCPMessageBytes, c.Syslog.MaxUDPMessageBytes
	sc.IdleTimeout, sc.BatchRecords, sc.BatchDelay = c.Syslog.IdleTimeout, c.Syslog.BatchRecords, c.Syslog.BatchDelay
	level := c.Syslog.AckLevel
	if level == "" {
		level = c.Ingest.DefaultAckLevel
	}
	sc.Level = levels[level]
	return sc
}

// levels maps the configuration's names of acknowledgement levels.
var levels = map[string]buffer.Level{"accepted": buffer.Accepted, "durable": buffer.Durable, "committed": buffer.Committed}

func (c *config) buffer() buffer.Config {
	bc := buffer.DefaultConfig()
	bc.Partitions, bc.RingSlots, bc.MaxRecords, bc.MaxBytes, bc.TickInterval, bc.MaxStreams =
		c.Buffer.Partitions, c.Buffer.RingSlots, c.Buffer.MaxRecords, c.Buffer.MaxBytes, c.Buffer.TickInterval, c.Buffer.MaxStreams
	bc.PriorityShare, bc.MaxProducers, bc.ProducerTTL = c.Buffer.PriorityShare, c.Buffer.MaxProducers, c.Buffer.ProducerTTL
	bc.MaxTenantStreams = c.Buffer.MaxTenantStreams
	if bc.MaxTenantStreams == 0 && len(c.Auth.Keys) == 0 {
		bc.MaxTenantStreams = bc.MaxStreams
	}
	bc.WALDir = filepath.Join(c.Data, "wal")
	bc.WAL.Interval, bc.WAL.SegmentBytes = c.Buffer.WAL.SyncInterval, c.Buffer.WAL.SegmentBytes
	if c.Buffer.WAL.Sync == "interval" {
		bc.WAL.Policy = wal.SyncInterval
	} else {
		bc.WAL.Policy = wal.SyncEvery
	}
	return bc
}

func (c *config) transform() arrowbatch.Config {
	tc := arrowbatch.DefaultConfig()
	tc.MaxRows, tc.MaxBytes, tc.MaxAge, tc.MaxColumns = c.Transform.MaxRows, c.Transform.MaxBytes, c.Transform.MaxAge, c.Transform.MaxColumns
	return tc
}

func (c *config) pipeline(log *slog.Logger) transform.PipelineConfig {
	return transform.PipelineConfig{
		Rules:    c.Streams,
		Limits:   record.Limits{MaxFuture: c.Ingest.MaxFuture, MaxPast: c.Ingest.MaxPast},
		StateDir: filepath.Join(c.Data, "patterns"),
		Log:      log,
	}
}

func (c *config) sink() sink.Config {
	sc := sink.DefaultConfig()
	sc.Dir = filepath.Join(c.Data, "lake")
	sc.TargetFileBytes, sc.MaxFileAge, sc.RowGroupRows, sc.ZstdLevel, sc.Codec, sc.Encoders, sc.DayFilesAfter =
		c.Sink.TargetFileBytes, c.Sink.MaxFileAge, c.Sink.RowGroupRows, c.Sink.ZstdLevel, c.Sink.Codec, c.Sink.Encoders, c.Sink.DayFilesAfter
	sc.MaxDamagedFiles = c.Sink.MaxDamagedFiles
	cc := c.Sink.Compaction
	sc.CompactAge, sc.CompactInputBytes, sc.CompactSortRows, sc.CompactZstdLevel = cc.Age, cc.InputBytes, cc.SortRows, cc.ZstdLevel
	sc.Retention = c.Retention.sink()
	return sc
}

func (c *config) tail() tail.Config {
	tc := tail.DefaultConfig()
	tc.MaxSubscribers, tc.MaxSubscribersPerTenant, tc.QueueBytes, tc.TotalBytes, tc.IdleTimeout =
		c.Tail.MaxViewers, c.Tail.MaxViewersPerTenant, c.Tail.ViewerBytes, c.Tail.TotalBytes, c.Tail.IdleTimeout
	return tc
}

func (c *config) query() query.Config {
	qc := query.DefaultConfig()
	qc.DataDir = c.Data
	qc.LakeDir = filepath.Join(c.Data, "lake")
	qc.Streams = []string{logschema.DeadLetterStream}
	qc.Threads, qc.MemoryLimit, qc.MaxSpill, qc.MaxConcurrent = c.Query.Threads, c.Query.MemoryLimit, c.Query.MaxSpill, c.Query.MaxConcurrent
	qc.TenantConcurrent = c.Query.TenantConcurrent
	qc.MaxAnswerBytes, _ = parseBytes(c.Query.MaxAnswer) // checked by validate
	qc.DefaultRows, qc.MaxRows, qc.DefaultTimeout, qc.MaxTimeout =
		c.Query.DefaultRows, c.Query.MaxRows, c.Query.DefaultTimeout, c.Query.MaxTimeout
	return qc
}

// validate checks every stage's configuration so that a bad value fails
// at start-up with the stage and field named.
func (c *config) validate() error {
	if c.Addr == "" {
		return fmt.Errorf("addr is empty")
	}
	if c.Data == "" {
		return fmt.Errorf("data is empty")
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout must be positive")
	}
	if c.Profiling.UploadInterval <= 0 {
		return fmt.Errorf("profiling.upload_interval must be positive")
	}
	if c.Server.MaxConnections < 1 {
		return fmt.Errorf("server.max_connections must be positive")
	}
	if c.Server.IdleTimeout <= 0 || c.Server.ReadTimeout <= 0 || c.Server.StreamIdleTimeout <= 0 {
		return fmt.Errorf("server.idle_timeout, server.read_timeout and server.stream_idle_timeout must be positive")
	}
	if c.Ingest.InflightStallTimeout <= 0 {
		return fmt.Errorf("ingest.inflight_stall_timeout must be positive")
	}
	if c.Ingest.MaxInflightBytes < ingest.MinBudget {
		return fmt.Errorf("ingest.max_inflight_bytes %d is less than the minimum of %d", c.Ingest.MaxInflightBytes, ingest.MinBudget)
	}
	if min := 2 * int64(c.Ingest.MaxMessageBytes); c.Ingest.MaxInflightBytes < min {
		return fmt.Errorf("ingest.max_inflight_bytes %d is less than twice ingest.max_message_bytes (%d): a compressed request of the largest size could never be taken", c.Ingest.MaxInflightBytes, min)
	}
	if c.Ingest.MaxFuture < 0 || c.Ingest.MaxPast < 0 {
		return fmt.Errorf("ingest.max_future and ingest.max_past must not be negative")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	if _, ok := levels[c.Ingest.DefaultAckLevel]; !ok {
		return fmt.Errorf("ingest.default_ack_level %q: want accepted, durable or committed", c.Ingest.DefaultAckLevel)
	}
	if c.Syslog.StreamFrom != "" && c.Syslog.StreamFrom != "app_name" {
		return fmt.Errorf("syslog.stream_from %q: want app_name or nothing", c.Syslog.StreamFrom)
	}
	if _, ok := levels[c.Syslog.AckLevel]; c.Syslog.AckLevel != "" && !ok {
		return fmt.Errorf("syslog.ack_level %q: want accepted, durable or committed", c.Syslog.AckLevel)
	}
	if c.Syslog.TLS.Enabled() && c.Syslog.TCP == "" {
		return fmt.Errorf("syslog.tls is set but syslog.tcp is empty: TLS is served on the TCP listener")
	}
	if c.Syslog.TLS.Enabled() {
		if err := c.Syslog.TLS.Validate(); err != nil {
			return fmt.Errorf("syslog.tls: %w", err)
		}
	}
	if err := c.syslogConfig().Validate(); err != nil {
		return err
	}
	if err := c.Sources.validate(); err != nil {
		return err
	}
	if err := c.Forward.validate(); err != nil {
		return err
	}
	if _, err := parseBytes(c.Query.MaxAnswer); err != nil {
		return fmt.Errorf("query.max_answer: %w", err)
	}
	if ceil, err := parseBytes(c.Query.MemoryCeiling); err != nil {
		return fmt.Errorf("query.memory_ceiling: %w", err)
	} else if lim, err := parseBytes(c.Query.MemoryLimit); err == nil && ceil > 0 && ceil < lim {
		return fmt.Errorf("query.memory_ceiling %s is below query.memory_limit %s: DuckDB would fail queries before it spills them", c.Query.MemoryCeiling, c.Query.MemoryLimit)
	}
	if err := c.Alerts.Validate(); err != nil {
		return err
	}
	if err := c.Iceberg.validate(c.Data); err != nil {
		return err
	}
	if err := c.validateLake(); err != nil {
		return err
	}
	if c.Consume.SessionTimeout <= 0 {
		return fmt.Errorf("consume.session_timeout must be positive")
	}
	if c.Consume.MaxRetentionHold < 0 {
		return fmt.Errorf("consume.max_retention_hold must not be negative")
	}
	if c.Buffer.WAL.Sync != "every" && c.Buffer.WAL.Sync != "interval" {
		return fmt.Errorf("buffer.wal.sync %q: want every or interval", c.Buffer.WAL.Sync)
	}
	for _, err := range []error{c.ingest().Validate(), c.loki().Validate(), c.jsonl().Validate(), c.hec().Validate(), c.otlp().Validate(), c.buffer().Validate(), c.transform().Validate(), c.sink().Validate(), c.query().Validate(), c.consumeConfig().Validate()} {
		if err != nil {
			return err
		}
	}
	return nil
}

package iceberg_test

import (
	"context"
	"strings"
	"testing"

	iceio "github.com/apache/iceberg-go/io"

	"github.com/weirlabs/weir/internal/objstore/miniotest"
	"github.com/weirlabs/weir/sink"
	"github.com/weirlabs/weir/sink/iceberg"
)

// TestS3 keeps the lake and the warehouse in a real S3-compatible
// server (MinIO): the tables' data files are the uploaded objects
// (s3:// locations), their metadata is in the bucket, and reading every
// planned object back gives the records, after publishes (one with a
// promoted column, whose footer is read from the bucket), compaction,
// retention and a restart.
func TestS3(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	e := newEnv(t)
	e.lakeCfg.Remote = &sink.Remote{Store: srv.Store(t), Prefix: "lake"}
	io := map[string]string{
		iceio.S3EndpointURL: srv.Endpoint, iceio.S3Region: "us-east-1",
		iceio.S3AccessKeyID: miniotest.User, iceio.S3SecretAccessKey: miniotest.Password,
		iceio.S3ForceVirtualAddressing: "false",
	}
	cfg := iceberg.DefaultConfig()
	cfg.Warehouse, cfg.IO = "s3://"+srv.Bucket+"/lake/_iceberg", io
	open := func(l *sink.Lake) (*iceberg.Reconciler, *sink.Lake) {
		cat, err := iceberg.OpenCatalog(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := iceberg.New(cfg, l, cat, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r, l
	}
	l := e.openLake(t)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, _ := open(l)
	// settled waits until the lake's background compactor is done and
	// every file is uploaded.
	settled := func(l *sink.Lake) {
		t.Helper()
		settled(t, l, e.lakeCfg.CompactAge)
		for _, f := range l.CommittedFiles() {
			if !strings.HasPrefix(f.Location, "s3://"+srv.Bucket+"/lake/tenant=") {
				t.Fatalf("committed file at %s", f.Location)
			}
		}
	}
	check := func(l *sink.Lake, stream string, w want) {
		t.Helper()
		c, err := iceberg.OpenCatalog(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkTableIO(t, io, c, l, stream, w)
	}
	app, web, old := want{}, want{}, want{}
	write(t, l, app, "app", 0, 0, 100, hour0, false)
	write(t, l, app, "app", 0, 100, 100, hour0, false)
	write(t, l, web, "web", 0, 0, 40, hour0, true)
	write(t, l, old, "old", 0, 0, 10, hour0, false)
	settled(l)
	sync(t, r)
	check(l, "app", app)
	check(l, "web", web)
	check(l, "old", old)
	if keys := srv.Keys(t, "lake/_iceberg/"+tenant+"/app/metadata/"); len(keys) == 0 {
		t.Fatal("no table metadata in the bucket")
	}

	write(t, l, app, "app", 1, 0, 30, hour0, false)
	settled(l)
	sync(t, r)
	check(l, "app", app)
	if _, err := l.Retain(context.Background()); err != nil {
		t.Fatal(err)
	}
	clear(old)
	sync(t, r)
	check(l, "old", old)

	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l2 := e.openLake(t)
	if err := l2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r2, _ := open(l2)
	settled(l2)
	sync(t, r2)
	if s := r2.Stats(); s.Snapshots != 0 {
		t.Fatalf("restart committed %d snapshots", s.Snapshots)
	}
	check(l2, "app", app)
	check(l2, "web", web)
}

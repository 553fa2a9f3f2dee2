package iceberg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	iceberg "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/hadoop"
	"github.com/apache/iceberg-go/catalog/rest"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // s3:// warehouses and data files
)

// Catalog kinds.
const (
	// CatalogHadoop is iceberg-go's filesystem catalog: table metadata as
	// versioned JSON files under Config.Warehouse, committed by an atomic
	// rename. It needs no service.
	CatalogHadoop = "hadoop"
	// CatalogREST is an Iceberg REST catalog at Config.URI (Polaris,
	// Nessie, Gravitino, Lakekeeper, Unity, Glue's REST endpoint...).
	CatalogREST = "rest"
)

// Config is what a user sets for the Iceberg tables.
type Config struct {
	// Catalog is CatalogHadoop (the default) or CatalogREST.
	Catalog string
	// Warehouse is, for the hadoop catalog, the directory (or file://
	// URI) holding the tables' metadata; for a REST catalog, the
	// warehouse name or location passed to the server (may be empty).
	Warehouse string
	// URI is the REST catalog's base URL.
	URI string
	// Credential is an OAuth2 client credential ("id:secret") for the
	// REST catalog; Token a bearer token. At most one is set.
	Credential string
	Token      string
	// Interval is the time between two passes when no lake change
	// nudges the reconciler, and the longest wait before a failed pass
	// is retried (failures back off from one second, doubling).
	Interval time.Duration
	// KeepSnapshots and KeepFor bound a table's history: once a table
	// has more than KeepSnapshots+KeepSnapshots/2 snapshots, those
	// beyond the newest KeepSnapshots that are older than KeepFor are
	// expired, and the manifest files only they used are deleted. Data
	// files are never deleted here: the lake deletes its own. KeepFor
	// is how long an engine may still read an old snapshot.
	KeepSnapshots int
	KeepFor       time.Duration
	// IO holds iceberg-go FileIO properties for object storage
	// (s3.endpoint, s3.region, s3.access-key-id, s3.secret-access-key,
	// s3.force-virtual-addressing): used for a hadoop warehouse in a
	// bucket and to read the footers of data files kept there.
	IO map[string]string
	// AfterPass, when set, is called after every pass (successful or
	// not), when what Reconciler.Referenced answers may have changed:
	// weir wakes the lake's deletions that wait (sink.Lake.WakeRemote).
	AfterPass func()
}

// DefaultConfig returns the defaults: the hadoop catalog, a pass at
// least every minute, the last 100 snapshots and those of the last
// hour kept. Warehouse has no default here: the caller puts it
// in its data directory.
func DefaultConfig() Config {
	return Config{Catalog: CatalogHadoop, Interval: time.Minute, KeepSnapshots: 100, KeepFor: time.Hour}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch c.Catalog {
	case CatalogHadoop:
		if c.Warehouse == "" {
			return errors.New("iceberg: the hadoop catalog needs a warehouse directory")
		}
		if u, err := url.Parse(c.Warehouse); err != nil || (u.Scheme != "" && u.Scheme != "file" && u.Scheme != "s3") || (u.Scheme == "s3" && u.Host == "") {
			return fmt.Errorf("iceberg: the hadoop catalog's warehouse is a directory, file:// or s3://bucket/prefix, not %q", c.Warehouse)
		}
	case CatalogREST:
		u, err := url.Parse(c.URI)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("iceberg: the rest catalog needs an http(s) uri, got %q", c.URI)
		}
		if c.Credential != "" && c.Token != "" {
			return errors.New("iceberg: set credential or token, not both")
		}
	default:
		return fmt.Errorf("iceberg: unknown catalog %q (want %q or %q)", c.Catalog, CatalogHadoop, CatalogREST)
	}
	if c.Interval <= 0 {
		return fmt.Errorf("iceberg: interval must be positive, got %v", c.Interval)
	}
	if c.KeepSnapshots < 1 || c.KeepFor < 0 {
		return fmt.Errorf("iceberg: keep_snapshots must be at least 1 and keep_for not negative, got %d and %v", c.KeepSnapshots, c.KeepFor)
	}
	return nil
}

// OpenCatalog opens the catalog cfg names. A REST catalog is contacted
// (its configuration endpoint) within ctx.
func OpenCatalog(ctx context.Context, cfg Config) (catalog.Catalog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Catalog {
	case CatalogREST:
		var opts []rest.Option
		if cfg.Warehouse != "" {
			opts = append(opts, rest.WithWarehouseLocation(cfg.Warehouse))
		}
		if cfg.Credential != "" {
			opts = append(opts, rest.WithCredential(cfg.Credential))
		}
		if cfg.Token != "" {
			opts = append(opts, rest.WithOAuthToken(cfg.Token))
		}
		cat, err := rest.NewCatalog(ctx, "weir", cfg.URI, opts...)
		if err != nil {
			return nil, fmt.Errorf("iceberg: open rest catalog %s: %w", cfg.URI, err)
		}
		return cat, nil
	default:
		if u, err := url.Parse(cfg.Warehouse); err == nil && u.Scheme == "s3" {
			// Commits are a conditional rename, which object storage
			// does not make atomic: safe for one writer, weir's
			// reconciler, not for two weir processes on one warehouse.
			props := iceberg.Properties{"allow-unsafe-commits": "true"}
			maps.Copy(props, cfg.IO)
			cat, err := hadoop.NewCatalog("weir", strings.TrimRight(cfg.Warehouse, "/"), props)
			if err != nil {
				return nil, fmt.Errorf("iceberg: open hadoop catalog in %s: %w", cfg.Warehouse, err)
			}
			return cat, nil
		}
		dir := cfg.Warehouse
		if u, err := url.Parse(dir); err == nil && u.Scheme == "file" {
			dir = u.Path
		}
		dir, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("iceberg: warehouse %q: %w", cfg.Warehouse, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("iceberg: create warehouse: %w", err)
		}
		cat, err := hadoop.NewCatalog("weir", dir, iceberg.Properties{})
		if err != nil {
			return nil, fmt.Errorf("iceberg: open hadoop catalog in %s: %w", dir, err)
		}
		return cat, nil
	}
}

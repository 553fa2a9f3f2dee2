package iceberg_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	ice "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/weirlabs/weir/sink"
)

var errCrash = errors.New("injected crash")

// crashPoint is where a faulty catalog stops a pass, as a crash of the
// process there would: nothing after it happens.
type crashPoint int

const (
	beforeLoad   crashPoint = iota // before the table is loaded
	afterCreate                    // the table was created, no snapshot committed
	beforeCommit                   // manifests written, the catalog commit not made
	afterCommit                    // the catalog committed, the reconciler never learnt it
	numCrashPoints
)

func (p crashPoint) String() string {
	return [...]string{"before load", "after create", "before commit", "after commit"}[p]
}

// faultyCatalog passes every call to a real catalog, except that the
// first call at its crash point fails (after doing the call, for the
// "after" points). Later calls fail too, as a dead process makes none.
type faultyCatalog struct {
	catalog.Catalog
	at      crashPoint
	crashed atomic.Bool
}

func (c *faultyCatalog) crash() error {
	c.crashed.Store(true)
	return errCrash
}

func (c *faultyCatalog) LoadTable(ctx context.Context, id table.Identifier) (*table.Table, error) {
	if c.crashed.Load() || c.at == beforeLoad {
		return nil, c.crash()
	}
	return c.Catalog.LoadTable(ctx, id)
}

func (c *faultyCatalog) CreateTable(ctx context.Context, id table.Identifier, sc *ice.Schema, opts ...catalog.CreateTableOpt) (*table.Table, error) {
	if c.crashed.Load() {
		return nil, errCrash
	}
	t, err := c.Catalog.CreateTable(ctx, id, sc, opts...)
	if err == nil && c.at == afterCreate {
		return nil, c.crash()
	}
	return t, err
}

func (c *faultyCatalog) CommitTable(ctx context.Context, id table.Identifier, reqs []table.Requirement, ups []table.Update) (table.Metadata, string, error) {
	if c.crashed.Load() || c.at == beforeCommit {
		return nil, "", c.crash()
	}
	m, loc, err := c.Catalog.CommitTable(ctx, id, reqs, ups)
	if err == nil && c.at == afterCommit {
		return nil, "", c.crash()
	}
	return m, loc, err
}

// TestCrashAtEachStep lets a pass crash at each point of each kind of
// change (first publish, more publishes, compaction, delete, retention)
// and then runs a new reconciler on a new catalog object, as a restarted
// process would: the table ends up equal to the lake, every record
// once, whatever the crash left behind (a table without snapshot,
// orphan manifests, a committed snapshot nobody counted).
func TestCrashAtEachStep(t *testing.T) {
	t.Parallel()
	for p := range numCrashPoints {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			l := e.openLake(t)
			app, old := want{}, want{}
			step := func(name string, change func()) {
				t.Helper()
				change()
				fc := &faultyCatalog{Catalog: e.catalog(t), at: p}
				fr := e.reconciler(t, l, fc)
				err := fr.Sync(context.Background())
				if !errors.Is(err, errCrash) {
					// Points that a change does not reach (a table exists
					// already: no create) let the pass through.
					if err != nil || p != afterCreate {
						t.Fatalf("%s: pass with a crash %s returned %v", name, p, err)
					}
				} else if s := fr.Stats(); s.ConsecutiveFailures != 1 || s.Failures == 0 || !strings.Contains(s.LastError, errCrash.Error()) || s.Lag <= 0 {
					t.Fatalf("%s: stats after a failed pass: %+v", name, s)
				}
				cat := e.catalog(t)
				r := e.reconciler(t, l, cat)
				sync(t, r)
				checkTable(t, cat, l, "app", app)
				checkTable(t, cat, l, "old", old)
				// And the table is stable: one more pass commits nothing.
				sync(t, r)
				if s := r.Stats(); s.Snapshots > 2 {
					t.Fatalf("%s: recovery committed %d snapshots", name, s.Snapshots)
				}
			}
			step("first publish", func() {
				write(t, l, app, "app", 0, 0, 100, hour0, false)
				write(t, l, old, "old", 0, 0, 10, hour0, false)
			})
			step("more publishes", func() {
				write(t, l, app, "app", 0, 100, 100, hour0, false)
				write(t, l, app, "app", 1, 0, 100, hour0, false)
			})
			step("compaction", func() { compact(t, l) })
			step("delete", func() {
				if _, err := l.DeleteRows(context.Background(), tenant, "app", hour0, map[int32]sink.OffsetSet{1: {{From: 0, To: 5}}}); err != nil {
					t.Fatal(err)
				}
				for o := range 5 {
					delete(app, fmt.Sprintf("1/%d", o))
				}
			})
			step("retention", func() {
				if _, err := l.Retain(context.Background()); err != nil {
					t.Fatal(err)
				}
				clear(old)
			})
		})
	}
}

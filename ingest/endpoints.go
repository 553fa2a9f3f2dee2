package ingest

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/auth"
)

// Endpoints: every push is counted under the name of the endpoint it came
// through (the protocol: "connect", "otlp_http", "loki", ...), which the
// server puts in the request's context with WithEndpoint. Pushes without
// one count under "other".

type endpointKey struct{}

// WithEndpoint names the endpoint of the pushes made with ctx.
func WithEndpoint(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, endpointKey{}, name)
}

func endpointOf(ctx context.Context) string {
	if name, ok := ctx.Value(endpointKey{}).(string); ok && name != "" {
		return name
	}
	return "other"
}

// EndpointStats counts one tenant's pushes through one endpoint.
type EndpointStats struct {
	Tenant   string
	Endpoint string
	// Records and Bytes (record.Record.Size) taken: stored,
	// dead-lettered or dropped by processors.
	Records, Bytes int64
	// DeadLettered counts the records sent to the dead-letter stream.
	DeadLettered int64
	// Errors counts the refused pushes by Connect code name
	// ("invalid_argument", "resource_exhausted", ...).
	Errors map[string]int64
}

type endpointCounters struct {
	records, bytes, dead atomic.Int64
	errors               [connect.CodeUnauthenticated + 1]atomic.Int64
}

// endpoints holds the counters by tenant and endpoint name. Endpoint
// names come from the server and tenants from its keys, not from
// clients, so the map stays small.
type endpoints struct {
	m sync.Map // endpointID → *endpointCounters
}

type endpointID struct{ tenant, endpoint string }

func (e *endpoints) of(ctx context.Context) *endpointCounters {
	id := endpointID{auth.TenantOf(ctx), endpointOf(ctx)}
	if c, ok := e.m.Load(id); ok {
		return c.(*endpointCounters)
	}
	c, _ := e.m.LoadOrStore(id, &endpointCounters{})
	return c.(*endpointCounters)
}

// done counts a push of records records and size bytes, dead of them
// dead-lettered, that ended with err.
func (e *endpoints) done(ctx context.Context, records, size, dead int, err error) {
	c := e.of(ctx)
	if err != nil {
		code := connect.CodeOf(err)
		if code > connect.CodeUnauthenticated {
			code = connect.CodeUnknown
		}
		c.errors[code].Add(1)
		return
	}
	c.records.Add(int64(records))
	c.bytes.Add(int64(size))
	c.dead.Add(int64(dead))
}

// failed counts a request whose batch was taken but whose
// acknowledgement level was not reached (a PushStream's wait after the
// batch was counted by done).
func (e *endpoints) failed(ctx context.Context, err error) {
	e.done(ctx, 0, 0, 0, err)
}

// EndpointStats returns the counters of every tenant and endpoint that
// saw a push, sorted by tenant and endpoint. It is safe to call
// concurrently with pushes.
func (s *Service) EndpointStats() []EndpointStats {
	var out []EndpointStats
	s.endpoints.m.Range(func(k, v any) bool {
		c, id := v.(*endpointCounters), k.(endpointID)
		st := EndpointStats{Tenant: id.tenant, Endpoint: id.endpoint, Records: c.records.Load(), Bytes: c.bytes.Load(), DeadLettered: c.dead.Load(), Errors: map[string]int64{}}
		for code := range c.errors {
			if n := c.errors[code].Load(); n > 0 {
				st.Errors[connect.Code(code).String()] = n
			}
		}
		out = append(out, st)
		return true
	})
	slices.SortFunc(out, func(a, b EndpointStats) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Endpoint, b.Endpoint))
	})
	return out
}

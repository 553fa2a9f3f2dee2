package ingest

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
)

// tenantLimiter bounds each tenant's ingest rate in records and bytes a
// second, so that one tenant's flood cannot take the buffer, the disk and
// the sink from the others. Each tenant has two token buckets holding up
// to one second of its rate; a batch takes its records and bytes from
// both or, when either lacks them, is refused whole with
// RESOURCE_EXHAUSTED and a Retry-After of the seconds until it would fit.
// A batch larger than a second's worth is let through when the buckets
// are full, so that no batch is refused for ever.
type tenantLimiter struct {
	records, bytes float64 // per second; 0 = unlimited
	now            func() time.Time

	mu      sync.Mutex
	tenants map[string]*buckets
}

type buckets struct {
	records, bytes float64 // tokens
	last           time.Time
	seen           time.Time
}

// maxLimitedTenants bounds the limiter's table; tenants idle for a second
// have full buckets and are forgotten first.
const maxLimitedTenants = 4096

func newTenantLimiter(recordsPerSec, bytesPerSec float64, now func() time.Time) *tenantLimiter {
	return &tenantLimiter{records: recordsPerSec, bytes: bytesPerSec, now: now, tenants: map[string]*buckets{}}
}

// take takes n records of size bytes from tenant's buckets, or returns a
// *connect.Error saying when to retry.
func (l *tenantLimiter) take(tenant string, n, size int) error {
	if l == nil || (l.records == 0 && l.bytes == 0) {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.tenants[tenant]
	if b == nil {
		if len(l.tenants) >= maxLimitedTenants {
			l.forgetIdleLocked(now)
		}
		b = &buckets{records: l.records, bytes: l.bytes, last: now}
		l.tenants[tenant] = b
	}
	elapsed := now.Sub(b.last).Seconds()
	b.last, b.seen = now, now
	b.records = math.Min(l.records, b.records+elapsed*l.records)
	b.bytes = math.Min(l.bytes, b.bytes+elapsed*l.bytes)
	full := (l.records == 0 || b.records >= l.records) && (l.bytes == 0 || b.bytes >= l.bytes)
	wait := 0.0
	if l.records > 0 && float64(n) > b.records {
		wait = math.Max(wait, (math.Min(float64(n), l.records)-b.records)/l.records)
	}
	if l.bytes > 0 && float64(size) > b.bytes {
		wait = math.Max(wait, (math.Min(float64(size), l.bytes)-b.bytes)/l.bytes)
	}
	if wait > 0 && !full {
		err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("tenant %q is over its ingest rate (%.0f records/s, %.0f bytes/s); retry later", tenant, l.records, l.bytes))
		err.Meta().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait))))
		return err
	}
	if l.records > 0 {
		b.records -= float64(n)
	}
	if l.bytes > 0 {
		b.bytes -= float64(size)
	}
	return nil
}

// forgetIdleLocked drops tenants not seen for a second (their buckets are
// full again), or all if none is idle.
func (l *tenantLimiter) forgetIdleLocked(now time.Time) {
	for t, b := range l.tenants {
		if now.Sub(b.seen) >= time.Second {
			delete(l.tenants, t)
		}
	}
	if len(l.tenants) >= maxLimitedTenants {
		clear(l.tenants)
	}
}

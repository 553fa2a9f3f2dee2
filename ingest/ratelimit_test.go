package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/buffer"
	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
)

// TestTenantRate: a tenant over its rate is refused with
// RESOURCE_EXHAUSTED and a Retry-After, while another tenant is served,
// and the tenant is served again once its bucket refilled.
func TestTenantRate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TenantRecordsPerSecond = 100 })
	clock := testNow
	h.svc.now = func() time.Time { return clock }
	recs := func(n int) []record.Record {
		out := make([]record.Record, n)
		for i := range out {
			out[i] = record.Record{Body: fmt.Sprint(i)}
		}
		return out
	}
	acme := auth.NewContext(context.Background(), auth.Principal{Tenant: "acme"})
	globex := auth.NewContext(context.Background(), auth.Principal{Tenant: "globex"})
	if _, err := h.svc.Submit(acme, "app", recs(80), nil, buffer.Accepted); err != nil {
		t.Fatal(err)
	}
	_, err := h.svc.Submit(acme, "app", recs(40), nil, buffer.Accepted)
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("over the rate: %v", err)
	}
	if status, retry := HTTPStatus(err); status != 429 || retry != "1" {
		t.Errorf("over the rate: HTTP %d, Retry-After %q", status, retry)
	}
	if _, err := h.svc.Submit(globex, "app", recs(100), nil, buffer.Accepted); err != nil {
		t.Errorf("another tenant: %v", err)
	}
	clock = clock.Add(300 * time.Millisecond) // 20 + 30 tokens
	if _, err := h.svc.Submit(acme, "app", recs(40), nil, buffer.Accepted); err != nil {
		t.Errorf("after refilling: %v", err)
	}
	// A batch larger than a second's worth passes on full buckets, then
	// the debt holds the tenant back.
	clock = clock.Add(10 * time.Second)
	if _, err := h.svc.Submit(acme, "app", recs(250), nil, buffer.Accepted); err != nil {
		t.Errorf("a large batch on full buckets: %v", err)
	}
	clock = clock.Add(time.Second)
	if _, err := h.svc.Submit(acme, "app", recs(10), nil, buffer.Accepted); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("while in debt: %v", err)
	}
	got := len(h.records(t, "app"))
	if got != 80+100+40+250 {
		t.Errorf("%d records stored", got)
	}
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/weirlabs/weir/internal/rpcgzip"
)

// Budget bounds the request bytes that ingest endpoints hold at once,
// every endpoint and tenant together: each request's body as it arrives
// and what the server decompresses from it, until the request's records
// are in the buffer (or the request fails). ingest.max_message_bytes
// bounds one request; a Budget bounds them all, so that many clients
// that each send a large body slowly cannot together hold more memory
// than the budget.
//
// Bytes are charged as they are read, so a client that sends slowly
// holds only what it has sent. A request that holds nothing yet waits up
// to the budget's wait for room; one that already holds bytes and needs
// more fails at once when there is no room (waiting while holding could
// leave every request waiting for the others), with ErrBusy: Connect
// RESOURCE_EXHAUSTED, HTTP 429, with Retry-After. A request that holds
// some of the budget and then sends nothing for BudgetConfig.Stall, or
// holds it longer than BudgetConfig.MaxHold, is cut (ErrStalled), so that
// a few slow clients cannot hold the budget and keep the others out.
//
// Tenants share the budget when they contend for it: while other
// tenants wait for room, or waited or were refused (and have taken room
// since) within contendFor, a tenant may take more only while it holds
// less than its share, the budget divided among the contending tenants
// and itself (and at least BudgetConfig.MinShare). A tenant alone may
// use the whole budget; one that filled it while alone gives back what
// it holds above its share as its requests end, and the room goes to the
// others; a request of its that has held bytes for BudgetConfig.Stall
// while its tenant is over its share is cut with ErrBusy. A Budget is
// safe for concurrent use.
type Budget struct {
	size     int64
	wait     time.Duration
	stall    time.Duration
	maxHold  time.Duration
	minShare int64
	tenantOf func(context.Context) string

	mu      sync.Mutex
	used    int64
	waiters int
	freed   chan struct{} // closed and replaced when bytes are returned while waiters > 0
	// tenants holds the bytes each tenant holds, for the tenants that
	// hold some; contenders the tenants that contend (see contender).
	// Both are bounded: a tenant in tenants holds at least budgetStep,
	// and tenants come from the server's keys.
	tenants    map[string]int64
	contenders map[string]*contender

	held       atomic.Int64 // used, for readers without the lock
	waiting    atomic.Int64 // waiters, for readers without the lock
	contending atomic.Int64 // len(contenders), for readers without the lock
	refused    atomic.Int64
}

// contender is a tenant that contends for a budget.
type contender struct {
	waiting int       // its requests waiting for room
	last    time.Time // when it last waited, was refused, or took room
}

// contendFor is how long a tenant counts as contending for the budget
// after it waited or was refused, or, once it has, after it last took
// room: long enough for a client to come back after the Retry-After of
// 1 s and a few backoffs, and for one that keeps sending to keep its
// share between requests.
const contendFor = 10 * time.Second

// ErrBusy is the error of a request refused because the budget of
// request bytes in flight is spent. Errors wrapping it are
// *connect.Error values with CodeResourceExhausted and a Retry-After.
var ErrBusy = errors.New("the server holds as many request bytes in flight as it may (ingest.max_inflight_bytes); retry")

// ErrOverBudget is the error of a request that needs more bytes at once
// than the whole budget: it could never be taken, so it is not retried.
// Errors wrapping it are *connect.Error values with
// CodeResourceExhausted and no Retry-After.
var ErrOverBudget = errors.New("the request needs more bytes in flight than ingest.max_inflight_bytes allows at all; send smaller requests")

// ErrStalled is the error of a request cut because it held some of the
// budget and sent nothing more of its body for BudgetConfig.Stall.
// Errors wrapping it are *connect.Error values with
// CodeDeadlineExceeded.
var ErrStalled = errors.New("the request body stalled while it held in-flight bytes (ingest.inflight_stall_timeout)")

// BodyStatus returns the HTTP status and Retry-After value ("" for none)
// of an error that reading or decompressing a request body under a
// Budget may return: 429 with "1" for ErrBusy, 413 for ErrOverBudget,
// 408 for ErrStalled and for a read past the server's read deadline
// (os.ErrDeadlineExceeded). ok is false for other errors.
func BodyStatus(err error) (status int, retryAfter string, ok bool) {
	switch {
	case errors.Is(err, ErrBusy):
		return http.StatusTooManyRequests, "1", true
	case errors.Is(err, ErrOverBudget):
		return http.StatusRequestEntityTooLarge, "", true
	case errors.Is(err, ErrStalled), errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "", true
	}
	return 0, "", false
}

// budgetStep is the unit in which a request's bytes are charged, so that
// the budget's lock is taken once for many reads.
const budgetStep = 64 << 10

// MinBudget is the smallest budget NewBudget accepts.
const MinBudget = 1 << 20

// BudgetConfig configures a Budget.
type BudgetConfig struct {
	// Size is the budget in bytes, at least MinBudget.
	Size int64
	// Wait bounds how long a request that holds nothing waits for room.
	Wait time.Duration
	// Stall bounds how long a request that holds some of the budget may
	// go without receiving more of its body; 0 = no bound.
	Stall time.Duration
	// MaxHold bounds how long a request may hold some of the budget
	// while its body (a stream's message) is still arriving, however
	// steadily it trickles in; 0 = no bound.
	MaxHold time.Duration
	// Tenant returns the tenant of a request from its context; nil puts
	// every request in one tenant.
	Tenant func(context.Context) string
	// MinShare is the least share of the budget a tenant has while
	// others contend, at most Size: set to the largest request, so that
	// a tenant can always have one in flight.
	MinShare int64
}

// NewBudget returns a budget configured by cfg.
func NewBudget(cfg BudgetConfig) (*Budget, error) {
	if cfg.Size < MinBudget {
		return nil, fmt.Errorf("ingest: the in-flight budget must be at least %d bytes, got %d", MinBudget, cfg.Size)
	}
	if cfg.Wait < 0 || cfg.Stall < 0 || cfg.MaxHold < 0 {
		return nil, fmt.Errorf("ingest: the in-flight budget's wait, stall and hold must not be negative, got %v, %v and %v", cfg.Wait, cfg.Stall, cfg.MaxHold)
	}
	if cfg.MinShare < 0 || cfg.MinShare > cfg.Size {
		return nil, fmt.Errorf("ingest: a tenant's least share of the in-flight budget must be between 0 and its size %d, got %d", cfg.Size, cfg.MinShare)
	}
	return &Budget{
		size: cfg.Size, wait: cfg.Wait, stall: cfg.Stall, maxHold: cfg.MaxHold,
		minShare: cfg.MinShare, tenantOf: cfg.Tenant,
		freed:   make(chan struct{}),
		tenants: make(map[string]int64), contenders: make(map[string]*contender),
	}, nil
}

// Size returns the budget's size in bytes.
func (b *Budget) Size() int64 { return b.size }

// Held returns the bytes charged now.
func (b *Budget) Held() int64 { return b.held.Load() }

// Refused returns how many requests the budget has refused.
func (b *Budget) Refused() int64 { return b.refused.Load() }

// Waiting returns how many requests wait for room now.
func (b *Budget) Waiting() int64 { return b.waiting.Load() }

// take charges n more bytes to a holder of held bytes of tenant's if
// they fit; with wait, it waits for room until ctx is done or the
// budget's wait has passed. Bytes that could never fit fail with
// ErrOverBudget.
func (b *Budget) take(ctx context.Context, tenant string, held, n int64, wait bool) error {
	if held+n > b.size {
		b.refused.Add(1)
		return connect.NewError(connect.CodeResourceExhausted, ErrOverBudget)
	}
	var timer *time.Timer
	for {
		b.mu.Lock()
		share := b.shareLocked(tenant)
		room := b.used+n <= b.size
		if room && (tenant == "" || b.tenants[tenant]+n <= share) {
			b.used += n
			if tenant != "" {
				b.tenants[tenant] += n
				if c := b.contenders[tenant]; c != nil {
					// A contender keeps contending while it takes.
					c.last = time.Now()
				}
			}
			b.held.Store(b.used)
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		if !wait || b.wait == 0 {
			err := b.busyLocked(tenant, room, share)
			b.mu.Unlock()
			return err
		}
		freed := b.freed
		b.waitLocked(tenant, 1)
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(b.wait)
		}
		var err error
		select {
		case <-freed:
		case <-timer.C:
			wait = false // a last look, then a refusal
		case <-ctx.Done():
			timer.Stop()
			err = connect.NewError(connect.CodeCanceled, context.Cause(ctx))
		}
		b.mu.Lock()
		b.waitLocked(tenant, -1)
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// shareLocked returns how many bytes tenant may hold now: the whole
// budget while no other tenant contends for it, else the budget divided
// among the contenders and tenant, at least the least share. Contenders
// whose time has passed are forgotten. Bytes of no tenant ("": what
// Connect messages inflate to, charged without their request) are held
// to the budget alone and never contend.
func (b *Budget) shareLocked(tenant string) int64 {
	if tenant == "" || len(b.contenders) == 0 {
		return b.size
	}
	others := int64(0)
	now := time.Now()
	for t, c := range b.contenders {
		if c.waiting == 0 && now.Sub(c.last) >= contendFor {
			delete(b.contenders, t)
			b.contending.Store(int64(len(b.contenders)))
			continue
		}
		if t != tenant {
			others++
		}
	}
	if others == 0 {
		return b.size
	}
	return max(b.size/(others+1), b.minShare)
}

// overShare reports whether tenant holds more than its share now, while
// other tenants contend.
func (b *Budget) overShare(tenant string) bool {
	if tenant == "" || b.contending.Load() == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tenants[tenant] > b.shareLocked(tenant)
}

// waitLocked counts a request of tenant's that starts (d = 1) or stops
// (d = -1) waiting for room: tenant contends while it waits and for
// contendFor after, as the request reads the rest of its body.
func (b *Budget) waitLocked(tenant string, d int) {
	b.waiters += d
	b.waiting.Store(int64(b.waiters))
	if tenant == "" {
		return
	}
	c := b.contenders[tenant]
	if c == nil {
		c = &contender{}
		b.contenders[tenant] = c
		b.contending.Store(int64(len(b.contenders)))
	}
	c.waiting += d
	c.last = time.Now()
}

// give returns n bytes charged to tenant.
func (b *Budget) give(tenant string, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if left := b.tenants[tenant] - n; left > 0 {
		b.tenants[tenant] = left
	} else if tenant != "" {
		delete(b.tenants, tenant)
	}
	b.held.Store(b.used)
	if b.waiters > 0 {
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
}

// busyLocked refuses a request of tenant's, which now contends for the
// budget: room tells whether the budget had room for it, within the
// share tenant is held to.
func (b *Budget) busyLocked(tenant string, room bool, share int64) error {
	b.refused.Add(1)
	if tenant != "" {
		c := b.contenders[tenant]
		if c == nil {
			c = &contender{}
			b.contenders[tenant] = c
			b.contending.Store(int64(len(b.contenders)))
		}
		c.last = time.Now()
	}
	cause := ErrBusy
	if room {
		cause = fmt.Errorf("%w: this tenant holds its share (%d bytes) while other tenants wait for room", ErrBusy, share)
	}
	err := connect.NewError(connect.CodeResourceExhausted, cause)
	err.Meta().Set("Retry-After", "1")
	return err
}

// grant is what one request holds of a budget. Its methods are safe for
// concurrent use, though a request's body is read by one goroutine.
type grant struct {
	b      *Budget
	ctx    context.Context
	tenant string

	mu         sync.Mutex
	held, used int64
	since      time.Time // when held last became positive
	// declared is the body's Content-Length (-1 unknown): a body
	// declared larger than the whole budget is refused at its first
	// bytes with ErrOverBudget, not ErrBusy.
	declared int64
}

// charge records n more bytes held by the request, taking room from the
// budget in budgetSteps: it waits only when the request holds nothing.
func (g *grant) charge(n int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.declared > g.b.size {
		g.b.refused.Add(1)
		return connect.NewError(connect.CodeResourceExhausted, ErrOverBudget)
	}
	if g.used+n > g.held {
		need := (g.used + n - g.held + budgetStep - 1) / budgetStep * budgetStep
		if err := g.b.take(g.ctx, g.tenant, g.held, need, g.held == 0); err != nil {
			return err
		}
		if g.held == 0 {
			g.since = time.Now()
		}
		g.held += need
	}
	g.used += n
	return nil
}

// holding reports whether the request holds some of the budget, and
// since when.
func (g *grant) holding() (since time.Time, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.since, g.held > 0
}

// release returns everything the request holds.
func (g *grant) release() {
	g.mu.Lock()
	held := g.held
	g.held, g.used = 0, 0
	g.mu.Unlock()
	g.b.give(g.tenant, held)
}

type grantKey struct{}

func grantOf(ctx context.Context) *grant {
	g, _ := ctx.Value(grantKey{}).(*grant)
	return g
}

// Handler charges the bodies of the requests it serves to b: each
// request's bytes are charged as h reads them and returned when h
// returns (or, for a PushStream, as each message's records have been
// taken). Code serving the request charges what it decompresses or
// allocates for the body with Charge and ChargeReader. Serve only ingest
// endpoints through it.
func (b *Budget) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := &grant{b: b, declared: r.ContentLength}
		if b.tenantOf != nil {
			g.tenant = b.tenantOf(r.Context())
		}
		g.ctx = context.WithValue(r.Context(), grantKey{}, g)
		r = r.WithContext(g.ctx)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &chargedBody{ReadCloser: r.Body, g: g, rc: http.NewResponseController(w)}
		}
		defer g.release()
		h.ServeHTTP(w, r)
	})
}

// chargedBody charges what is read from a request body to its grant.
// Reads are at most budgetStep long, and the bytes are charged once
// read: a request waiting for its client holds nothing it has not been
// sent. A read that waits longer than the budget's stall while the
// request holds some of the budget is cut through the request's read
// deadline.
type chargedBody struct {
	io.ReadCloser
	g   *grant
	rc  *http.ResponseController
	cut *time.Timer // made by the first read that needs it, then reset
}

func (c *chargedBody) Read(p []byte) (int, error) {
	b := c.g.b
	since, holding := c.g.holding()
	if !holding || (b.stall == 0 && b.maxHold == 0) {
		return chargedRead(c.ReadCloser, c.g, p)
	}
	// The read may wait for the client until the stall or the hold
	// runs out, whichever is first. While other tenants contend, a
	// request of a tenant over its share may hold for the stall only.
	maxHold, over := b.maxHold, false
	if b.stall > 0 && (maxHold == 0 || b.stall < maxHold) && b.overShare(c.g.tenant) {
		maxHold, over = b.stall, true
	}
	wait, held := b.stall, false
	if maxHold > 0 {
		if left := maxHold - time.Since(since); b.stall == 0 || left < wait {
			wait, held = left, true
		}
	}
	over = over && held // the share, not the stall, bounds this read
	stalled := func() error {
		switch {
		case over:
			err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%w: this tenant held more than its share for %v while other tenants waited for room", ErrBusy, maxHold))
			err.Meta().Set("Retry-After", "1")
			return err
		case held:
			return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%w: it was still arriving after %v", ErrStalled, maxHold))
		}
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%w: nothing came for %v", ErrStalled, b.stall))
	}
	if wait <= 0 {
		if over {
			b.refused.Add(1)
		}
		return 0, stalled()
	}
	if c.cut == nil {
		c.cut = time.AfterFunc(wait, func() { _ = c.rc.SetReadDeadline(time.Now()) })
	} else {
		c.cut.Reset(wait)
	}
	n, err := chargedRead(c.ReadCloser, c.g, p)
	if !c.cut.Stop() {
		// The deadline has passed: this read or the next fails.
		if over {
			b.refused.Add(1)
		}
		return n, stalled()
	}
	return n, err
}

func chargedRead(r io.Reader, g *grant, p []byte) (int, error) {
	if len(p) > budgetStep {
		p = p[:budgetStep]
	}
	n, err := r.Read(p)
	if n > 0 {
		if cerr := g.charge(int64(n)); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// Charge charges n more bytes to the budget of the request whose context
// is ctx (served through Budget.Handler): memory the request's decoding
// is about to allocate, such as a decompressed body. It returns an error
// wrapping ErrBusy when the budget has no room, and nil for a request
// served without a budget.
func Charge(ctx context.Context, n int) error {
	if g := grantOf(ctx); g != nil && n > 0 {
		return g.charge(int64(n))
	}
	return nil
}

// ChargeReader returns a reader that charges what is read from r to the
// budget of the request whose context is ctx, as Charge does; r itself
// when the request has no budget.
func ChargeReader(ctx context.Context, r io.Reader) io.Reader {
	if g := grantOf(ctx); g != nil {
		return chargedReader{r: r, g: g}
	}
	return r
}

type chargedReader struct {
	r io.Reader
	g *grant
}

func (c chargedReader) Read(p []byte) (int, error) { return chargedRead(c.r, c.g, p) }

// releaseRead returns what the request whose context is ctx holds of its
// budget: a stream's handler calls it once a message's records have been
// taken, so that a long stream holds only the message being read.
func releaseRead(ctx context.Context) {
	if g := grantOf(ctx); g != nil {
		g.release()
	}
}

// ConnectCompression returns the handler option that decompresses gzip
// Connect and gRPC messages within b: what a message inflates to is
// charged to the budget while it is decompressed (and refused, with
// ErrBusy, when there is no room; no wait, as the request already holds
// its compressed bytes), and decompression stops once a message passes
// maxMessageBytes (rpcgzip).
func (b *Budget) ConnectCompression(maxMessageBytes int) connect.HandlerOption {
	return rpcgzip.Option(maxMessageBytes, budgetMeter{b})
}

// budgetMeter charges a budget for rpcgzip.
type budgetMeter struct{ b *Budget }

func (m budgetMeter) Take(held, n int64) error {
	return m.b.take(context.Background(), "", held, n, false)
}

func (m budgetMeter) Give(n int64) { m.b.give("", n) }

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
// a few slow clients cannot hold the budget and keep the others out. A
// Budget is safe for concurrent use.
type Budget struct {
	size    int64
	wait    time.Duration
	stall   time.Duration
	maxHold time.Duration

	mu      sync.Mutex
	used    int64
	waiters int
	freed   chan struct{} // closed and replaced when bytes are returned while waiters > 0

	held    atomic.Int64 // used, for readers without the lock
	refused atomic.Int64
}

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
}

// NewBudget returns a budget configured by cfg.
func NewBudget(cfg BudgetConfig) (*Budget, error) {
	if cfg.Size < MinBudget {
		return nil, fmt.Errorf("ingest: the in-flight budget must be at least %d bytes, got %d", MinBudget, cfg.Size)
	}
	if cfg.Wait < 0 || cfg.Stall < 0 || cfg.MaxHold < 0 {
		return nil, fmt.Errorf("ingest: the in-flight budget's wait, stall and hold must not be negative, got %v, %v and %v", cfg.Wait, cfg.Stall, cfg.MaxHold)
	}
	return &Budget{size: cfg.Size, wait: cfg.Wait, stall: cfg.Stall, maxHold: cfg.MaxHold, freed: make(chan struct{})}, nil
}

// Size returns the budget's size in bytes.
func (b *Budget) Size() int64 { return b.size }

// Held returns the bytes charged now.
func (b *Budget) Held() int64 { return b.held.Load() }

// Refused returns how many requests the budget has refused.
func (b *Budget) Refused() int64 { return b.refused.Load() }

// take charges n more bytes to a holder of held bytes if they fit; with
// wait, it waits for room until ctx is done or the budget's wait has
// passed. Bytes that could never fit fail with ErrOverBudget.
func (b *Budget) take(ctx context.Context, held, n int64, wait bool) error {
	if held+n > b.size {
		b.refused.Add(1)
		return connect.NewError(connect.CodeResourceExhausted, ErrOverBudget)
	}
	var timer *time.Timer
	for {
		b.mu.Lock()
		if b.used+n <= b.size {
			b.used += n
			b.held.Store(b.used)
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		if !wait || b.wait == 0 {
			b.mu.Unlock()
			return b.busy()
		}
		freed := b.freed
		b.waiters++
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(b.wait)
		}
		var err error
		select {
		case <-freed:
		case <-timer.C:
			err = b.busy()
		case <-ctx.Done():
			timer.Stop()
			err = connect.NewError(connect.CodeCanceled, context.Cause(ctx))
		}
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// give returns n charged bytes.
func (b *Budget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.held.Store(b.used)
	if b.waiters > 0 {
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
}

func (b *Budget) busy() error {
	b.refused.Add(1)
	err := connect.NewError(connect.CodeResourceExhausted, ErrBusy)
	err.Meta().Set("Retry-After", "1")
	return err
}

// grant is what one request holds of a budget. Its methods are safe for
// concurrent use, though a request's body is read by one goroutine.
type grant struct {
	b   *Budget
	ctx context.Context

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
		if err := g.b.take(g.ctx, g.held, need, g.held == 0); err != nil {
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
	g.b.give(held)
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
	// runs out, whichever is first.
	wait, held := b.stall, false
	if b.maxHold > 0 {
		if left := b.maxHold - time.Since(since); b.stall == 0 || left < wait {
			wait, held = left, true
		}
	}
	stalled := func() error {
		if held {
			return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%w: it was still arriving after %v", ErrStalled, b.maxHold))
		}
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%w: nothing came for %v", ErrStalled, b.stall))
	}
	if wait <= 0 {
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
	return m.b.take(context.Background(), held, n, false)
}

func (m budgetMeter) Give(n int64) { m.b.give(n) }

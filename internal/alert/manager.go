package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Querier runs one read-only SQL statement in a tenant's database and
// returns at most maxRows rows. It must be safe for concurrent use, honour
// ctx, and check the statement as user SQL is checked (the /v1/sql
// sandbox): rules are written by whoever writes the configuration, but
// their SQL gets no more power than a user's.
type Querier interface {
	Query(ctx context.Context, tenant, sql string, maxRows int) (*Result, error)
}

// Result is a query's columns and rows; values are the driver's (int64,
// float64, string, time.Time, ...).
type Result struct {
	Columns []string
	Rows    [][]any
}

// Deps are what a Manager uses besides its Config.
type Deps struct {
	Querier Querier
	// StateDir is where the state is kept (state.json).
	StateDir string
	Log      *slog.Logger
	// Registerer takes the weir_alert_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// Client sends notifications; nil means a client of its own.
	Client *http.Client
	// TenantOf returns the tenant of an HTTP request; nil means the
	// default tenant for every request.
	TenantOf func(context.Context) string
}

// Manager evaluates rules on schedule, keeps their alerts' state and
// notifies receivers. Build it with New, give it rules with SetRules,
// then Start it; Shutdown stops it (and is safe without Start). All
// methods are safe for concurrent use.
type Manager struct {
	cfg       Config
	deps      Deps
	log       *slog.Logger
	m         *metrics
	am        []*notifier
	hooks     []*notifier
	kick      chan struct{}
	stopEval  context.CancelFunc
	stopNotif context.CancelFunc
	wg        sync.WaitGroup // the scheduler
	notifWG   sync.WaitGroup // the notifiers

	// mu guards the fields below. It is never held during a query or a
	// send.
	mu        sync.Mutex
	rules     map[string]*Rule // by key
	states    map[string]*ruleState
	next      map[string]time.Time // next evaluation, by key
	started   bool
	stopped   bool
	dirty     bool      // state changed since the last save
	lastSaved time.Time // of the state file
}

// New checks cfg, loads the state saved under deps.StateDir and builds
// the notifiers. It starts nothing.
func New(cfg Config, deps Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Querier == nil || deps.StateDir == "" {
		return nil, errors.New("alert: Deps.Querier and Deps.StateDir are required")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Client == nil {
		deps.Client = &http.Client{}
	}
	met, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	states, err := loadState(deps.StateDir)
	var damaged *damagedStateError
	if errors.As(err, &damaged) {
		// Firing alerts are sent again, as new; pattern rules take the
		// patterns of their history as seen again (docs/alerts.md).
		deps.Log.Error("alert: the alert state file is damaged; it was set aside and the rules start without state",
			"moved_to", damaged.moved, "err", damaged.err)
		met.stateDamaged.Inc()
	} else if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, deps: deps, log: deps.Log, m: met,
		kick:  make(chan struct{}, 1),
		rules: map[string]*Rule{}, states: states, next: map[string]time.Time{},
	}
	for _, u := range cfg.Alertmanager.URLs {
		m.am = append(m.am, m.newNotifier("alertmanager "+u, alertmanagerSender(deps.Client, u, cfg.Alertmanager.Timeout)))
	}
	for _, w := range cfg.Webhooks {
		m.hooks = append(m.hooks, m.newNotifier("webhook "+w.Name, webhookSender(deps.Client, w)))
	}
	return m, nil
}

func (m *Manager) newNotifier(name string, send func(context.Context, []Notification) error) *notifier {
	return &notifier{name: name, send: send, q: make(chan []Notification, m.cfg.QueueSize),
		retries: m.cfg.MaxRetries, backoff: m.cfg.RetryBackoff, log: m.log, m: m.m}
}

// CheckRules validates rules as SetRules does, without applying them:
// their fields, and their SQL through the Querier (the sandbox and the
// planner, by EXPLAIN). Errors are *RuleError.
func (m *Manager) CheckRules(ctx context.Context, rules []Rule) error {
	if err := CheckRules(rules); err != nil {
		return err
	}
	for i := range rules {
		r := &rules[i]
		for _, q := range m.statements(r, time.Now()) {
			if _, err := m.deps.Querier.Query(ctx, r.Tenant, "EXPLAIN "+q.sql, 1000); err != nil {
				field := "sql"
				if r.Pattern != nil {
					field = "pattern"
				}
				return r.fieldError(field, err)
			}
		}
	}
	return nil
}

// SetRules validates rules (see CheckRules) and replaces the running
// ones with them. A rule that keeps its tenant and name keeps its
// alerts' state and schedule; the state of rules that are gone is
// dropped. On error nothing changes.
func (m *Manager) SetRules(ctx context.Context, rules []Rule) error {
	rules = slices.Clone(rules)
	if err := m.CheckRules(ctx, rules); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := map[string]*Rule{}
	now := time.Now()
	for i := range rules {
		r := &rules[i]
		k := r.key()
		next[k] = r
		if m.states[k] == nil {
			m.states[k] = &ruleState{Instances: map[string]*Instance{}}
		}
		if prev := m.rules[k]; prev == nil || prev.Every != r.Every {
			m.next[k] = now
		}
		if prev := m.rules[k]; prev != nil && r.Pattern != nil && (prev.Pattern == nil || prev.Pattern.Stream != r.Pattern.Stream) {
			st := m.states[k]
			st.Patterns, st.PatternsTo = nil, time.Time{}
		}
	}
	for k, r := range m.rules {
		if next[k] == nil {
			m.m.forget(r.Tenant, r.Name)
		}
	}
	for k := range m.states {
		if next[k] == nil {
			delete(m.states, k)
			delete(m.next, k)
		}
	}
	m.rules = next
	m.dirty = true
	select {
	case m.kick <- struct{}{}:
	default:
	}
	return nil
}

// Start starts the scheduler and the notifiers. ctx is not kept: stop
// them with Shutdown.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.stopped {
		return errors.New("alert: Start called twice or after Shutdown")
	}
	m.started = true
	nctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stopNotif = cancel
	for _, n := range m.notifiers() {
		m.notifWG.Go(func() { n.run(nctx) })
	}
	ectx, ecancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stopEval = ecancel
	m.wg.Go(func() { m.schedule(ectx) })
	return nil
}

func (m *Manager) notifiers() []*notifier { return append(slices.Clone(m.am), m.hooks...) }

// Shutdown stops the scheduler (an evaluation in progress is cancelled),
// saves the state, and lets the notifiers deliver what is queued until
// ctx is done; what is left then is counted as failed. It is safe to call
// without Start, and more than once.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	started := m.started
	m.mu.Unlock()
	if !started {
		return nil
	}
	m.stopEval()
	m.wg.Wait()
	err := m.save(true)
	for _, n := range m.notifiers() {
		close(n.q)
	}
	done := make(chan struct{})
	go func() { m.notifWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		m.stopNotif()
		<-done
	}
	m.stopNotif()
	return err
}

// schedule evaluates due rules, one at a time, until ctx is done.
func (m *Manager) schedule(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		r, at, wait := m.nextDue(now)
		if r != nil {
			changed := m.evaluate(ctx, r, at)
			if err := m.save(changed); err != nil {
				m.log.Error("alert: save state", "err", err)
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// nextDue returns the rule due first if it is due at now, with its
// evaluation time; otherwise how long until one is.
func (m *Manager) nextDue(now time.Time) (*Rule, time.Time, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var first *Rule
	var at time.Time
	for _, k := range slices.Sorted(maps.Keys(m.rules)) {
		if t := m.next[k]; first == nil || t.Before(at) {
			first, at = m.rules[k], t
		}
	}
	if first == nil {
		return nil, time.Time{}, time.Hour
	}
	if at.After(now) {
		return nil, time.Time{}, at.Sub(now)
	}
	// A rule more than an interval late (a slow rule before it, or a
	// stopped clock) is evaluated now, not once for every missed tick.
	if now.Sub(at) > first.Every {
		at = now
	}
	m.next[first.key()] = at.Add(first.Every)
	return first, at, 0
}

// save writes the state if it changed: at once with force, else at most
// every 10 s.
func (m *Manager) save(force bool) error {
	m.mu.Lock()
	if !m.dirty || !force && time.Since(m.lastSaved) < 10*time.Second {
		m.mu.Unlock()
		return nil
	}
	raw, err := json.Marshal(stateDoc{Version: stateVersion, Rules: m.states})
	m.dirty = false
	m.lastSaved = time.Now()
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("alert: encode state: %w", err)
	}
	return saveState(m.deps.StateDir, raw)
}

// evalTimeout bounds one evaluation: its interval, within [5 s, 1 min].
func evalTimeout(r *Rule) time.Duration { return min(max(r.Every, 5*time.Second), time.Minute) }

// evaluate runs r for the evaluation at time at, advances its alerts and
// queues the notifications. It reports whether an alert changed state
// (or began or ended), which the state file must not miss.
func (m *Manager) evaluate(ctx context.Context, r *Rule, at time.Time) (changed bool) {
	ctx, cancel := context.WithTimeout(ctx, evalTimeout(r))
	defer cancel()
	start := time.Now()
	m.mu.Lock()
	st := m.states[r.key()]
	var known map[string]*seenPattern
	var patternsTo time.Time
	if st != nil {
		known, patternsTo = st.Patterns, st.PatternsTo
	}
	m.mu.Unlock()
	if st == nil {
		return false // the rule was removed meanwhile
	}
	out, err := m.run(ctx, r, at, known, patternsTo)
	took := time.Since(start)
	m.m.evals.WithLabelValues(r.Tenant, r.Name).Inc()
	m.m.duration.WithLabelValues(r.Tenant, r.Name).Observe(took.Seconds())

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.states[r.key()] != st {
		return false
	}
	st.LastEval, st.LastDuration = at, took
	m.dirty = true
	if err != nil {
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return false // shutting down
		}
		m.m.failures.WithLabelValues(r.Tenant, r.Name).Inc()
		st.LastError = err.Error()
		m.log.Warn("alert: evaluation failed; the rule's alerts keep their state", "tenant", r.Tenant, "rule", r.Name, "err", err)
		return false
	}
	st.LastError = ""
	v := out.value
	st.LastValue = &v
	st.History = append(st.History, Point{T: at, V: v})
	if len(st.History) > maxHistory {
		st.History = slices.Delete(st.History, 0, len(st.History)-maxHistory)
	}
	if r.Pattern != nil {
		st.Patterns, st.PatternsTo = out.patterns, out.patternsTo
	}
	now := at
	before := stateCounts(st.Instances)
	events := advance(st.Instances, out.active, now, timing{For: r.For, KeepFiringFor: r.KeepFiringFor, Retention: m.cfg.ResolvedRetention})
	changed = len(events) > 0 || before != stateCounts(st.Instances)
	counts := map[State]int{}
	for _, in := range st.Instances {
		counts[in.State]++
	}
	for _, s := range []State{StatePending, StateFiring, StateResolved} {
		m.m.instances.WithLabelValues(r.Tenant, r.Name, string(s)).Set(float64(counts[s]))
	}
	if len(m.am) > 0 {
		if batch := due(st.Instances, now, m.cfg.ResendInterval); len(batch) > 0 {
			ns := make([]Notification, len(batch))
			for i, in := range batch {
				ns[i] = m.notification(r, in, now)
			}
			for _, n := range m.am {
				n.enqueue(ns)
			}
		}
	}
	for _, ev := range events {
		n := m.notification(r, ev.in, now)
		if n.Status == "firing" {
			n.EndsAt = time.Time{}
		}
		for _, h := range m.hooks {
			h.enqueue([]Notification{n})
		}
		m.log.Info("alert "+n.Status, "tenant", r.Tenant, "rule", r.Name, "labels", n.Labels)
	}
	return changed
}

// stateCounts counts instances by state, to tell whether an evaluation
// changed any.
func stateCounts(ins map[string]*Instance) [3]int {
	var c [3]int
	for _, in := range ins {
		switch in.State {
		case StatePending:
			c[0]++
		case StateFiring:
			c[1]++
		case StateResolved:
			c[2]++
		}
	}
	return c
}

// notification renders an instance for the receivers at now.
func (m *Manager) notification(r *Rule, in Instance, now time.Time) Notification {
	n := Notification{Status: "firing", Rule: r.Name, Tenant: r.Tenant, Labels: in.Labels, Annotations: in.Annotations,
		Value: in.Value, StartsAt: in.ActiveAt, GeneratorURL: m.link(m.cfg.ExternalURL, r, in, now)}
	if in.State == StateResolved {
		n.Status, n.EndsAt = "resolved", in.ResolvedAt
	} else {
		// As Prometheus: valid for four resend intervals (or
		// evaluation intervals), so one lost send does not resolve it.
		n.EndsAt = now.Add(4 * max(r.Every, m.cfg.ResendInterval))
	}
	return n
}

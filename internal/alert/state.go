package alert

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// State is where an alert instance is in its life.
type State string

// The states. An instance is pending while its condition holds for less
// than the rule's For, firing after, and resolved once the condition
// stopped holding (and KeepFiringFor passed). A resolved instance whose
// condition holds again starts over as pending: a new alert.
const (
	StatePending  State = "pending"
	StateFiring   State = "firing"
	StateResolved State = "resolved"
)

// Instance is one alert of a rule: the rule's labels and those of one
// row. Its exported fields are persisted.
type Instance struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	State       State             `json:"state"`
	// ActiveAt is when the condition began to hold, the alert's
	// startsAt.
	ActiveAt   time.Time `json:"active_at"`
	FiredAt    time.Time `json:"fired_at,omitzero"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// LastActive is the last evaluation at which the condition held.
	LastActive time.Time `json:"last_active"`
	Value      float64   `json:"value"`
	// LastSent and SentState are when and as what the instance was last
	// sent to the Alertmanagers.
	LastSent  time.Time `json:"last_sent,omitzero"`
	SentState State     `json:"sent_state,omitempty"`
}

// sample is one row whose condition holds, as the instance it makes.
type sample struct {
	labels      map[string]string
	annotations map[string]string
	value       float64
}

// labelKey identifies an instance by its labels.
func labelKey(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(l[k])
		b.WriteByte(0)
	}
	return b.String()
}

// timing is what the state machine needs of a rule.
type timing struct {
	For, KeepFiringFor, Retention time.Duration
}

// transition is an instance that started firing or resolved at an
// evaluation.
type transition struct {
	key string
	in  Instance
}

// advance moves the instances of one rule to the evaluation at now, at
// which the samples in active hold, and returns the instances that
// started firing or resolved. It is the whole state machine; it reads no
// clock.
func advance(instances map[string]*Instance, active map[string]sample, now time.Time, t timing) []transition {
	var out []transition
	for _, k := range slices.Sorted(maps.Keys(active)) {
		s := active[k]
		in := instances[k]
		if in == nil || in.State == StateResolved {
			in = &Instance{Labels: s.labels, State: StatePending, ActiveAt: now}
			instances[k] = in
		}
		in.Annotations, in.Value, in.LastActive = s.annotations, s.value, now
		if in.State == StatePending && now.Sub(in.ActiveAt) >= t.For {
			in.State, in.FiredAt = StateFiring, now
			out = append(out, transition{k, *in})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(instances)) {
		if _, ok := active[k]; ok {
			continue
		}
		in := instances[k]
		switch in.State {
		case StatePending:
			delete(instances, k)
		case StateFiring:
			if now.Sub(in.LastActive) < t.KeepFiringFor {
				continue
			}
			in.State, in.ResolvedAt = StateResolved, now
			out = append(out, transition{k, *in})
		case StateResolved:
			if now.Sub(in.ResolvedAt) >= t.Retention {
				delete(instances, k)
			}
		}
	}
	return out
}

// due returns the instances to send to the Alertmanagers at now: those
// firing or resolved whose state changed since they were last sent, or
// that were last sent resend ago or more. It marks them sent.
func due(instances map[string]*Instance, now time.Time, resend time.Duration) []Instance {
	var out []Instance
	for _, k := range slices.Sorted(maps.Keys(instances)) {
		in := instances[k]
		if in.State == StatePending {
			continue
		}
		if in.SentState == in.State && now.Sub(in.LastSent) < resend {
			continue
		}
		in.LastSent, in.SentState = now, in.State
		out = append(out, *in)
	}
	return out
}

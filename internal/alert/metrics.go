package alert

import "github.com/prometheus/client_golang/prometheus"

// metrics are the manager's Prometheus metrics, all named weir_alert_*.
type metrics struct {
	evals     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	instances *prometheus.GaugeVec
	sent      *prometheus.CounterVec
	failed    *prometheus.CounterVec
	retries   *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	// stateDamaged counts state files set aside at start (loadState).
	stateDamaged prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		evals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_alert_evaluations_total", Help: "Evaluations of alerting rules.",
		}, []string{"tenant", "rule"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_alert_evaluation_failures_total", Help: "Evaluations of alerting rules that failed (the rule's alerts keep their state).",
		}, []string{"tenant", "rule"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weir_alert_evaluation_duration_seconds", Help: "Time an evaluation of an alerting rule took, waiting for a query slot included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"tenant", "rule"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weir_alert_instances", Help: "Alerts by rule and state (pending, firing, resolved but still sent).",
		}, []string{"tenant", "rule", "state"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_alert_notifications_total", Help: "Alerts delivered to a receiver.",
		}, []string{"receiver"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_alert_notifications_failed_total", Help: "Alerts a receiver did not take after every retry.",
		}, []string{"receiver"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_alert_notification_retries_total", Help: "Deliveries to a receiver tried again after a failure.",
		}, []string{"receiver"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_alert_notifications_dropped_total", Help: "Alerts dropped because the receiver's queue was full.",
		}, []string{"receiver"}),
		stateDamaged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_alert_state_files_damaged_total", Help: "Alert state files that did not parse at start and were set aside (the rules started without state).",
		}),
	}
	if reg != nil {
		for _, c := range m.collectors() {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// forget removes the series of a rule that is gone.
func (m *metrics) forget(tenant, rule string) {
	l := prometheus.Labels{"tenant": tenant, "rule": rule}
	m.evals.DeletePartialMatch(l)
	m.failures.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.instances.DeletePartialMatch(l)
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.evals, m.failures, m.duration, m.instances, m.sent, m.failed, m.retries, m.dropped, m.stateDamaged}
}

// Describe implements prometheus.Collector, for a Manager built without
// Deps.Registerer.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.m.collectors() {
		c.Collect(ch)
	}
}

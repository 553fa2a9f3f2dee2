// Package alert evaluates alerting rules over the logs and notifies the
// Prometheus Alertmanager and webhooks. It sits on the read side of the
// pipeline, beside the dashboard: rules are SQL run through the query
// engine (the same sandbox and slots as /v1/sql), or pattern rules that
// watch the log patterns the transform stage's pattern processor mines.
//
// A Manager owns everything: a scheduler goroutine that evaluates due
// rules one at a time (so alerting holds at most one query slot and never
// starves dashboards), the state of every alert instance (pending,
// firing, resolved, since when), persisted under the data directory so a
// restart neither forgets a firing alert nor sends a resolved one as new,
// and one goroutine per notifier, each fed by a bounded queue so a slow or
// failing receiver never delays evaluation. docs/alerts.md describes the
// rules, the states and the notifications.
package alert

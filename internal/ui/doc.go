// Package ui is weir's built-in web interface for log aggregation: a
// single-page application of plain HTML, CSS and JavaScript modules,
// embedded in the binary, with a few small JSON endpoints beside it.
//
// It sits beside the pipeline, not in it: the browser reads everything
// through the server's public APIs (POST /v1/sql for queries, the
// TailService over the Connect protocol for live tail), so the UI can do
// nothing a client of those APIs could not. The package itself serves
// the assets, the dashboards (dashboards-as-code, YAML, validated at
// start-up) and a schema summary built from queries through a function
// the caller provides. docs/ui.md describes the views and the
// dashboards file.
package ui

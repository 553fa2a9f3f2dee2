package main

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirlabs/weir/ingest"
	"github.com/weirlabs/weir/ingest/jsonl"
	"github.com/weirlabs/weir/ingest/loki"
	"github.com/weirlabs/weir/internal/ui"
)

// endpointOf names the ingest endpoint (the protocol) a request path
// belongs to, "" for paths that push nothing.
func endpointOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/weir.v1.IngestService/"):
		return "connect"
	case strings.HasPrefix(path, "/opentelemetry.proto.collector.logs.v1.LogsService/"):
		return "otlp_grpc"
	case path == "/v1/logs":
		return "otlp_http"
	case path == loki.Path:
		return "loki"
	case path == jsonl.VictoriaLogsPath:
		return "jsonline"
	case path == jsonl.NativePath:
		return "jsonl"
	case strings.HasPrefix(path, "/services/collector"):
		return "hec"
	case strings.HasSuffix(path, "/_bulk"):
		return "elasticsearch"
	}
	return ""
}

// withEndpoint names each push request's endpoint in its context, for
// the ingest service's counters (weir_ingest_endpoint_*), and serves it
// within budget, the request bytes every ingest endpoint holds at once.
func withEndpoint(h http.Handler, budget *ingest.Budget) http.Handler {
	pushes := budget.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := endpointOf(r.URL.Path); name != "" {
			pushes.ServeHTTP(w, r.WithContext(ingest.WithEndpoint(r.Context(), name)))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// budgetCollector exports the in-flight budget's state.
type budgetCollector struct{ b *ingest.Budget }

var (
	descInflightBytes   = prometheus.NewDesc("weir_ingest_inflight_bytes", "Request bytes ingest endpoints hold now (read and decompressed bodies whose records are not yet in the buffer).", nil, nil)
	descInflightLimit   = prometheus.NewDesc("weir_ingest_inflight_limit_bytes", "ingest.max_inflight_bytes: the bound on weir_ingest_inflight_bytes.", nil, nil)
	descInflightRefused = prometheus.NewDesc("weir_ingest_inflight_refused_total", "Ingest requests refused because the in-flight budget had no room (429 / RESOURCE_EXHAUSTED), their tenant held its share while others waited (429), or it could never hold them (413).", nil, nil)
	descInflightWaiting = prometheus.NewDesc("weir_ingest_inflight_waiting", "Ingest requests waiting for room in the in-flight budget (up to ingest.push_timeout).", nil, nil)
)

func (c budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInflightBytes
	ch <- descInflightLimit
	ch <- descInflightRefused
	ch <- descInflightWaiting
}

func (c budgetCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descInflightBytes, prometheus.GaugeValue, float64(c.b.Held()))
	ch <- prometheus.MustNewConstMetric(descInflightLimit, prometheus.GaugeValue, float64(c.b.Size()))
	ch <- prometheus.MustNewConstMetric(descInflightRefused, prometheus.CounterValue, float64(c.b.Refused()))
	ch <- prometheus.MustNewConstMetric(descInflightWaiting, prometheus.GaugeValue, float64(c.b.Waiting()))
}

// endpointCollector exports the ingest service's counters by endpoint.
type endpointCollector struct{ ing *ingest.Service }

var (
	descEndpointRecords = prometheus.NewDesc("weir_ingest_endpoint_records_total", "Records taken by each ingest endpoint (protocol), per tenant.", []string{"tenant", "endpoint"}, nil)
	descEndpointBytes   = prometheus.NewDesc("weir_ingest_endpoint_bytes_total", "Accounted bytes of the records taken by each ingest endpoint, per tenant.", []string{"tenant", "endpoint"}, nil)
	descEndpointDead    = prometheus.NewDesc("weir_ingest_endpoint_dead_letters_total", "Records of each ingest endpoint sent to the dead-letter stream, per tenant.", []string{"tenant", "endpoint"}, nil)
	descEndpointErrors  = prometheus.NewDesc("weir_ingest_endpoint_errors_total", "Pushes refused by each ingest endpoint, per tenant and Connect code.", []string{"tenant", "endpoint", "code"}, nil)
)

func (c endpointCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEndpointRecords, descEndpointBytes, descEndpointDead, descEndpointErrors} {
		ch <- d
	}
}

func (c endpointCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.ing.EndpointStats() {
		ch <- prometheus.MustNewConstMetric(descEndpointRecords, prometheus.CounterValue, float64(st.Records), st.Tenant, st.Endpoint)
		ch <- prometheus.MustNewConstMetric(descEndpointBytes, prometheus.CounterValue, float64(st.Bytes), st.Tenant, st.Endpoint)
		ch <- prometheus.MustNewConstMetric(descEndpointDead, prometheus.CounterValue, float64(st.DeadLettered), st.Tenant, st.Endpoint)
		for code, n := range st.Errors {
			ch <- prometheus.MustNewConstMetric(descEndpointErrors, prometheus.CounterValue, float64(n), st.Tenant, st.Endpoint, code)
		}
	}
}

// ingestRows are tenant's counters by endpoint, for the UI's overview.
func ingestRows(ing *ingest.Service, tenant string) []ui.IngestEndpoint {
	var out []ui.IngestEndpoint
	for _, st := range ing.EndpointStats() {
		if st.Tenant == tenant {
			out = append(out, ui.IngestEndpoint{Endpoint: st.Endpoint, Records: st.Records, Bytes: st.Bytes, DeadLettered: st.DeadLettered, Errors: st.Errors})
		}
	}
	return out
}

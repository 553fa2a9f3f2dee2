package esbulk

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxProbeBody bounds the bodies of template and policy requests, which
// weir reads and discards.
const maxProbeBody = 1 << 20

// clusterUUID names weir's one-node "cluster" in the answers clients
// read it from.
const clusterUUID = "d2Vpci1sb2dzLXdlaXIt"

// Resource kinds clients create before they write (index templates,
// lifecycle policies, ingest pipelines, data streams). weir needs none:
// PUT is acknowledged and GET answers that there is none, so a client
// that checks first creates it again at its next start, harmlessly.
var settingPrefixes = []string{
	"/_index_template/", "/_template/", "/_component_template/",
	"/_ilm/policy/", "/_ingest/pipeline/", "/_data_stream/",
}

// probe answers the read-only endpoints clients call before writing.
func (h *Handler) probe(w http.ResponseWriter, r *http.Request, p string) {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case p == "/":
		if !get {
			methodNotAllowed(w, r, "GET, HEAD")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"name":         "weir",
			"cluster_name": "weir",
			"cluster_uuid": clusterUUID,
			"version": map[string]any{
				"number":                              Version,
				"build_flavor":                        "default",
				"build_type":                          "weir",
				"build_hash":                          "weir",
				"build_date":                          "2025-01-01T00:00:00.000Z",
				"build_snapshot":                      false,
				"lucene_version":                      "9.12.0",
				"minimum_wire_compatibility_version":  "7.17.0",
				"minimum_index_compatibility_version": "7.0.0",
			},
			"tagline": "You Know, for Search",
		})
	case p == "/_license" && get:
		writeJSON(w, http.StatusOK, map[string]any{"license": map[string]any{
			"status": "active", "uid": clusterUUID, "type": "basic", "mode": "basic",
			"issue_date": "2025-01-01T00:00:00.000Z", "issue_date_in_millis": 1735689600000,
			"max_nodes": 1000, "issued_to": "weir", "issuer": "weir", "start_date_in_millis": -1,
		}})
	case p == "/_xpack" && get:
		writeJSON(w, http.StatusOK, map[string]any{
			"build":    map[string]any{"hash": "weir", "date": "2025-01-01T00:00:00.000Z"},
			"license":  map[string]any{"uid": clusterUUID, "type": "basic", "mode": "basic", "status": "active"},
			"features": map[string]any{"ilm": map[string]any{"available": true, "enabled": true}},
		})
	case (p == "/_cluster/health" || strings.HasPrefix(p, "/_cluster/health/")) && get:
		writeJSON(w, http.StatusOK, map[string]any{
			"cluster_name": "weir", "status": "green", "timed_out": false,
			"number_of_nodes": 1, "number_of_data_nodes": 1,
			"active_primary_shards": 0, "active_shards": 0, "relocating_shards": 0,
			"initializing_shards": 0, "unassigned_shards": 0, "delayed_unassigned_shards": 0,
			"number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
			"task_max_waiting_in_queue_millis": 0, "active_shards_percent_as_number": 100.0,
		})
	case p == "/_cat/health" && get:
		now := time.Now().UTC()
		if strings.Contains(r.URL.Query().Get("format"), "json") {
			writeJSON(w, http.StatusOK, []map[string]any{{
				"epoch": fmt.Sprint(now.Unix()), "timestamp": now.Format("15:04:05"),
				"cluster": "weir", "status": "green", "node.total": "1", "node.data": "1",
			}})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		fmt.Fprintf(w, "%d %s weir green 1 1 0 0 0 0 0 0 - 100.0%%\n", now.Unix(), now.Format("15:04:05"))
	case strings.HasPrefix(p, "/_cat/") && get:
		if strings.Contains(r.URL.Query().Get("format"), "json") {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	case (p == "/_nodes" || strings.HasPrefix(p, "/_nodes/")) && get:
		host := r.Host
		writeJSON(w, http.StatusOK, map[string]any{
			"_nodes":       map[string]int{"total": 1, "successful": 1, "failed": 0},
			"cluster_name": "weir",
			"nodes": map[string]any{clusterUUID: map[string]any{
				"name": "weir", "version": Version, "roles": []string{"data", "ingest", "master"},
				"http": map[string]any{"publish_address": host, "bound_address": []string{host}},
			}},
		})
	case hasAnyPrefix(p, settingPrefixes):
		switch r.Method {
		case http.MethodPut, http.MethodPost:
			_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxProbeBody))
			writeJSON(w, http.StatusOK, map[string]bool{"acknowledged": true})
		case http.MethodGet, http.MethodHead:
			writeError(w, http.StatusNotFound, "resource_not_found_exception",
				fmt.Sprintf("%s does not exist: weir keeps no templates, policies or pipelines and acknowledges any that is put", truncate(p, 128)), "")
		case http.MethodDelete:
			writeJSON(w, http.StatusOK, map[string]bool{"acknowledged": true})
		default:
			methodNotAllowed(w, r, "GET, HEAD, PUT, POST, DELETE")
		}
	default:
		writeError(w, http.StatusNotFound, "resource_not_found_exception",
			fmt.Sprintf("weir answers only part of the Elasticsearch API (_bulk, /, _license, _cluster/health, _cat, _nodes, templates and policies), not %s %s", r.Method, truncate(p, 128)), "")
	}
}

package esbulk_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/weirlabs/weir/ingest/esbulk"
)

// FuzzDecode feeds the bulk decoder arbitrary bodies: it never panics,
// every item is either to be stored (with a valid stream name and valid
// UTF-8 text) or has an error status and a reason, and there are never
// more items than lines.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("{\"index\":{\"_index\":\"app\"}}\n{\"message\":\"hi\",\"a\":{\"b\":[1,2]}}\n"))
	f.Add([]byte("{\"create\":{\"_index\":\"logs-x-default\",\"_id\":\"1\"}}\n{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"log.level\":\"warn\"}\n"))
	f.Add([]byte("{\"delete\":{\"_index\":\"a\"}}\n{\"update\":{}}\n{\"doc\":{}}\n"))
	f.Add([]byte("garbage\n{\"index\":{}}\n"))
	f.Add([]byte("{\"index\":{\"_index\":\"a\"}}\n" + strings.Repeat("[", 5000)))
	f.Add([]byte("{\"index\":{\"_index\":\"a\"}}\r\n{\"message\":\"\\ud800\"}\r\n\r\n"))
	dec := esbulk.NewDecoder(esbulk.Limits{MaxDepth: 32})
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := dec.Decode(body, "path_index")
		if err != nil {
			if items != nil || strings.Count(string(body), "\n") < 100_000 {
				t.Fatalf("%d items, %v", len(items), err)
			}
			return
		}
		if lines := strings.Count(string(body), "\n") + 1; len(items) > lines {
			t.Fatalf("%d items from %d lines", len(items), lines)
		}
		for i, it := range items {
			switch {
			case it.Status == 0:
				if it.Stream == "" {
					t.Errorf("item %d: stored without a stream: %+v", i, it)
				}
				r := it.Record
				if !utf8.ValidString(r.Body) || !utf8.ValidString(r.SeverityText) {
					t.Errorf("item %d: invalid UTF-8 in %+v", i, r)
				}
			case it.Reason == "" || it.ErrType == "":
				t.Errorf("item %d: status %d without a reason", i, it.Status)
			}
			switch it.Action {
			case "index", "create", "update", "delete":
			default:
				t.Errorf("item %d: action %q", i, it.Action)
			}
		}
	})
}

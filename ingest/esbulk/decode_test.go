package esbulk_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weirlabs/weir/ingest/esbulk"
	"github.com/weirlabs/weir/internal/record"
)

func attr(kvs []record.KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

func TestDecodeMapsDocuments(t *testing.T) {
	t.Parallel()
	body := `{"index":{"_index":"logs-app-default","_id":"a1"}}
{"@timestamp":"2026-03-01T10:00:00.5Z","message":"disk full","log":{"level":"error"},"service":{"name":"api","version":"1.2"},"host":{"name":"h1"},"user":{"id":42},"tags":["a","b"],"trace":{"id":"0102030405060708090a0b0c0d0e0f10"},"span":{"id":"0102030405060708"}}
{"create":{}}
{"@timestamp":1772359200000,"message":"second","level":"warn"}

`
	items, err := esbulk.NewDecoder(esbulk.Limits{}).Decode([]byte(body), "fallback")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Fatalf("got %d items, want 2: %+v", len(items), items)
	}
	a := items[0]
	if a.Status != 0 || a.Action != "index" || a.Index != "logs-app-default" || a.Stream != "logs_app_default" || a.ID != "a1" || a.Reject != nil {
		t.Fatalf("item 0: %+v", a)
	}
	r := a.Record
	if r.Body != "disk full" || r.SeverityNumber != record.SeverityError || r.SeverityText != "ERROR" {
		t.Errorf("body/severity: %q %d %q", r.Body, r.SeverityNumber, r.SeverityText)
	}
	if want := time.Date(2026, 3, 1, 10, 0, 0, 5e8, time.UTC).UnixNano(); r.Timestamp != want {
		t.Errorf("timestamp %d, want %d", r.Timestamp, want)
	}
	if r.TraceID[0] != 1 || r.TraceID[15] != 0x10 || r.SpanID[7] != 8 {
		t.Errorf("trace/span: %x %x", r.TraceID, r.SpanID)
	}
	for key, want := range map[string]string{"service.name": "api", "service.version": "1.2", "host.name": "h1"} {
		if got, _ := attr(r.Resource, key); got != want {
			t.Errorf("resource %s = %q, want %q", key, got, want)
		}
	}
	for key, want := range map[string]string{"user.id": "42", "tags": `["a","b"]`, "es.index": "logs-app-default", "es.id": "a1"} {
		if got, _ := attr(r.Attributes, key); got != want {
			t.Errorf("attribute %s = %q, want %q", key, got, want)
		}
	}
	for _, key := range []string{"message", "@timestamp", "log.level", "trace.id", "service.name"} {
		if _, ok := attr(r.Attributes, key); ok {
			t.Errorf("attribute %s kept, though mapped", key)
		}
	}
	b := items[1]
	if b.Status != 0 || b.Action != "create" || b.Index != "fallback" || b.Stream != "fallback" || b.ID != "" {
		t.Fatalf("item 1: %+v", b)
	}
	if b.Record.Timestamp != 1772359200000*int64(time.Millisecond) || b.Record.SeverityText != "WARN" {
		t.Errorf("item 1 record: %+v", b.Record)
	}
}

func TestDecodeBadLines(t *testing.T) {
	t.Parallel()
	deep := `{"a":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}`
	body := strings.Join([]string{
		`{"index":{"_index":"app"}}`, `{"message":"ok 1"}`,
		`this is not json`, `{"message":"source of the broken action"}`,
		`{"index":{"_index":"app"}}`, `{"message": broken`,
		`{"delete":{"_index":"app","_id":"x"}}`,
		`{"update":{"_index":"app","_id":"x"}}`, `{"doc":{"a":1}}`,
		`{"index":{"_index":"9lives"}}`, `{"message":"x"}`,
		`{"index":{"_index":".ds-hidden"}}`, `{"message":"x"}`,
		`{"index":{"_index":"app"}}`, deep,
		`{"index":{"_index":"app"}}`, `{"message":"bad time","@timestamp":"yesterday"}`,
		`{"index":{"_index":"app"},"create":{}}`,
		`{"index":{"_index":"app"}}`, `{"message":"ok 2"}`,
		`{"frobnicate":{}}`,
		`{"index":{}}`, `{"message":"no index"}`,
		`{"index":{"_index":"app"}}`,
	}, "\n")
	items, err := esbulk.NewDecoder(esbulk.Limits{MaxDepth: 16}).Decode([]byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		status int
		typ    string
		body   string
	}
	wants := []want{
		{0, "", "ok 1"},
		{400, "illegal_argument_exception", ""},
		{400, "mapper_parsing_exception", ""},
		{400, "illegal_argument_exception", ""}, // delete
		{400, "illegal_argument_exception", ""}, // update
		{400, "invalid_index_name_exception", ""},
		{400, "invalid_index_name_exception", ""},
		{400, "mapper_parsing_exception", ""}, // too deep
		{0, "", "bad time"},
		{400, "illegal_argument_exception", ""}, // two actions on one line
		{0, "", "ok 2"},
		{400, "illegal_argument_exception", ""}, // unknown action, next line is an action
		{400, "action_request_validation_exception", ""},
		{400, "action_request_validation_exception", ""}, // no source at the end
	}
	if len(items) != len(wants) {
		for i, it := range items {
			t.Logf("%d: %+v", i, it)
		}
		t.Fatalf("got %d items, want %d", len(items), len(wants))
	}
	for i, w := range wants {
		it := items[i]
		if it.Status != w.status || it.ErrType != w.typ || (w.status == 0 && it.Record.Body != w.body) {
			t.Errorf("item %d: status %d %s %q body %q; want %d %s %q", i, it.Status, it.ErrType, it.Reason, it.Record.Body, w.status, w.typ, w.body)
		}
		if it.Status == http.StatusBadRequest && it.Reason == "" {
			t.Errorf("item %d: no reason", i)
		}
	}
	if items[8].Reject == nil {
		t.Errorf("a document with an unreadable @timestamp has no reject")
	}
	if items[3].Action != "delete" || items[4].Action != "update" {
		t.Errorf("actions of refused items: %q %q", items[3].Action, items[4].Action)
	}
}

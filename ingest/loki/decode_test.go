package loki

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/record"
)

func TestParseLabels(t *testing.T) {
	for in, want := range map[string]string{
		`{}`:                                    `[]`,
		` { } `:                                 `[]`,
		`{a="b"}`:                               `[{a b}]`,
		`{job="varlogs", host = "h1" ,}`:        `[{job varlogs} {host h1}]`,
		`{msg="say \"hi\"\\n", n="line\nnext"}`: "[{msg say \"hi\"\\n} {n line\nnext}]",
		`{_x1="", Y="é\u00e9"}`:                 `[{_x1 } {Y éé}]`,
	} {
		got, err := parseLabels(in, 4)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("parseLabels(%s) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{``, `a="b"`, `{a="b"`, `{a=b}`, `{1a="b"}`, `{a="b" c="d"}`, `{a="b"} x`,
		`{a="b", a="c"}`, `{a="\q"}`, `{a="b}`, `{a="1",b="2",c="3",d="4",e="5"}`, `{a.b="c"}`, `{a=~"b"}`} {
		if _, err := parseLabels(in, 4); !errors.Is(err, ErrLabels) {
			t.Errorf("parseLabels(%s): %v, want ErrLabels", in, err)
		}
	}
}

// renderLabels writes labels as Loki clients do.
func renderLabels(kvs []record.KV) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = kv.Key + "=" + strconv.Quote(kv.Value)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// FuzzParseLabels: the parser never panics, and what it reads it reads
// again the same from the form clients write.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{`{}`, `{a="b"}`, `{job="x", level="warn",}`, `{a="\u00e9\"\\"}`, `{a="b"`, `{{{{`, `{a="\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kvs, err := parseLabels(s, 8)
		if err != nil {
			if !errors.Is(err, ErrLabels) {
				t.Fatalf("error %v does not wrap ErrLabels", err)
			}
			return
		}
		if len(kvs) > 8 {
			t.Fatalf("%d labels past the bound", len(kvs))
		}
		again, err := parseLabels(renderLabels(kvs), 8)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(kvs) {
			t.Fatalf("%q: read %v, then %v, %v", s, kvs, again, err)
		}
	})
}

// Entry is a test's view of an entry to encode.
type testEntry struct {
	sec, nanos int64
	line       string
	meta       []record.KV
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// encodePush writes a logproto.PushRequest of one stream.
func encodePush(labels string, entries ...testEntry) []byte {
	var s []byte
	s = appendString(s, 1, labels)
	for _, e := range entries {
		var ts, m []byte
		ts = protowire.AppendTag(ts, 1, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(e.sec))
		ts = protowire.AppendTag(ts, 2, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(e.nanos))
		m = appendMessage(m, 1, ts)
		m = appendString(m, 2, e.line)
		for _, kv := range e.meta {
			var p []byte
			p = appendString(p, 1, kv.Key)
			p = appendString(p, 2, kv.Value)
			m = appendMessage(m, 3, p)
		}
		s = appendMessage(s, 2, m)
	}
	s = protowire.AppendTag(s, 3, protowire.VarintType)
	s = protowire.AppendVarint(s, 12345)
	return appendMessage(nil, 1, s)
}

func TestDecodeProto(t *testing.T) {
	b := encodePush(`{job="a"}`, testEntry{sec: 1700000000, nanos: 5, line: "one", meta: []record.KV{{Key: "trace", Value: "t1"}}},
		testEntry{sec: -1, line: "before 1970"})
	got, err := decodeProto(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].entries) != 2 || fmt.Sprint(got[0].labels) != "[{job a}]" {
		t.Fatalf("%+v", got)
	}
	e := got[0].entries[0]
	if e.ts != 1700000000_000000005 || e.line != "one" || fmt.Sprint(e.meta) != "[{trace t1}]" || e.err != nil {
		t.Errorf("entry 0: %+v", e)
	}
	if e := got[0].entries[1]; e.err == nil || e.line != "before 1970" {
		t.Errorf("entry 1: %+v", e)
	}
	for name, bad := range map[string][]byte{
		"truncated": b[:len(b)-3],
		"group":     protowire.AppendTag(nil, 1, protowire.StartGroupType),
		"varint":    protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1),
		"bad tag":   {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, err := decodeProto(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeProto: the decoder never panics, and each entry it returns
// took at least two bytes of input, so work is linear in the body.
func FuzzDecodeProto(f *testing.F) {
	f.Add(encodePush(`{job="a"}`, testEntry{sec: 1700000000, line: "x", meta: []record.KV{{Key: "k", Value: "v"}}}))
	f.Add(encodePush(`{a="b"`, testEntry{sec: -5, nanos: 2e9}))
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})
	f.Add(protowire.AppendTag(nil, 1, protowire.StartGroupType))
	f.Fuzz(func(t *testing.T, b []byte) {
		streams, err := decodeProto(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, httpin.ErrTooLarge) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		n := 0
		for _, s := range streams {
			n += len(s.entries)
			if s.labelErr == nil && len(s.labels) > MaxLabels {
				t.Fatalf("%d labels", len(s.labels))
			}
			for _, e := range s.entries {
				if e.ts < 0 {
					t.Fatalf("negative timestamp %d", e.ts)
				}
			}
		}
		if 2*n > len(b) {
			t.Fatalf("%d entries from %d bytes", n, len(b))
		}
	})
}

// FuzzDecodeJSON: the JSON decoder never panics, and refuses what nests
// past its bound.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"streams":[{"stream":{"job":"a"},"values":[["1700000000000000000","x",{"k":"v"}],["bad","y"]]}]}`))
	f.Add([]byte(`{"streams":[{"stream":{},"values":[[[[[[[[[[["1"]]]]]]]]]]}]}`))
	f.Add([]byte(`{"streams":[{"values":[{"ts":1}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		streams, err := decodeJSON(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, httpin.ErrTooLarge) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, s := range streams {
			for _, e := range s.entries {
				if e.ts < 0 {
					t.Fatalf("negative timestamp %d", e.ts)
				}
			}
		}
	})
}

// TestJSONEntriesCountedFirst: a JSON push of more entries than a
// request may hold is refused before encoding/json builds them.
func TestJSONEntriesCountedFirst(t *testing.T) {
	flood := []byte(`{"streams":[{"stream":{"app":"x"},"values":[` + strings.Repeat(`["1","a"],`, 1_000_000) + `["1","a"]]}]}`)
	var err error
	allocs := testing.AllocsPerRun(1, func() { _, err = decodeJSON(flood) })
	if !errors.Is(err, httpin.ErrTooLarge) {
		t.Fatalf("flood: %v", err)
	}
	if allocs > 100 {
		t.Errorf("refusing the flood took %.0f allocations", allocs)
	}
}

package httpin_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/weirlabs/weir/ingest/internal/httpin"
	"github.com/weirlabs/weir/internal/protolimit"
	"github.com/weirlabs/weir/internal/record"
)

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestReadBody(t *testing.T) {
	read := func(body []byte, enc string, limit int) ([]byte, error) {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if enc != "" {
			r.Header.Set("Content-Encoding", enc)
		}
		return httpin.ReadBody(r, limit)
	}
	if b, err := read([]byte("hello"), "", 5); err != nil || string(b) != "hello" {
		t.Errorf("plain: %q %v", b, err)
	}
	if _, err := read([]byte("hello!"), "", 5); !errors.Is(err, httpin.ErrTooLarge) || httpin.StatusOf(err) != http.StatusRequestEntityTooLarge {
		t.Errorf("plain over the limit: %v", err)
	}
	if b, err := read(gz(t, []byte("hello")), "gzip", 64); err != nil || string(b) != "hello" {
		t.Errorf("gzip: %q %v", b, err)
	}
	// A kilobyte of gzip that expands to a megabyte.
	bomb := gz(t, make([]byte, 1<<20))
	if len(bomb) > 2048 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	if _, err := read(bomb, "gzip", 64<<10); !errors.Is(err, httpin.ErrTooLarge) {
		t.Errorf("gzip bomb: %v", err)
	}
	if _, err := read([]byte("not gzip"), "gzip", 64); !errors.Is(err, httpin.ErrEncoding) || httpin.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("bad gzip: %v", err)
	}
	if _, err := read([]byte("x"), "br", 64); !errors.Is(err, httpin.ErrUnsupported) || httpin.StatusOf(err) != http.StatusUnsupportedMediaType {
		t.Errorf("brotli: %v", err)
	}
}

func TestFlatten(t *testing.T) {
	got, err := httpin.Flatten(nil, []byte(`{"a": "x", "n": 1.50, "b": true, "z": null, "o": {"p": {"q": "deep"}, "r": [1, {"s": 2}]}, "e": {}}`), 4, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []record.KV{{Key: "a", Value: "x"}, {Key: "n", Value: "1.50"}, {Key: "b", Value: "true"},
		{Key: "o.p.q", Value: "deep"}, {Key: "o.r", Value: `[1,{"s":2}]`}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, c := range []struct {
		in   string
		want error
	}{
		{`[1]`, httpin.ErrNotObject},
		{`"x"`, httpin.ErrNotObject},
		{`{"a": }`, httpin.ErrNotObject},
		{`{"a": 1} {"b": 2}`, httpin.ErrNotObject},
		{`{"a": 1`, httpin.ErrNotObject},
		{`{"a": {"b": {"c": {"d": {"e": 1}}}}}`, protolimit.ErrTooDeep},
		{`{"a": 1, "b": 2, "c": 3, "d": {"e": 4}}`, httpin.ErrTooManyFields},
	} {
		if _, err := httpin.Flatten(nil, []byte(c.in), 4, 3); !errors.Is(err, c.want) {
			t.Errorf("Flatten(%s): %v, want %v", c.in, err, c.want)
		}
	}
}

// FuzzFlatten: Flatten never panics; what it accepts is a valid JSON
// object, and every attribute it gives comes from a member path that
// exists.
func FuzzFlatten(f *testing.F) {
	f.Add([]byte(`{"a": "x", "o": {"p": [1, 2]}, "n": null}`))
	f.Add([]byte(`{"a": {"b": {"c": {"d": {}}}}}`))
	f.Add([]byte(`{"a": "\u0000\"}"} trailing`))
	f.Add([]byte(`{{{{{{{{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, err := httpin.Flatten(nil, data, 4, 16)
		if err != nil {
			return
		}
		var v map[string]any
		if json.Unmarshal(data, &v) != nil {
			t.Fatalf("accepted %q, which is not a JSON object", data)
		}
		if len(kvs) > 16 {
			t.Fatalf("%d attributes past the bound", len(kvs))
		}
	})
}

func TestGrouper(t *testing.T) {
	var g httpin.Grouper
	bad := errors.New("bad")
	g.Add("a", record.Record{Body: "a1"}, bad)
	g.Add("b", record.Record{Body: "b1"}, nil)
	g.Add("c", record.Record{Body: "c1"}, nil)
	g.Add("b", record.Record{Body: "b2"}, nil)
	g.Add("a", record.Record{Body: "a2"}, bad)
	g.Add("c", record.Record{Body: "c2"}, bad)
	var got []string
	for _, b := range g.Batches() {
		got = append(got, fmt.Sprintf("%s:%d/%d", b.Stream, len(b.Records), len(b.Rejects)))
	}
	// a, all rejected, moves into b; b has no rejects of its own but
	// now holds a's; c keeps its own.
	if want := "[b:4/4 c:2/2]"; fmt.Sprint(got) != want {
		t.Errorf("batches %v, want %s", got, want)
	}
	var only httpin.Grouper
	only.Add("a", record.Record{}, bad)
	if bs := only.Batches(); len(bs) != 1 || bs[0].Rejects[0] != bad {
		t.Errorf("a request with no good record: %+v", bs)
	}
}

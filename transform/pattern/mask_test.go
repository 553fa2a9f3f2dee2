package pattern_test

import (
	"strings"
	"testing"

	"github.com/weirlabs/weir/transform/pattern"
)

// A fresh Miner's first template for a message is the masked message, so
// these tests see the masks through the public API.
func TestBuiltinMasks(t *testing.T) {
	t.Parallel()
	f := func(msg, want string) {
		t.Helper()
		m, err := pattern.New(pattern.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if _, got := m.Match(msg); got != want {
			t.Errorf("Match(%q) template\n got %q\nwant %q", msg, got, want)
		}
	}
	// Words stay.
	f("Send worker leaving thread", "Send worker leaving thread")
	f("café fermé à clé", "café fermé à clé")
	f("", "")
	f("  spaced \t out \n", "spaced out")

	// Integers and decimals, with signs.
	f("state 6 took 12 ms", "state <*> took <*> ms")
	f("Translation=-24.0 offset +3", "Translation=<*> offset <*>")
	f("time: 0.2477829 len: 1893", "time: <*> len: <*>")
	f("value 1.5e-3", "value <*>")
	f("a-5 b--5", "a-<*> b-<*>")

	// Hex.
	f("flags=0x1, mask 0xffffffff", "flags=<*>, mask <*>")
	f("ActivityRecord{de9231d u0}", "ActivityRecord{<*> <*>}")
	f("deadbeef stays, cafe too", "deadbeef stays, cafe too")

	// IPv4 with and without port; host names with a port or a TLD.
	f("from 173.234.31.186 port 22", "from <*> port <*>")
	f("request /10.10.34.11:45307 in", "request /<*> in")
	f("0.0.0.0/0.0.0.0:3888", "<*>")
	f("proxy.cse.cuhk.edu.hk:5070 open", "<*> open")
	f("rhost=ns.example.com user", "rhost=<*> user")
	f("(24-54-76-216.bflony.adelphia.net)", "(<*>)")
	f("class org.apache.hadoop.MRAppMaster", "class org.apache.hadoop.MRAppMaster")
	f("ib_sm_sweep.c:1831", "ib_sm_sweep.c:<*>")

	// UUIDs, including groups without digits.
	f("[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] spawned", "[instance: <*>] spawned")
	f("id 96abccce-8d1f-4e07-bdcc-4b2ab87e23b4.", "id <*>.")

	// Paths and URLs.
	f("ok /etc/httpd/conf/workers2.properties", "ok <*>")
	f("chdir(/p/gb2/glosli/t800) failed", "chdir(<*>) failed")
	f(`Core: C:\Windows\winsxs\cbscore.dll`, "Core: <*>")
	f("split: hdfs://10.10.34.11:9000/pjhe/logs/x.log:21876+7292", "split: <*>")
	f("url=https://example.com/a?b=1&c=2 done", "url=<*> done")
	f("GET HTTP/1.1", "GET HTTP/<*>")
	f("read/write", "read/write")
	f("// and /", "// and /")

	// Identifiers with numbered parts.
	f("blk_-6952295868487656571 terminating", "blk_<*> terminating")
	f("appattempt_1445144423722_0020_000001", "appattempt_<*>")
	f("node-246 R02-M1-N0-C:J12-U11 t761", "node-<*> <*>-C:<*> <*>")

	// Dates and times; consecutive wildcards count as one token.
	f("at Fri Jun 17 07:07:00 2005 done", "at <*> done")
	f("2015-10-18 18:01:47,978", "<*>")
	f("channels 1 2 3 4 36 40 44", "channels <*>")
	f("May I?", "<*> I?")

	// Odd input.
	f("bad \xff\xfe token", "bad <*> token")
	f("a <*> b <*>", "a <*> b <*>")
	f("x "+strings.Repeat("y", 600)+" z", "x <*> z")
}

func TestTokenBounds(t *testing.T) {
	t.Parallel()
	m, err := pattern.New(pattern.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, tpl := m.Match(strings.Repeat("word ", 300))
	if n := len(strings.Fields(tpl)); n != 256 {
		t.Errorf("template of a 300-token message has %d tokens, want 256", n)
	}
	_, tpl = m.Match(strings.Repeat("abcdefgh ", 2000))
	if len(tpl) > 3*4096 {
		t.Errorf("template of a long message is %d bytes", len(tpl))
	}
}

func TestDelimiters(t *testing.T) {
	t.Parallel()
	f := func(delims, msg, want string) {
		t.Helper()
		m, err := pattern.New(pattern.Config{Delimiters: delims})
		if err != nil {
			t.Fatal(err)
		}
		if _, got := m.Match(msg); got != want {
			t.Errorf("Delimiters %q: Match(%q) template %q, want %q", delims, msg, got, want)
		}
	}
	f("=,", "uid=0,pid=12 name = x", "uid=<*>,pid=<*> name = x")
	f(";", "a;b ; c", "a;b ; c")
	f("", "uid=0,pid=12", "uid=<*>,pid=<*>")
}

func TestExtraMasks(t *testing.T) {
	t.Parallel()
	m, err := pattern.New(pattern.Config{Masks: []string{`user \w+`, `<\d+ sec`}})
	if err != nil {
		t.Fatal(err)
	}
	id1, tpl := m.Match("closed for user root, lifetime <1 sec")
	if want := "closed for <*>, lifetime <*>"; tpl != want {
		t.Errorf("template %q, want %q", tpl, want)
	}
	id2, _ := m.Match("closed for user news, lifetime 00:01")
	if id1 != id2 {
		t.Errorf("messages masked alike got ids %d and %d", id1, id2)
	}
}

package pattern_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/weirlabs/weir/transform/pattern"
)

func FuzzMatch(f *testing.F) {
	for _, seed := range []string{
		"",
		"PacketResponder 1 for block blk_38865049064139660 terminating",
		"acquire lock=233570404, flags=0x1, tag=\"View Lock\", name=com.android.systemui, ws=null, uid=10037, pid=2227",
		`Loaded Servicing Stack v6.1.7601.23505 with Core: C:\Windows\winsxs\cbscore.dll`,
		"10.11.10.1 \"GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1\" status: 200",
		"proxy.cse.cuhk.edu.hk:5070 close, 403 bytes (0.39 KB) sent, lifetime <1 sec",
		"[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Paused (Lifecycle Event)",
		"<*> <*>x<*> -<*>- <<*>> \xff\xfe",
		"a-1.-2:3/-4 0x 0xg 1e+ -- ++ //a :// C:\\ C:\\a\\b a:\\\\",
	} {
		f.Add(seed, "")
		f.Add(seed, ",=:")
	}
	f.Fuzz(func(t *testing.T, msg, delims string) {
		cfg := pattern.Config{Delimiters: delims}
		if cfg.Validate() != nil {
			cfg.Delimiters = ""
		}
		m, err := pattern.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		id, tpl := m.Match(msg)
		if !utf8.ValidString(tpl) {
			t.Errorf("template %q is not valid UTF-8", tpl)
		}
		if n := len(strings.Fields(tpl)); n > 256 {
			t.Errorf("template has %d tokens", n)
		}
		if len(tpl) > 3*4096+256 {
			t.Errorf("template is %d bytes", len(tpl))
		}
		if strings.ContainsAny(tpl, "\t\n\v\f\r") || strings.Contains(tpl, "  ") ||
			strings.HasPrefix(tpl, " ") || strings.HasSuffix(tpl, " ") {
			t.Errorf("template %q has whitespace other than single spaces", tpl)
		}
		if id2, tpl2 := m.Match(msg); id2 != id || tpl2 != tpl {
			t.Errorf("second Match = (%d, %q), first (%d, %q)", id2, tpl2, id, tpl)
		}
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		r, err := pattern.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Restore(snap); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if id3, tpl3 := r.Match(msg); id3 != id || tpl3 != tpl {
			t.Errorf("after Restore Match = (%d, %q), before (%d, %q)", id3, tpl3, id, tpl)
		}
	})
}

package jsonstr

import (
	"bytes"
	"encoding/json"
	"testing"
)

// samples holds every byte value between two letters, runes JSON treats
// specially, and invalid UTF-8.
func samples() []string {
	ss := []string{"", "plain", `<a href="x">&amp;</a>`, "tab\tnew\nline\r\b\f\x00\x1f\x7f",
		"snow \u2603, line \u2028 para \u2029 end", "bad \xff\xfe utf8 \xe2\x82", "\\back\\slash\""}
	for b := range 256 {
		ss = append(ss, string([]byte{'a', byte(b), 'z'}))
	}
	return ss
}

// TestAppendHTMLIsMarshal: AppendHTML writes the bytes json.Marshal
// writes.
func TestAppendHTMLIsMarshal(t *testing.T) {
	for _, s := range samples() {
		want, _ := json.Marshal(s)
		if got := AppendHTML([]byte("x"), s); !bytes.Equal(got, append([]byte("x"), want...)) {
			t.Errorf("AppendHTML(%q) = %s, json.Marshal writes %s", s, got[1:], want)
		}
	}
}

// TestAppendDecodesAsMarshal: Append's literal decodes to the string
// json.Marshal's does, and leaves <, >, & and U+2028 as they are.
func TestAppendDecodesAsMarshal(t *testing.T) {
	for _, s := range samples() {
		checkAppend(t, s)
	}
	if got := string(Append(nil, "<&>\u2028")); got != "\"<&>\u2028\"" {
		t.Errorf("Append escaped what it need not: %s", got)
	}
}

func checkAppend(t *testing.T, s string) {
	t.Helper()
	var got, want string
	lit := Append(nil, s)
	if err := json.Unmarshal(lit, &got); err != nil {
		t.Fatalf("Append(%q) = %s: %v", s, lit, err)
	}
	m, _ := json.Marshal(s)
	json.Unmarshal(m, &want)
	if got != want {
		t.Fatalf("Append(%q) decodes to %q, json.Marshal's to %q", s, got, want)
	}
}

// FuzzAppend: for any string, AppendHTML is json.Marshal and Append
// decodes to the same string.
func FuzzAppend(f *testing.F) {
	for _, s := range samples()[:7] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendHTML(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendHTML(%q) = %s, json.Marshal writes %s", s, got, want)
		}
		checkAppend(t, s)
	})
}

package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLogsQLMessages(t *testing.T) {
	got, err := logsQLMessages(strings.NewReader(`{"_msg":"weir-bench-marker run=a seq=1"}` + "\n\n" + `{"_msg":"m\u00e9 \"2\""}` + "\n"))
	if err != nil || len(got) != 2 || !got["weir-bench-marker run=a seq=1"] || !got[`mé "2"`] {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"{", `{"_msg":1}`, `[` + strings.Repeat("[", 100) + "\n", `{"_msg":"` + strings.Repeat("x", maxLogsQLLine) + `"}`} {
		if _, err := logsQLMessages(strings.NewReader(bad)); err == nil {
			t.Errorf("%.40q: no error", bad)
		}
	}
}

// FuzzLogsQLMessages: any answer is read without panicking, and a
// message is only what a line's _msg says.
func FuzzLogsQLMessages(f *testing.F) {
	f.Add([]byte(`{"_msg":"weir-bench-marker run=a seq=1","_time":"2026-12-05T00:00:00Z"}` + "\n"))
	f.Add([]byte(`{"_msg":"a"}` + "\n\n" + `{"x":[1,{"y":null}]}`))
	f.Add([]byte(`{"_msg":"\ud800"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := logsQLMessages(bytes.NewReader(data))
		if err != nil {
			return
		}
		want := map[string]bool{}
		for line := range bytes.Lines(data) {
			var row struct {
				Msg string `json:"_msg"`
			}
			if len(bytes.TrimSpace(line)) > 0 && json.Unmarshal(line, &row) == nil {
				want[row.Msg] = true
			}
		}
		if len(got) > len(want) {
			t.Errorf("%d messages from %d lines with one", len(got), len(want))
		}
		for m := range got {
			if !want[m] {
				t.Errorf("message %q is in no line", m)
			}
		}
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
	"github.com/weirlabs/weir/transform"
)

// hostileBody holds what a terminal acts on: CSI colour and clear
// screen, an OSC title ended by BEL, a C1 CSI, a bidi override, a
// carriage return over the line, and a byte that is not UTF-8.
const hostileBody = "a\x1b[31mred\x1b[2J\x1b]0;owned\x07 \u009b1;1H\u202eevil\tok\rover\nnext\x7f\xff"

// unsafeOnTerminal reports the first byte or rune of out a terminal
// would act on, other than tab and the newline ending each line.
func unsafeOnTerminal(out string) (rune, bool) {
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !utf8.ValidString(line) {
			return utf8.RuneError, true
		}
		for _, r := range line {
			if r != '\t' && (r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x202e) {
				return r, true
			}
		}
	}
	return 0, false
}

func TestSecurityTailEscapesControls(t *testing.T) {
	t.Parallel()
	msg := &weirv1.TailResponse{Records: []*weirv1.TailRecord{{
		Stream: "app",
		Record: &weirv1.LogRecord{
			Body:         hostileBody,
			SeverityText: "WARN\x1b[8m",
			Attributes:   []*weirv1.KeyValue{{Key: "k\x1b", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "v\u009b"}}}},
			Resource:     []*weirv1.KeyValue{{Key: "service.name", Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: "api\x1b]2;x\x07"}}}},
		},
	}}}
	var text bytes.Buffer
	if err := printTail(&text, "text", msg); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	if r, bad := unsafeOnTerminal(out); bad || strings.Count(out, "\n") != 1 {
		t.Fatalf("text output passes %U to the terminal:\n%q", r, out)
	}
	for _, want := range []string{`a\x1b[31mred\x1b[2J\x1b]0;owned\x07 \u009b1;1H\u202eevil` + "\tok" + `\rover\nnext\x7f\xff`, `WARN\x1b[8m`, `api\x1b]2;x\x07`} {
		if !strings.Contains(out, want) {
			t.Errorf("text output %q lacks %q", out, want)
		}
	}

	var js bytes.Buffer
	if err := printTail(&js, "json", msg); err != nil {
		t.Fatal(err)
	}
	if r, bad := unsafeOnTerminal(js.String()); bad {
		t.Fatalf("JSON output passes %U to the terminal:\n%q", r, js.String())
	}
	var line tailLine
	if err := json.Unmarshal(js.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	// JSON keeps the values, as JSON escapes: all but the byte that is
	// not UTF-8, which becomes U+FFFD.
	if want := strings.ToValidUTF8(hostileBody, "\uFFFD"); line.Body != want || line.Attributes["k\x1b"] != "v\u009b" || line.Service != "api\x1b]2;x\x07" {
		t.Errorf("JSON round trip: %+v", line)
	}
}

// A failed reload tells the caller the file, line and field, never the
// values of the file; the server log has the whole error.
func TestSecurityReloadConfigHidesValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"type", "buffer:\n  max_records: s3cr3t-type\n", "line 2: buffer.max_records:"},
		{"unknown key", "log_level: info\npasswrd: s3cr3t-key\n", "line 2: passwrd:"},
		{"syntax", "streams:\n  app:\n    processors: [ {parse: \"s3cr3t-syntax\" \n", "line "},
		{"rule", "streams:\n  app:\n    processors:\n      - parse: {format: s3cr3t-rule}\n", "line 4: streams.app.processors[0].parse.format:"},
		{"rule block", "streams:\n  app:\n    processors:\n      - redact:\n          patterns: ['(s3cr3t-regexp']\n", "line 4: streams.app.processors[0].redact:"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
		writeConfigAt(t, path, tc.body)
		var logged bytes.Buffer
		a := adminService{
			reload: func() (transform.Rules, error) {
				c := defaultConfig()
				if err := loadConfigFile(&c, path); err != nil {
					return nil, err
				}
				return c.Streams, nil
			},
			log: slog.New(slog.NewTextHandler(&logged, nil)),
		}
		_, err := a.ReloadConfig(context.Background(), connect.NewRequest(&weirv1.ReloadConfigRequest{}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("%s: %v, want invalid_argument", tc.name, err)
		}
		msg := err.Error()
		if strings.Contains(msg, "s3cr3t") || !strings.Contains(msg, path) || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: caller sees %q; want %s and %q, and no value", tc.name, msg, path, tc.want)
		}
		c := defaultConfig()
		if full := loadConfigFile(&c, path); full == nil || !strings.Contains(logged.String(), strconv.Quote(full.Error())) {
			t.Errorf("%s: the server log lacks the full error %v: %q", tc.name, full, logged.String())
		}
	}
}

// The same through a running server.
func TestSecurityReloadConfigServer(t *testing.T) {
	t.Parallel()
	cfgPath := writeConfig(t, t.TempDir(), "streams:\n  app:\n    processors:\n      - parse: {format: json}\n")
	s := startServer(t, "", withConfigFile(t, cfgPath))
	writeConfig(t, filepath.Dir(cfgPath), "streams:\n  app:\n    processors:\n      - parse: {format: json}\nbuffer:\n  max_bytes: hunter2\n")
	admin := weirv1connect.NewAdminServiceClient(http.DefaultClient, s.url)
	_, err := admin.ReloadConfig(context.Background(), connect.NewRequest(&weirv1.ReloadConfigRequest{}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || strings.Contains(err.Error(), "hunter2") ||
		!strings.Contains(err.Error(), cfgPath+": line 6: buffer.max_bytes:") {
		t.Fatalf("reload: %v", err)
	}
}

func writeConfigAt(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

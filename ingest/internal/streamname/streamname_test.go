package streamname_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weirlabs/weir/ingest/internal/streamname"
	"github.com/weirlabs/weir/internal/record"
)

func TestFrom(t *testing.T) {
	t.Parallel()
	ok := map[string]string{
		"app":                         "app",
		"logs-app-default":            "logs_app_default",
		"App.Web":                     "app_web",
		"filebeat-8.19.0":             "filebeat_8_19_0",
		"a" + strings.Repeat("b", 63): "a" + strings.Repeat("b", 63),
	}
	for in, want := range ok {
		got, err := streamname.From(in)
		if err != nil || got != want {
			t.Errorf("From(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".ds-logs", "_internal", "2024-logs", "-x", "logs", "LOGS", "duckdb-x", "a" + strings.Repeat("b", 64), strings.Repeat("x", 300), "<logs-{now/d}>"} {
		if got, err := streamname.From(in); !errors.Is(err, record.ErrInvalidStream) {
			t.Errorf("From(%q) = %q, %v; want ErrInvalidStream", in, got, err)
		}
	}
}

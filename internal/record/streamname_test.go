package record

import (
	"errors"
	"strings"
	"testing"
)

func TestStreamNameFrom(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"app":                         "app",
		"logs-app-default":            "logs_app_default",
		"App.Web":                     "app_web",
		"Checkout-API":                "checkout_api",
		"My-App/web":                  "my_app_web",
		"filebeat-8.19.0":             "filebeat_8_19_0",
		"café-Bar":                    "caf__bar",
		"a" + strings.Repeat("b", 63): "a" + strings.Repeat("b", 63),
	} {
		if got, err := StreamNameFrom(in); err != nil || got != want {
			t.Errorf("StreamNameFrom(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".ds-logs", "_internal", "2024-logs", "9lives", "-x", "é", "logs", "LOGS", "main",
		"DuckDB_tables", "a" + strings.Repeat("b", 64), strings.Repeat("x", 300), "<logs-{now/d}>"} {
		if got, err := StreamNameFrom(in); !errors.Is(err, ErrInvalidStream) {
			t.Errorf("StreamNameFrom(%q) = %q, %v; want ErrInvalidStream", in, got, err)
		}
	}
}

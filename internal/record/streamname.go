package record

import (
	"fmt"
	"unicode/utf8"
)

// maxStreamNameInput bounds the names StreamNameFrom looks at.
const maxStreamNameInput = 255

// StreamNameFrom turns a name another system gives a log destination (an
// Elasticsearch index, a Loki label, a Splunk index, an OpenTelemetry
// service.name, a syslog app-name) into a stream name: ASCII letters
// are lowered and every other character outside [a-z0-9_] becomes "_",
// so "logs-app-default" becomes "logs_app_default" and "Checkout-API"
// becomes "checkout_api". It fails, with an error wrapping
// ErrInvalidStream, when the result is no valid stream name
// (ValidateStream): empty, longer than 64 bytes, not starting with a
// letter ("2024-logs", "_internal", ".ds-logs") or reserved ("logs",
// "main"). Callers then use their default stream or refuse the name.
func StreamNameFrom(name string) (string, error) {
	if len(name) > maxStreamNameInput {
		return "", fmt.Errorf("%w: %d bytes, more than the 64 a stream name may have", ErrInvalidStream, len(name))
	}
	b := make([]byte, 0, len(name))
	for i := 0; i < len(name); {
		c, size := name[i], 1
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		default:
			if c >= utf8.RuneSelf {
				_, size = utf8.DecodeRuneInString(name[i:])
			}
			c = '_'
		}
		b = append(b, c)
		i += size
	}
	s := string(b)
	if err := ValidateStream(s); err != nil {
		return "", fmt.Errorf("%q becomes %w", name, err)
	}
	return s, nil
}

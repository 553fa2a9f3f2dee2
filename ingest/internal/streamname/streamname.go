// Package streamname turns the names other systems give their log
// destinations (Elasticsearch indices and data streams, syslog app-names)
// into weir stream names.
package streamname

import (
	"fmt"

	"github.com/weirlabs/weir/internal/record"
)

// maxInput bounds the names From looks at; longer ones cannot make a
// valid stream name of at most 64 bytes anyway.
const maxInput = 255

// From returns name as a weir stream name: upper-case ASCII letters
// become lower-case and every byte outside [a-z0-9_] becomes '_', so
// "logs-app-default" becomes "logs_app_default" and "App.Web" becomes
// "app_web". It fails, with an error wrapping record.ErrInvalidStream,
// when the result is not a valid stream name (record.ValidateStream):
// empty, longer than 64 bytes, not starting with a letter (".ds-logs",
// "_internal", "2024-logs") or reserved ("logs").
func From(name string) (string, error) {
	if len(name) > maxInput {
		return "", fmt.Errorf("%w: %d bytes, more than the 64 a stream name may have", record.ErrInvalidStream, len(name))
	}
	b := make([]byte, len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		default:
			c = '_'
		}
		b[i] = c
	}
	s := string(b)
	if err := record.ValidateStream(s); err != nil {
		return "", fmt.Errorf("%q becomes %w", name, err)
	}
	return s, nil
}

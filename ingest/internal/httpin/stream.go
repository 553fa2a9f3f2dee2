package httpin

import (
	"github.com/weirlabs/weir/internal/record"
)

// StreamName turns a value a shipper sent (a Loki label, a Splunk index,
// a VictoriaLogs stream field) into a stream name: ASCII letters are
// lowered, every other byte that is not a digit or "_" becomes "_", a
// name that does not start with a letter gets the prefix "s", and the
// result is cut to 64 bytes. It returns "" when the value is empty or
// the result is still not a valid stream name (a reserved name such as
// main or logs), for the caller to use its default stream.
func StreamName(v string) string {
	if v == "" {
		return ""
	}
	b := make([]byte, 0, min(len(v)+1, 64))
	if c := v[0] | 0x20; c < 'a' || c > 'z' {
		b = append(b, 's')
	}
	for i := 0; i < len(v) && len(b) < 64; i++ {
		c := v[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		default:
			c = '_'
		}
		b = append(b, c)
	}
	name := string(b)
	if record.ValidateStream(name) != nil {
		return ""
	}
	return name
}

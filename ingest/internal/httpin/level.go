package httpin

import (
	"net/http"

	"github.com/weirlabs/weir/buffer"
)

// AckLevelHeader names the acknowledgement level a plain-HTTP push asks
// for: accepted, durable or committed; without it the server's default
// applies.
const AckLevelHeader = "Weir-Ack-Level"

// LevelParser reads the name of an acknowledgement level;
// (*ingest.Service).ParseLevel is one.
type LevelParser func(name string) (buffer.Level, error)

// AckLevel returns the level the request asks for in its Weir-Ack-Level
// header or, when arg is not "", in that query argument (the header wins).
func AckLevel(r *http.Request, arg string, parse LevelParser) (buffer.Level, error) {
	name := r.Header.Get(AckLevelHeader)
	if name == "" && arg != "" {
		name = r.URL.Query().Get(arg)
	}
	return parse(name)
}

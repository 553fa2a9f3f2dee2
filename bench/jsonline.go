package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/weirlabs/weir/internal/jsonstr"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// JSONLineContentType is the media type of the JSON-lines bodies sent to
// a peer. VictoriaLogs' /insert/jsonline needs it (a form content type
// makes it store nothing); others accept any JSON-lines type.
const JSONLineContentType = "application/stream+json"

// metricsURL is where a server's Prometheus metrics are: /metrics at the
// root of server's scheme and host (a peer's Server is its ingest URL).
func metricsURL(server string) string { return rootURL(server) + "/metrics" }

// rootURL returns the scheme and host of server, or server itself when it
// does not parse.
func rootURL(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return server
	}
	return u.Scheme + "://" + u.Host
}

// appendJSONLine appends rec as one JSON object and a newline, in the
// field names log stores expect from JSON lines: _time (RFC 3339), _msg,
// level, service.name and the attributes flattened. A record without a
// timestamp gets now.
func appendJSONLine(dst []byte, rec *weirv1.LogRecord, now time.Time) []byte {
	ts := now
	if n := rec.GetTimeUnixNano(); n > 0 {
		ts = time.Unix(0, int64(n))
	}
	dst = append(dst, `{"_time":"`...)
	dst = ts.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","_msg":`...)
	dst = jsonstr.Append(dst, rec.GetBody())
	if s := rec.GetSeverityText(); s != "" {
		dst = append(dst, `,"level":`...)
		dst = jsonstr.Append(dst, s)
	}
	for _, kvs := range [][]*weirv1.KeyValue{rec.GetResource(), rec.GetAttributes()} {
		for _, kv := range kvs {
			dst = append(dst, ',')
			dst = jsonstr.Append(dst, kv.GetKey())
			dst = append(dst, ':')
			dst = jsonstr.Append(dst, anyText(kv.GetValue()))
		}
	}
	return append(dst, "}\n"...)
}

// anyText renders an attribute value as text.
func anyText(v *weirv1.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *weirv1.AnyValue_StringValue:
		return x.StringValue
	case *weirv1.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *weirv1.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *weirv1.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	}
	return ""
}

// runJSONLines posts one batch at a time as JSON lines to the peer's
// ingest URL (see postBatches).
func (w *worker) runJSONLines(sendCtx, hardCtx context.Context) {
	w.postBatches(sendCtx, hardCtx, w.r.cfg.Server, JSONLineContentType, func(dst []byte, b batch) ([]byte, error) {
		now := time.Now()
		for _, rec := range b.recs {
			dst = appendJSONLine(dst, rec, now)
		}
		return dst, nil
	})
}

// postBatches posts one batch at a time, encoded by encode, to url until
// sendCtx ends; a request still in flight then has until hardCtx ends. A
// 2xx answer acknowledges the batch. weir takes the stream and the ack
// level from the Weir-Stream and Weir-Ack-Level headers; peers ignore
// them.
func (w *worker) postBatches(sendCtx, hardCtx context.Context, url, contentType string, encode func(dst []byte, b batch) ([]byte, error)) {
	defer w.done()
	var body []byte
	for {
		b, ok := w.nextBatch(sendCtx)
		if !ok {
			return
		}
		var err error
		if body, err = encode(body[:0], b); err != nil {
			w.r.addError(codeEncode, 1)
			return
		}
		req, err := http.NewRequestWithContext(hardCtx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			w.r.addError("request", 1)
			return
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Weir-Stream", w.r.cfg.Stream)
		req.Header.Set("Weir-Ack-Level", w.r.cfg.AckLevel)
		b.sent = time.Now()
		resp, err := w.r.hc.Do(req)
		switch {
		case err != nil && hardCtx.Err() != nil:
			w.r.addError(codeUnacknowledged, 1)
			return
		case err != nil:
			w.r.addError("unavailable", 1)
			sleep(sendCtx, errorBackoff)
			continue
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			w.r.addError(fmt.Sprintf("http_%d", resp.StatusCode), 1)
			sleep(sendCtx, errorBackoff)
			continue
		}
		w.acked(b, time.Now())
	}
}

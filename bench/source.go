package bench

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// syntheticRecords is the size of the synthetic pool; workers cycle through
// it, so bodies repeat only every 16 Ki records.
const syntheticRecords = 16 << 10

// maxSourceRecords bounds the records read from files.
const maxSourceRecords = 1 << 20

// loadSource returns the records the workers cycle through. The records
// are shared and must not be modified.
func loadSource(src string) ([]*weirv1.LogRecord, error) {
	if src == "synthetic" {
		return synthetic(rand.New(rand.NewPCG(1, 2)), syntheticRecords), nil
	}
	files, err := filepath.Glob(src)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("source %q: no files match", src)
	}
	var out []*weirv1.LogRecord
	for _, name := range files {
		recs, err := fileRecords(name, maxSourceRecords-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("source %q: no lines", src)
	}
	return out, nil
}

// fileRecords reads up to max non-empty lines of a file as records shaped
// like the Loghub-derived set of the performance reference points
// (bench/RESULTS.md): the raw line as body, service = the file's name plus
// one of seven suffixes, severity 80 % INFO, 10 % WARN, 10 % ERROR, and a
// random trace id on every tenth record. The choices are seeded by the
// file's name, so a source gives the same records on every run.
func fileRecords(name string, max int) ([]*weirv1.LogRecord, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	defer f.Close()
	system := strings.ToLower(strings.TrimSuffix(filepath.Base(name), filepath.Ext(name)))
	resources := make([][]*weirv1.KeyValue, len(serviceSuffixes))
	for i, suffix := range serviceSuffixes {
		resources[i] = []*weirv1.KeyValue{stringKV("service.name", system+"-"+suffix)}
	}
	h := fnv.New64a()
	h.Write([]byte(system))
	r := rand.New(rand.NewPCG(h.Sum64(), 3))
	var out []*weirv1.LogRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for len(out) < max && sc.Scan() {
		line := strings.ToValidUTF8(strings.TrimRight(sc.Text(), "\r"), "\uFFFD")
		if line == "" {
			continue
		}
		rec := &weirv1.LogRecord{Body: line, SeverityText: "INFO", Resource: resources[r.IntN(len(resources))]}
		switch r.IntN(10) {
		case 0:
			rec.SeverityText = "WARN"
		case 1:
			rec.SeverityText = "ERROR"
		}
		if len(out)%10 == 9 {
			rec.TraceId = make([]byte, 16)
			for j := range rec.TraceId {
				rec.TraceId[j] = byte(r.IntN(256))
			}
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	return out, nil
}

// serviceSuffixes make seven services of each source file.
var serviceSuffixes = []string{"api", "worker", "scheduler", "db", "cache", "gateway", "auth"}

var services = []string{"checkout", "payments", "inventory", "auth", "search", "gateway", "notifications"}

// templates are filled with ids, addresses and numbers; with the fixed
// prefixes they give bodies of about 150 to 260 bytes.
var templates = []func(r *rand.Rand) string{
	func(r *rand.Rand) string {
		return fmt.Sprintf("request completed method=%s path=/api/v2/orders/%d/items status=%d duration_ms=%d client_ip=%s user_agent=\"Mozilla/5.0 (X11; Linux x86_64)\" request_id=%s",
			pick(r, "GET", "POST", "PUT", "DELETE"), r.IntN(1e7), pick(r, 200, 200, 200, 201, 204, 404, 500), r.IntN(2000), ip(r), hexID(r, 16))
	},
	func(r *rand.Rand) string {
		return fmt.Sprintf("payment authorised order_id=ord_%d customer_id=cus_%s amount=%d.%02d currency=%s provider=%s latency_ms=%d attempt=%d",
			r.IntN(1e9), hexID(r, 12), r.IntN(5000), r.IntN(100), pick(r, "EUR", "USD", "GBP"), pick(r, "stripe", "adyen", "paypal"), r.IntN(900), 1+r.IntN(3))
	},
	func(r *rand.Rand) string {
		return fmt.Sprintf("cache miss for key=inventory:sku:%d:warehouse:%d, loading from primary db host=db-%d.internal:5432 rows=%d took %d.%03dms pool_in_use=%d/64",
			r.IntN(1e6), r.IntN(40), r.IntN(8), r.IntN(500), r.IntN(80), r.IntN(1000), r.IntN(64))
	},
	func(r *rand.Rand) string {
		return fmt.Sprintf("user login session=%s user_id=%d from %s mfa=%t region=%s tenant=acme-%d previous_login=%d seconds ago",
			hexID(r, 16), r.IntN(1e6), ip(r), r.IntN(2) == 0, pick(r, "eu-west-1", "us-east-1", "ap-south-1"), r.IntN(300), r.IntN(1e6))
	},
	func(r *rand.Rand) string {
		return fmt.Sprintf("upstream connect error or disconnect/reset before headers. reset reason: connection timeout upstream=%s:%d cluster=outbound|8080||svc-%d.default.svc.cluster.local retries=%d",
			ip(r), 8000+r.IntN(100), r.IntN(50), r.IntN(5))
	},
	func(r *rand.Rand) string {
		return fmt.Sprintf("query executed index=products-%d shard=%d took=%dms hits=%d query=\"%s\" page=%d size=%d trace=%s",
			r.IntN(12), r.IntN(32), r.IntN(400), r.IntN(1e5), pick(r, "red running shoes", "usb-c cable 2m", "coffee grinder", "winter jacket"), r.IntN(20), pick(r, 20, 50, 100), hexID(r, 8))
	},
	func(r *rand.Rand) string {
		return fmt.Sprintf("message delivered channel=%s template=%s recipient_hash=%s queue_depth=%d delivery_ms=%d worker=notif-worker-%d batch=%d",
			pick(r, "email", "sms", "push"), pick(r, "order_shipped", "password_reset", "weekly_digest"), hexID(r, 20), r.IntN(10000), r.IntN(3000), r.IntN(16), r.IntN(1e5))
	},
}

// synthetic generates n records: bodies from templates, 7 services,
// severity 80 % INFO, 10 % WARN, 10 % ERROR, a trace id on every tenth.
func synthetic(r *rand.Rand, n int) []*weirv1.LogRecord {
	resources := make([][]*weirv1.KeyValue, len(services))
	for i, s := range services {
		resources[i] = []*weirv1.KeyValue{stringKV("service.name", s), stringKV("host.name", fmt.Sprintf("%s-%d", s, i))}
	}
	out := make([]*weirv1.LogRecord, n)
	for i := range out {
		t := r.IntN(len(templates))
		rec := &weirv1.LogRecord{
			Body:         templates[t](r),
			SeverityText: "INFO",
			Resource:     resources[t],
			Attributes:   []*weirv1.KeyValue{stringKV("thread.id", fmt.Sprint(r.IntN(64)))},
		}
		switch p := r.IntN(10); {
		case p == 0:
			rec.SeverityText = "WARN"
		case p == 1:
			rec.SeverityText = "ERROR"
		}
		if i%10 == 0 {
			rec.TraceId = make([]byte, 16)
			for j := range rec.TraceId {
				rec.TraceId[j] = byte(r.IntN(256))
			}
		}
		out[i] = rec
	}
	return out
}

func pick[T any](r *rand.Rand, vs ...T) T { return vs[r.IntN(len(vs))] }

func ip(r *rand.Rand) string {
	return fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), 1+r.IntN(254))
}

func hexID(r *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[r.IntN(16)]
	}
	return string(b)
}

func stringKV(k, v string) *weirv1.KeyValue {
	return &weirv1.KeyValue{Key: k, Value: &weirv1.AnyValue{Value: &weirv1.AnyValue_StringValue{StringValue: v}}}
}

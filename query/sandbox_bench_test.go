package query

import (
	"context"
	"testing"
)

// BenchmarkVet measures what checking user SQL adds to every query:
// DuckDB parses the statement once more to serialize its tree, and the
// tree is walked (see sandbox.go). The statements are the dashboard
// queries of weir bench --queries.
func BenchmarkVet(b *testing.B) {
	e := openEngine(b, b.TempDir())
	c, err := e.catalog("")
	if err != nil {
		b.Fatal(err)
	}
	conn, err := c.db.Conn(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []struct{ name, sql string }{
		{"histogram", `SELECT (epoch_ms("timestamp") // 60000) * 60000 AS t, severity_text, count(*) AS n FROM logs WHERE stream = 'app' GROUP BY ALL ORDER BY t, severity_text`},
		{"search", `SELECT "timestamp", service_name, body FROM logs WHERE stream = 'app' AND body LIKE '%Exception%' ORDER BY "timestamp" DESC LIMIT 100`},
		{"explain_analyze", `EXPLAIN ANALYZE SELECT service_name, count(*) AS n FROM logs WHERE stream = 'app' GROUP BY 1 ORDER BY n DESC LIMIT 10`},
	} {
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := vet(context.Background(), conn, q.sql, 1000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

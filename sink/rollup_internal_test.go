package sink

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestRollupCountsIn: the counts of an encoded rollup are counted without
// decoding it, also when services, severities, pattern ids and bodies
// hold the text of the key that marks a count.
func TestRollupCountsIn(t *testing.T) {
	for _, n := range []int{0, 1, 7, 500} {
		r := newRollup()
		for i := range n {
			k := rollupKey{minute: int64(i) * 60_000, service: fmt.Sprintf(`svc "m":%d`, i%3), sevNum: 9, sevText: `"m":`}
			if i%2 == 0 {
				k.pattern, k.hasPattern = `{"m":1}`, true
			}
			r.counts[k] = int64(i + 1)
			r.bodies[fmt.Sprintf(`body "m": %d`, i)] = 1
			r.rows += int64(i + 1)
		}
		v, err := r.encode()
		if err != nil {
			t.Fatal(err)
		}
		var doc rollupDoc
		if err := json.Unmarshal([]byte(v), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Counts) != n {
			t.Fatalf("%d counts encoded, want %d", len(doc.Counts), n)
		}
		if got := rollupCountsIn(v); got != n {
			t.Errorf("rollupCountsIn = %d, want %d", got, n)
		}
	}
}

package sink

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestRollupCountsIn: the counts of an encoded rollup are counted without
// decoding it, also when services, severities, pattern ids and bodies
// hold the text of the keys that mark counts, and so are those of a
// version 1 rollup.
func TestRollupCountsIn(t *testing.T) {
	for _, n := range []int{0, 1, 7, 500} {
		r := newRollup()
		for i := range n {
			k := rollupKey{minute: int64(i) * 60_000, service: fmt.Sprintf(`svc "n":[%d,`, i%3), sevNum: 9, sevText: `"n":[`}
			if i%2 == 0 {
				k.pattern, k.hasPattern = `{"n":[1]}`, true
			}
			r.counts[k] = int64(i + 1)
			r.bodies[fmt.Sprintf(`body "n":[ %d,`, i)] = 1
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
		if doc.Version != 2 || len(doc.N) != n || len(doc.Minutes) != n || len(doc.Service) != n {
			t.Fatalf("version %d, %d counts (%d minutes, %d services) encoded, want version 2 and %d", doc.Version, len(doc.N), len(doc.Minutes), len(doc.Service), n)
		}
		if got := rollupCountsIn(v); got != n {
			t.Errorf("rollupCountsIn = %d, want %d", got, n)
		}
	}
	v1 := `{"v":1,"rows":3,"counts":[{"m":60000,"s":"\"m\":","sn":9,"st":"INFO","p":null,"n":2},{"m":120000,"s":"b","sn":9,"st":"INFO","p":"x","n":1}],"bodies":[{"b":"\"m\":","n":1}],"bodies_exact":true}`
	if got := rollupCountsIn(v1); got != 2 {
		t.Errorf("rollupCountsIn of a version 1 rollup = %d, want 2", got)
	}
}

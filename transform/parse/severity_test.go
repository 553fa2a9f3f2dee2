package parse_test

import (
	"testing"

	"github.com/weirlabs/weir/transform/parse"
)

func TestSeverity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		num  int32
		text string
	}{
		{"info", 9, "INFO"},
		{" INFO ", 9, "INFO"},
		{"Warning", 13, "WARN"},
		{"warn3", 15, "WARN3"},
		{"err", 17, "ERROR"},
		{"[error]", 17, "ERROR"},
		{"<notice>", 9, "INFO"},
		{"(debug)", 5, "DEBUG"},
		{"FATAL:", 21, "FATAL"},
		{"crit", 21, "FATAL"},
		{"0", 21, "FATAL"},
		{"1", 21, "FATAL"},
		{"2", 21, "FATAL"},
		{"3", 17, "ERROR"},
		{"4", 13, "WARN"},
		{"5", 9, "INFO"},
		{"6", 9, "INFO"},
		{"7", 5, "DEBUG"},
		{"8", 0, ""},
		{"10", 0, ""},
		{"t", 1, "TRACE"},
		{"V", 1, "TRACE"},
		{"d", 5, "DEBUG"},
		{"I", 9, "INFO"},
		{"N", 9, "INFO"},
		{"w", 13, "WARN"},
		{"E", 17, "ERROR"},
		{"C", 21, "FATAL"},
		{"A", 21, "FATAL"},
		{"F", 21, "FATAL"},
		{"x", 0, ""},
		{"", 0, ""},
		{"[]", 0, ""},
		{"verylongleveltextthatisnotknown", 0, ""},
	} {
		num, text := parse.Severity(tc.in)
		if num != tc.num || text != tc.text {
			t.Errorf("Severity(%q) = %d, %q; want %d, %q", tc.in, num, text, tc.num, tc.text)
		}
	}
}

// TestSeverityAllocs is not parallel: AllocsPerRun needs the process to
// itself.
func TestSeverityAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { parse.Severity("info") }); n != 0 {
		t.Errorf("Severity allocates %v times", n)
	}
}

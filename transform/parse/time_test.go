package parse_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weirlabs/weir/transform/parse"
)

func TestTimeParserAuto(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 3, 15, 12, 0, 0, 0, time.UTC)
	p, err := parse.NewTimeParser(parse.TimeConfig{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	berlin := time.FixedZone("", 3600)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2024-03-01T10:00:00Z", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"2024-03-01T10:00:00.123456789+01:00", time.Date(2024, 3, 1, 10, 0, 0, 123456789, berlin)},
		{"2024-03-01T10:00:00,5Z", time.Date(2024, 3, 1, 10, 0, 0, 5e8, time.UTC)},
		{"2024-03-01T10:00:00", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"2024-03-01 10:00:00+01:00", time.Date(2024, 3, 1, 10, 0, 0, 0, berlin)},
		{"2015-07-29 17:41:44,747", time.Date(2015, 7, 29, 17, 41, 44, 747e6, time.UTC)},
		{"2015-07-29 17:41:44.747123", time.Date(2015, 7, 29, 17, 41, 44, 747123e3, time.UTC)},
		{" 2015-07-29 17:41:44 ", time.Date(2015, 7, 29, 17, 41, 44, 0, time.UTC)},
		{"2015/07/29 17:41:44", time.Date(2015, 7, 29, 17, 41, 44, 0, time.UTC)},
		{"Mar  1 10:00:00", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"Mar 01 10:00:00.25", time.Date(2024, 3, 1, 10, 0, 0, 25e7, time.UTC)},
		{"Feb  5 2021 17:32:18", time.Date(2021, 2, 5, 17, 32, 18, 0, time.UTC)},
		// More than 24 h after now: last year.
		{"Dec 31 23:59:59", time.Date(2023, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"Mar 16 11:59:59", time.Date(2024, 3, 16, 11, 59, 59, 0, time.UTC)},
		{"Mar 16 12:00:01", time.Date(2023, 3, 16, 12, 0, 1, 0, time.UTC)},
		{"10/Oct/2000:13:55:36 -0700", time.Date(2000, 10, 10, 13, 55, 36, 0, time.FixedZone("", -7*3600))},
		{"Sun Dec 04 04:47:44 2005", time.Date(2005, 12, 4, 4, 47, 44, 0, time.UTC)},
		{"Mon, 02 Jan 2006 15:04:05 -0700", time.Date(2006, 1, 2, 15, 4, 5, 0, time.FixedZone("", -7*3600))},
		{"1700000000", time.Unix(1700000000, 0)},
		{"1700000000.5", time.Unix(1700000000, 5e8)},
		{"1700000000123", time.Unix(1700000000, 123e6)},
		{"1700000000123.4567", time.Unix(1700000000, 123456700)},
		{"1700000000123456", time.Unix(1700000000, 123456e3)},
		{"1700000000123456789", time.Unix(1700000000, 123456789)},
		{"0", time.Unix(0, 0)},
	} {
		got, err := p.Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if want := tc.want.UnixNano(); got != want {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, time.Unix(0, got).UTC(), tc.want.UTC())
		}
	}
	for _, in := range []string{"", "yesterday", "2024-13-01T00:00:00Z", "Feb 30 10:00:00", "17000000001234567890",
		"1.", ".5", "12a", "9999-01-01T00:00:00Z", "1500-01-01T00:00:00Z"} {
		if ns, err := p.Parse(in); !errors.Is(err, parse.ErrTimestamp) {
			t.Errorf("Parse(%q) = %d, %v; want ErrTimestamp", in, ns, err)
		}
	}
}

func TestTimeParserLayouts(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		ny = time.FixedZone("EST", -5*3600) // no tzdata: a fixed stand-in
	}
	for _, tc := range []struct {
		layouts []string
		loc     *time.Location
		in      string
		want    time.Time
	}{
		{[]string{"rfc3339"}, nil, "2024-03-01T10:00:00.5Z", time.Date(2024, 3, 1, 10, 0, 0, 5e8, time.UTC)},
		{[]string{"rfc3339nano"}, nil, "2024-03-01T10:00:00.000000001Z", time.Date(2024, 3, 1, 10, 0, 0, 1, time.UTC)},
		{[]string{"rfc3164"}, nil, "Mar  1 10:00:00", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)},
		{[]string{"common_log"}, nil, "01/Mar/2024:10:00:00 +0000", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)},
		{[]string{"unix"}, nil, "1700000000.123", time.Unix(1700000000, 123e6)},
		{[]string{"unix_ms"}, nil, "1700000000.5", time.Unix(1700000, 5e5)},
		{[]string{"unix_us"}, nil, "1700000000", time.Unix(1700, 0)},
		{[]string{"unix_ns"}, nil, "1700000000", time.Unix(1, 7e8)},
		{[]string{"2006-01-02 15:04:05,000"}, nil, "2015-07-29 17:41:44,747", time.Date(2015, 7, 29, 17, 41, 44, 747e6, time.UTC)},
		{[]string{"2006-01-02 15:04:05"}, ny, "2024-07-01 12:00:00", time.Date(2024, 7, 1, 12, 0, 0, 0, ny)},
		{[]string{"060102 150405"}, nil, "081109 203615", time.Date(2008, 11, 9, 20, 36, 15, 0, time.UTC)},
		{[]string{"unix", "rfc3339"}, nil, "2024-03-01T10:00:00Z", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)},
	} {
		p, err := parse.NewTimeParser(parse.TimeConfig{Layouts: tc.layouts, Location: tc.loc,
			Now: func() time.Time { return time.Date(2024, 3, 15, 0, 0, 0, 0, time.UTC) }})
		if err != nil {
			t.Fatalf("%v: %v", tc.layouts, err)
		}
		got, err := p.Parse(tc.in)
		if err != nil {
			t.Errorf("%v: Parse(%q): %v", tc.layouts, tc.in, err)
			continue
		}
		if want := tc.want.UnixNano(); got != want {
			t.Errorf("%v: Parse(%q) = %v, want %v", tc.layouts, tc.in, time.Unix(0, got).UTC(), tc.want.UTC())
		}
	}
	// A layout only matches its own form.
	p, err := parse.NewTimeParser(parse.TimeConfig{Layouts: []string{"unix"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse("2024-03-01T10:00:00Z"); !errors.Is(err, parse.ErrTimestamp) {
		t.Errorf("unix layout parsed RFC 3339: %v", err)
	}
	for _, bad := range []string{"foo", "", "unixx"} {
		if _, err := parse.NewTimeParser(parse.TimeConfig{Layouts: []string{bad}}); !errors.Is(err, parse.ErrLayout) {
			t.Errorf("layout %q: %v, want ErrLayout", bad, err)
		}
	}
}

// TestTimeParserConcurrent switches the remembered layout from many
// goroutines; with -race it checks the cache.
func TestTimeParserConcurrent(t *testing.T) {
	t.Parallel()
	p, err := parse.NewTimeParser(parse.TimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string]int64{
		"2024-03-01T10:00:00Z":       time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano(),
		"01/Mar/2024:10:00:00 +0000": time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano(),
		"1709287200":                 time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano(),
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			for i := 0; i < 300; i++ {
				for in, want := range inputs {
					if got, err := p.Parse(in); err != nil || got != want {
						t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestDeleteEndToEnd deletes one user's records from a stream with weir
// delete: a dry run counts them and changes nothing, the delete removes
// them from SQL, including those still in open files when it started,
// other records stay, and a restart brings none back.
func TestDeleteEndToEnd(t *testing.T) {
	data := t.TempDir()
	mutate := func(c *config) { c.Sink.MaxFileAge = time.Hour } // records stay in open files until the delete publishes them
	s := startServer(t, data, mutate)
	ingest, _ := newClients(s.url)
	h0 := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Hour)
	const perHour = 40
	for h := range 3 {
		recs := make([]*weirv1.LogRecord, perHour)
		for i := range recs {
			user := 7
			if i%5 == 0 {
				user = 42
			}
			recs[i] = textRecord(fmt.Sprintf("hour %d line %d user=%d", h, i, user))
			recs[i].TimeUnixNano = uint64(h0.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second).UnixNano())
		}
		if _, err := ingest.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: recs})); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 3*perHour)
	from, to := h0.Format(time.RFC3339), h0.Add(2*time.Hour).Format(time.RFC3339) // hours 0 and 1 only
	deleteArgs := func(url string) []string {
		return []string{"delete", "--server", url, "--stream", "app", "--from", from, "--to", to, "--where", "body LIKE '%user=42'"}
	}
	args := deleteArgs(s.url)

	out, err := runWeir(t, append(args, "--dry-run")...)
	if err != nil || !strings.Contains(out, "dry run: 16 records in 2 hours") {
		t.Fatalf("dry run: %v %s", err, out)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app WHERE body LIKE '%user=42'", 24)

	out, err = runWeir(t, args...)
	if err != nil || !strings.Contains(out, "deleted 16 of 16 matching records") {
		t.Fatalf("delete: %v %s", err, out)
	}
	check := func() {
		t.Helper()
		got := countBy(t, s.url, "SELECT body LIKE '%user=42' AS u, count(*) FROM app GROUP BY 1")
		if got["true"] != 8 || got["false"] != 3*perHour-24 {
			t.Errorf("after the delete: %v; want the 8 user=42 records of hour 2 and all %d others", got, 3*perHour-24)
		}
	}
	check() // the delete returns once queries no longer see the records

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, mutate)
	waitReady(t, s.url)
	check()

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--where", "true) UNION SELECT * FROM app WHERE (true"}, "predicate"},
		{[]string{"--where", " "}, "required"},
		{[]string{"--stream", "nope"}, "not_found"},
	} {
		a := append(deleteArgs(s.url), c.args...)
		out, err := runWeir(t, a...)
		if err == nil || !strings.Contains(err.Error()+out, c.want) {
			t.Errorf("weir %v: %v %s; want an error saying %q", c.args, err, out, c.want)
		}
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", int64(3*perHour-16))
}

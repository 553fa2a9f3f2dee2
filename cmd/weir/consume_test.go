package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/weirlabs/weir/internal/auth"
	"github.com/weirlabs/weir/internal/record"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// consumed is what a test subscriber received.
type consumed struct {
	recs  []*weirv1.ConsumedRecord
	parts []int32 // the partitions last reported
}

// subscription is an open Subscribe call.
type subscription struct {
	t      *testing.T
	stream *connect.ServerStreamForClient[weirv1.SubscribeResponse]
	cancel context.CancelFunc
	got    consumed
}

// openSub calls Subscribe and waits for the first response, after which
// the subscription is registered.
func openSub(t *testing.T, c weirv1connect.SubscribeServiceClient, req *weirv1.SubscribeRequest) *subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	stream, err := c.Subscribe(ctx, connect.NewRequest(req))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &subscription{t: t, stream: stream, cancel: cancel}
	t.Cleanup(s.close)
	if !stream.Receive() {
		t.Fatalf("subscribe: no first response: %v", stream.Err())
	}
	if m := stream.Msg(); len(m.GetRecords()) != 0 {
		t.Fatalf("first response carries records: %v", m)
	}
	s.got.parts = stream.Msg().GetPartitions()
	return s
}

func (s *subscription) close() {
	s.cancel()
	s.stream.Close()
}

// until receives responses until done reports true.
func (s *subscription) until(what string, done func(*consumed) bool) {
	s.t.Helper()
	for !done(&s.got) {
		if !s.stream.Receive() {
			s.t.Fatalf("waiting for %s: subscription ended: %v (received %d records)", what, s.stream.Err(), len(s.got.recs))
		}
		m := s.stream.Msg()
		s.got.recs = append(s.got.recs, m.GetRecords()...)
		s.got.parts = m.GetPartitions()
	}
}

// atLeast waits for n records in all.
func (s *subscription) atLeast(n int) []*weirv1.ConsumedRecord {
	s.t.Helper()
	s.until(fmt.Sprintf("%d records", n), func(c *consumed) bool { return len(c.recs) >= n })
	return s.got.recs
}

func bodies(recs []*weirv1.ConsumedRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.GetRecord().GetBody()
	}
	return out
}

// checkOrder fails unless offsets strictly increase per partition and,
// with contiguous, each partition's offsets are consecutive from first.
func checkOrder(t *testing.T, recs []*weirv1.ConsumedRecord, first map[int32]int64, contiguous bool) {
	t.Helper()
	last := map[int32]int64{}
	for p, o := range first {
		last[p] = o - 1
	}
	for _, r := range recs {
		p, o := r.GetPartition(), r.GetOffset()
		prev, seen := last[p]
		switch {
		case seen && o <= prev:
			t.Fatalf("partition %d: offset %d after %d", p, o, prev)
		case contiguous && (seen && o != prev+1 || !seen && o != 0):
			t.Fatalf("partition %d: offset %d after %d: a gap", p, o, prev)
		}
		last[p] = o
	}
}

// services spread records over partitions (by the hash of service.name).
var services = []string{"api", "web", "db", "cache", "auth", "mail", "queue", "search"}

// mixed returns n records named prefix-i, of several services and
// severities: every third is an ERROR, which the buffer may deliver
// before the others of its batch.
func mixed(prefix string, n int) []*weirv1.LogRecord {
	out := make([]*weirv1.LogRecord, n)
	for i := range out {
		sev := weirv1.SeverityNumber_SEVERITY_NUMBER_INFO
		if i%3 == 1 {
			sev = weirv1.SeverityNumber_SEVERITY_NUMBER_ERROR
		}
		out[i] = tailRecord(fmt.Sprintf("%s-%d", prefix, i), services[i%len(services)], "", sev)
	}
	return out
}

func consumeServer(t *testing.T, partitions int, mutate func(*config)) (*testServer, weirv1connect.IngestServiceClient, weirv1connect.SubscribeServiceClient) {
	t.Helper()
	s := startServer(t, "", consumeConfig(partitions, mutate))
	ing, _ := newClients(s.url)
	return s, ing, weirv1connect.NewSubscribeServiceClient(newHTTPClient(), s.url)
}

// consumeConfig is consumeServer's configuration, for a restart.
func consumeConfig(partitions int, mutate func(*config)) func(*config) {
	return func(c *config) {
		fastCommit(c)
		c.Buffer.Partitions = partitions
		c.Consume.PollInterval = 20 * time.Millisecond
		if mutate != nil {
			mutate(c)
		}
	}
}

// TestConsumeReplayThenLive: a subscription from the earliest record gets
// exactly the records stored before it (published and only staged), then
// those pushed while it reads, each once, with consecutive offsets per
// partition although ERROR records become visible before the others.
func TestConsumeReplayThenLive(t *testing.T) {
	t.Parallel()
	_, ing, sc := consumeServer(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	committed, durable := weirv1.AckLevel_ACK_LEVEL_COMMITTED, weirv1.AckLevel_ACK_LEVEL_DURABLE
	push(t, ctx, ing, "app", committed, mixed("published", 30)...)
	push(t, ctx, ing, "app", durable, mixed("recent", 30)...)

	sub := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", MaxBatchRecords: 7})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Go(func() {
		for i := range 10 {
			lvl := durable
			if i%2 == 0 {
				lvl = weirv1.AckLevel_ACK_LEVEL_ACCEPTED
			}
			if _, err := ing.Push(ctx, connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: mixed(fmt.Sprintf("live%d", i), 12), AckLevel: lvl})); err != nil {
				errs <- err
				return
			}
		}
	})
	recs := sub.atLeast(60 + 120)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if len(recs) != 180 {
		t.Fatalf("received %d records, want 180", len(recs))
	}
	checkOrder(t, recs, nil, true)
	seen := map[string]bool{}
	for _, b := range bodies(recs) {
		if seen[b] {
			t.Fatalf("%s received twice", b)
		}
		seen[b] = true
	}
	for _, prefix := range []string{"published", "recent"} {
		for i := range 30 {
			if !seen[fmt.Sprintf("%s-%d", prefix, i)] {
				t.Errorf("%s-%d missing", prefix, i)
			}
		}
	}
	parts := map[int32]bool{}
	for _, r := range recs {
		parts[r.GetPartition()] = true
	}
	if len(parts) != 2 {
		t.Errorf("records in partitions %v, want both", parts)
	}
}

// TestConsumeStarts: from an offset, from the latest record, from a time,
// and with filters.
func TestConsumeStarts(t *testing.T) {
	t.Parallel()
	_, ing, sc := consumeServer(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := mixed("old", 12)
	for _, r := range old {
		r.TimeUnixNano = uint64(time.Now().Add(-time.Hour).UnixNano())
	}
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_COMMITTED, old...)
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_COMMITTED, mixed("new", 6)...)

	fromOffset := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app",
		Start: &weirv1.SubscribeRequest_Offsets{Offsets: &weirv1.PartitionOffsets{Offsets: []*weirv1.PartitionOffset{{Partition: 0, Offset: 10}}}}})
	latest := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Start: &weirv1.SubscribeRequest_Edge{Edge: weirv1.StartEdge_START_EDGE_LATEST}})
	since := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Start: &weirv1.SubscribeRequest_TimeUnixNano{TimeUnixNano: time.Now().Add(-time.Minute).UnixNano()}})
	filtered := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Service: "web",
		MinSeverityNumber: int32(weirv1.SeverityNumber_SEVERITY_NUMBER_ERROR)})
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_ACCEPTED, mixed("live", 12)...)

	got := fromOffset.atLeast(8 + 12)
	checkOrder(t, got, map[int32]int64{0: 10}, true)
	// Offsets follow the lanes (ERROR records first within a batch), so
	// offsets 10 and 11 are two of the old batch's records.
	if b := bodies(got); len(b) != 20 || !strings.HasPrefix(b[0], "old-") || !strings.HasPrefix(b[1], "old-") || !strings.HasPrefix(b[2], "new-") {
		t.Errorf("from offset 10: %q", b)
	}
	got = latest.atLeast(12)
	checkOrder(t, got, map[int32]int64{0: 18}, true)
	for _, b := range bodies(got) {
		if !strings.HasPrefix(b, "live-") {
			t.Errorf("from latest: %s", b)
		}
	}
	got = since.atLeast(18)
	checkOrder(t, got, map[int32]int64{0: 12}, true)
	if n := len(got); n != 18 || got[0].GetOffset() != 12 {
		t.Errorf("from a minute ago: %q", bodies(got))
	}
	// web is every eighth record from the second, ERROR every third from
	// the second: the second of each batch only.
	got = filtered.atLeast(3)
	if b := bodies(got); !slices.Equal(b, []string{"old-1", "new-1", "live-1"}) {
		t.Errorf("filtered: %q", b)
	}
	checkOrder(t, got, nil, false)
	// Nothing more arrives for the filtered subscription.
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_COMMITTED, tailRecord("marker", "web", "", weirv1.SeverityNumber_SEVERITY_NUMBER_FATAL))
	if b := bodies(filtered.atLeast(4)); len(b) != 4 || b[3] != "marker" {
		t.Errorf("filtered: %q", b)
	}

	// The dead-letter stream can be consumed like any other.
	openSub(t, sc, &weirv1.SubscribeRequest{Stream: "_dead_letter"})

	// Bad requests.
	for _, req := range []*weirv1.SubscribeRequest{
		{Stream: ""},
		{Stream: "app", Group: "bad/group"},
		{Stream: "app", MinSeverityNumber: 99},
		{Stream: "app", Start: &weirv1.SubscribeRequest_Offsets{Offsets: &weirv1.PartitionOffsets{Offsets: []*weirv1.PartitionOffset{{Partition: 0, Offset: -1}}}}},
	} {
		st, err := sc.Subscribe(ctx, connect.NewRequest(req))
		if err == nil {
			st.Receive()
			err = st.Err()
			st.Close()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%v: %v, want invalid_argument", req, err)
		}
	}
}

// TestConsumeTenants: each tenant consumes its own records; a key
// without the query role is refused; subscriptions are bounded per
// tenant.
func TestConsumeTenants(t *testing.T) {
	t.Parallel()
	acme := newTenantKey(t, "acme", "acme", auth.RoleIngest, auth.RoleQuery)
	globex := newTenantKey(t, "globex", "globex", auth.RoleIngest, auth.RoleQuery)
	shipper := newTenantKey(t, "shipper", "acme", auth.RoleIngest, auth.RoleTail)
	s := startServer(t, "", func(c *config) {
		fastCommit(c)
		c.Auth.Keys = []auth.Key{acme.key, globex.key, shipper.key}
		c.Consume.MaxTenantSubscriptions = 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range []tenantKey{acme, globex} {
		push(t, ctx, weirv1connect.NewIngestServiceClient(keyClient(k.token), s.url), "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed(k.key.Tenant, 5)...)
	}
	for _, k := range []tenantKey{acme, globex} {
		sc := weirv1connect.NewSubscribeServiceClient(keyClient(k.token), s.url)
		sub := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app"})
		got := sub.atLeast(5)
		for _, b := range bodies(got) {
			if !strings.HasPrefix(b, k.key.Tenant+"-") {
				t.Errorf("%s consumed %s", k.key.Tenant, b)
			}
		}
		if k.token == acme.token {
			// acme's second subscription is its last.
			openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app"})
			st, err := sc.Subscribe(ctx, connect.NewRequest(&weirv1.SubscribeRequest{Stream: "app"}))
			if err == nil {
				st.Receive()
				err = st.Err()
				st.Close()
			}
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("acme's third subscription: %v, want resource_exhausted", err)
			}
		}
	}
	sc := weirv1connect.NewSubscribeServiceClient(keyClient(shipper.token), s.url)
	st, err := sc.Subscribe(ctx, connect.NewRequest(&weirv1.SubscribeRequest{Stream: "app"}))
	if err == nil {
		st.Receive()
		err = st.Err()
		st.Close()
	}
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a key without the query role: %v, want permission_denied", err)
	}
	_, err = sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: "g"}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("commit without the query role: %v, want permission_denied", err)
	}
}

// TestConsumeGroups: two members of a group split two partitions and a
// third waits; when a member's stream ends, its partitions go on from
// the group's committed offsets, redelivering (and flagging) what it had
// received but not committed; another group gets every record; the
// offsets survive a restart.
func TestConsumeGroups(t *testing.T) {
	t.Parallel()
	s, ing, sc := consumeServer(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := &weirv1.SubscribeRequest{Stream: "app", Group: "g"}
	a := openSub(t, sc, req)
	if !slices.Equal(a.got.parts, []int32{0, 1}) {
		t.Fatalf("the first member owns %v, want both partitions", a.got.parts)
	}
	b := openSub(t, sc, req)
	owns := func(want ...int32) func(*consumed) bool {
		return func(c *consumed) bool { return slices.Equal(c.parts, want) }
	}
	a.until("a to give up partition 1", owns(0))
	b.until("b to take partition 1", owns(1))
	c := openSub(t, sc, req)
	if len(c.got.parts) != 0 {
		t.Fatalf("a third member owns %v, want none (standby)", c.got.parts)
	}
	other := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "h"})

	const n = 64
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("r", n)...)
	perPart := map[int32]int{}
	all := other.atLeast(n)
	for _, r := range all {
		perPart[r.GetPartition()]++
	}
	checkOrder(t, all, nil, true)
	if len(perPart) != 2 {
		t.Fatalf("records in partitions %v, want both", perPart)
	}
	gotA := a.atLeast(perPart[0])
	gotB := b.atLeast(perPart[1])
	for _, r := range gotA {
		if r.GetPartition() != 0 || r.GetRedelivered() {
			t.Fatalf("a received %d:%d (redelivered %v)", r.GetPartition(), r.GetOffset(), r.GetRedelivered())
		}
	}
	for _, r := range gotB {
		if r.GetPartition() != 1 {
			t.Fatalf("b received partition %d", r.GetPartition())
		}
	}
	// a commits half of what it received, then its stream ends.
	half := int64(perPart[0] / 2)
	if _, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: "g",
		Offsets: []*weirv1.PartitionOffset{{Partition: 0, Offset: half}}})); err != nil {
		t.Fatal(err)
	}
	a.close()
	// b and c share the partitions now, in the order they joined: b
	// takes partition 0 and c partition 1, both from what the group
	// committed (partition 1: nothing, so from the earliest record).
	b.until("b to own partition 0", owns(0))
	c.until("c to own partition 1", owns(1))
	resumed := func(m *subscription, from int, p int32, want int64, n int) int {
		t.Helper()
		m.until(fmt.Sprintf("partition %d from %d", p, want), func(c *consumed) bool {
			k := 0
			for _, r := range c.recs[from:] {
				if r.GetPartition() == p {
					k++
				}
			}
			return k >= n
		})
		red := 0
		for _, r := range m.got.recs[from:] {
			if r.GetPartition() != p {
				t.Fatalf("partition %d: received %d:%d", p, r.GetPartition(), r.GetOffset())
			}
			if r.GetOffset() != want {
				t.Fatalf("partition %d: resumed at %d, want %d", p, r.GetOffset(), want)
			}
			want++
			if r.GetRedelivered() {
				red++
			}
		}
		return red
	}
	red0 := resumed(b, len(gotB), 0, half, perPart[0]-int(half))
	red1 := resumed(c, 0, 1, 0, perPart[1])
	if red0 != perPart[0]-int(half) || red1 != perPart[1] {
		t.Errorf("redelivered %d and %d, want %d and %d", red0, red1, perPart[0]-int(half), perPart[1])
	}
	_, _, metrics := get(t, s.url+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`weir_consumer_group_lag_records{group="g",partition="0",stream="app",tenant="default"} %d`, int64(perPart[0])-half),
		fmt.Sprintf("weir_consumer_redelivered_records_total %d", red0+red1),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if _, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: "g"})); err != nil {
		t.Errorf("an empty commit: %v", err)
	}
	if _, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a commit without a group: %v", err)
	}
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

// TestConsumeCommand: weir consume prints records as JSON lines, commits
// them with --group, and a second run of the group resumes after them.
func TestConsumeCommand(t *testing.T) {
	t.Parallel()
	s, ing, _ := consumeServer(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("first", 5)...)
	run := func(args ...string) []consumeLine {
		t.Helper()
		var out, errOut strings.Builder
		if err := run(ctx, append([]string{"consume", "--server", s.url, "--stream", "app", "--format", "json"}, args...), strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("weir consume %q: %v\n%s", args, err, errOut.String())
		}
		var lines []consumeLine
		for l := range strings.Lines(out.String()) {
			var cl consumeLine
			if err := json.Unmarshal([]byte(l), &cl); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			lines = append(lines, cl)
		}
		return lines
	}
	got := run("--group", "g", "--max", "5")
	if len(got) != 5 || got[0].Offset != 0 || got[4].Offset != 4 || got[0].Stream != "app" || got[0].Service == "" {
		t.Fatalf("first run: %+v", got)
	}
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("second", 2)...)
	got = run("--group", "g", "--max", "2")
	if len(got) != 2 || got[0].Offset != 5 || !strings.HasPrefix(got[0].Body, "second-") || got[0].Redelivered {
		t.Fatalf("second run of the group: %+v", got)
	}
	got = run("--from", "0:6", "--max", "1")
	if len(got) != 1 || got[0].Offset != 6 {
		t.Fatalf("from 0:6: %+v", got)
	}
}

func TestParseStart(t *testing.T) {
	t.Parallel()
	offs := func(po ...*weirv1.PartitionOffset) *weirv1.SubscribeRequest {
		return &weirv1.SubscribeRequest{Start: &weirv1.SubscribeRequest_Offsets{Offsets: &weirv1.PartitionOffsets{Offsets: po}}}
	}
	edge := func(e weirv1.StartEdge) *weirv1.SubscribeRequest {
		return &weirv1.SubscribeRequest{Start: &weirv1.SubscribeRequest_Edge{Edge: e}}
	}
	for _, c := range []struct {
		in   string
		want *weirv1.SubscribeRequest // nil: an error
	}{
		{"earliest", edge(weirv1.StartEdge_START_EDGE_EARLIEST)},
		{"latest", edge(weirv1.StartEdge_START_EDGE_LATEST)},
		{"0:5, 1:7", offs(&weirv1.PartitionOffset{Offset: 5}, &weirv1.PartitionOffset{Partition: 1, Offset: 7})},
		{"2026-12-04T10:00:00Z", &weirv1.SubscribeRequest{Start: &weirv1.SubscribeRequest_TimeUnixNano{
			TimeUnixNano: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixNano()}}},
		{"0:-1", nil},
		{"x", nil},
		{"0:5,", nil},
	} {
		req := &weirv1.SubscribeRequest{}
		err := parseStart(c.in, req)
		switch {
		case c.want == nil && err == nil:
			t.Errorf("parseStart(%q) = %v, want an error", c.in, req)
		case c.want != nil && (err != nil || !proto.Equal(req, c.want)):
			t.Errorf("parseStart(%q) = %v, %v, want %v", c.in, req, err, c.want)
		}
	}
}

// TestConsumeMaxDeliveries: records two members of a group received and
// did not commit go to the dead-letter stream with the reason when a
// third member takes over, and the group goes on after them; a group
// with its own limit, and any other group, still get them.
func TestConsumeMaxDeliveries(t *testing.T) {
	t.Parallel()
	s, ing, sc := consumeServer(t, 1, func(c *config) {
		c.Consume.MaxDeliveries = 2
		unlimited := 0
		c.Consume.Groups = map[string]struct {
			MaxDeliveries *int `yaml:"max_deliveries"`
		}{"patient": {MaxDeliveries: &unlimited}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("r", 5)...)
	req := &weirv1.SubscribeRequest{Stream: "app", Group: "g"}
	bodyAt := map[int64]string{}
	for i := range 2 {
		m := openSub(t, sc, req)
		m.until("the partition", func(c *consumed) bool { return len(c.parts) == 1 })
		got := m.atLeast(5)
		if len(got) != 5 || got[0].GetOffset() != 0 || got[0].GetRedelivered() != (i == 1) {
			t.Fatalf("delivery %d: %d records, first %v", i+1, len(got), got[0])
		}
		for _, r := range got {
			bodyAt[r.GetOffset()] = r.GetRecord().GetBody()
		}
		m.close() // without a commit
	}
	third := openSub(t, sc, req)
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("next", 1)...)
	got := third.atLeast(1)
	if len(got) != 1 || got[0].GetOffset() != 5 || got[0].GetRecord().GetBody() != "next-0" {
		t.Fatalf("the third member received %v, want only offset 5", got)
	}

	dead := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "_dead_letter"}).atLeast(5)
	attr := func(r *weirv1.ConsumedRecord, k string) string {
		for _, kv := range r.GetRecord().GetAttributes() {
			if kv.GetKey() == k {
				return kv.GetValue().GetStringValue()
			}
		}
		return ""
	}
	seen := map[int64]bool{}
	for i, r := range dead {
		// The dead-letter stream numbers them anew (ERROR records first):
		// the error names the original position.
		var off int64
		if _, err := fmt.Sscanf(attr(r, "weir.dead_letter.error"), "partition 0 offset %d:", &off); err != nil || seen[off] {
			t.Fatalf("dead letter %d: error %q", i, attr(r, "weir.dead_letter.error"))
		}
		seen[off] = true
		if want := bodyAt[off]; r.GetRecord().GetBody() != want {
			t.Errorf("dead letter of offset %d: body %q, want %q", off, r.GetRecord().GetBody(), want)
		}
		if attr(r, "weir.dead_letter.stream") != "app" || attr(r, "weir.dead_letter.stage") != "consume" ||
			!strings.Contains(attr(r, "weir.dead_letter.error"), `consumer group "g" delivered it 2 times without a commit`) {
			t.Errorf("dead letter %d: attributes %v", i, r.GetRecord().GetAttributes())
		}
	}
	_, _, metrics := get(t, s.url+"/metrics")
	for _, want := range []string{
		"weir_consumer_dead_lettered_records_total 5",
		`weir_consumer_group_lag_records{group="g",partition="0",stream="app",tenant="default"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Groups without the limit get everything, whatever g gave up.
	for i := range 3 {
		p := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "patient"})
		if got := p.atLeast(6); len(got) != 6 || got[0].GetRedelivered() != (i > 0) {
			t.Fatalf("group patient, delivery %d: %d records", i+1, len(got))
		}
		p.close()
	}
	if got := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "h"}).atLeast(6); len(got) != 6 {
		t.Fatalf("group h: %d records", len(got))
	}
}

// TestConsumeRetentionHold: retention keeps expired files whose records
// a group has not committed, removes them anyway past
// consume.max_retention_hold and tells the group the position it lost,
// and removes the rest once the group commits past them. A stream
// without groups is not held.
func TestConsumeRetentionHold(t *testing.T) {
	t.Parallel()
	s, ing, sc := consumeServer(t, 1, func(c *config) {
		c.Retention.Streams = map[string]period{"app": period(time.Hour), "free": period(time.Hour)}
		c.Retention.Interval = 50 * time.Millisecond
		c.Consume.MaxRetentionHold = 24 * time.Hour
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// g holds all of app from offset 0.
	if _, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: "g",
		Offsets: []*weirv1.PartitionOffset{{Partition: 0, Offset: 0}}})); err != nil {
		t.Fatal(err)
	}
	at := func(prefix string, ts time.Time, n int) []*weirv1.LogRecord {
		recs := make([]*weirv1.LogRecord, n)
		for i := range recs {
			recs[i] = textRecord(fmt.Sprintf("%s-%d", prefix, i))
			recs[i].TimeUnixNano = uint64(ts.Add(time.Duration(i) * time.Millisecond).UnixNano())
		}
		return recs
	}
	now := time.Now()
	// Three days old: expired more than the hold ago. Three hours old:
	// expired, within the hold.
	for _, stream := range []string{"app", "free"} {
		push(t, ctx, ing, stream, weirv1.AckLevel_ACK_LEVEL_COMMITTED, at("ancient", now.Add(-72*time.Hour), 10)...)
		push(t, ctx, ing, stream, weirv1.AckLevel_ACK_LEVEL_COMMITTED, at("recent", now.Add(-3*time.Hour), 10)...)
	}
	waitCount(t, s.url, "SELECT count(*) FROM free", 0)
	waitCount(t, s.url, "SELECT count(*) FROM app", 10)
	// Retention keeps looking and keeps holding.
	held := metric(t, s.url, "weir_retention_held_files_total")
	deadline := time.Now().Add(20 * time.Second)
	for metric(t, s.url, "weir_retention_held_files_total") < held+3 {
		if time.Now().After(deadline) {
			t.Fatal("retention does not run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app WHERE body LIKE 'recent-%'", 10)
	if got := metric(t, s.url, "weir_retention_forced_files_total"); got != 1 {
		t.Errorf("weir_retention_forced_files_total = %v, want 1", got)
	}
	if got := metric(t, s.url, "weir_consumer_lost_records_total"); got != 10 {
		t.Errorf("weir_consumer_lost_records_total = %v, want 10", got)
	}

	// A member of g learns what it lost, then reads what is left.
	m := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "g"})
	var lost []*weirv1.PartitionOffset
	for lost == nil {
		if !m.stream.Receive() {
			t.Fatalf("subscription ended: %v", m.stream.Err())
		}
		if len(m.stream.Msg().GetRecords()) > 0 {
			t.Fatalf("records before the loss was reported: %v", m.stream.Msg())
		}
		lost = m.stream.Msg().GetLost()
	}
	if len(lost) != 1 || lost[0].GetPartition() != 0 || lost[0].GetOffset() != 10 {
		t.Fatalf("lost %v, want partition 0 from offset 10", lost)
	}
	got := m.atLeast(10)
	if got[0].GetOffset() != 10 || got[0].GetRecord().GetBody() != "recent-0" || len(got) != 10 {
		t.Fatalf("after the loss: %d records from %d", len(got), got[0].GetOffset())
	}
	// Once g commits them, retention removes them.
	if _, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: "g",
		Offsets: []*weirv1.PartitionOffset{{Partition: 0, Offset: 20}}})); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s.url, "SELECT count(*) FROM app", 0)
}

// TestConsumeFewerPartitions: after a restart with fewer buffer
// partitions, subscriptions and groups still read the records of the
// partitions the server had before, then the live records.
func TestConsumeFewerPartitions(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	server := func(partitions int) *testServer {
		return startServer(t, data, func(c *config) {
			fastCommit(c)
			c.Buffer.Partitions = partitions
			c.Consume.PollInterval = 20 * time.Millisecond
		})
	}
	s := server(4)
	ing, _ := newClients(s.url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 64
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("before", n)...)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// The buffer starts with fewer partitions once the write-ahead logs
	// of the others are gone: after a clean shutdown every record in them
	// is published.
	dirs, err := filepath.Glob(filepath.Join(data, "wal", "tenant=*", "stream=*", "part=[23]"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("write-ahead logs of partitions 2 and 3: %v, %v", dirs, err)
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}

	s = server(2)
	ing, _ = newClients(s.url)
	sc := weirv1connect.NewSubscribeServiceClient(newHTTPClient(), s.url)
	all := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app"})
	member := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "g"})
	if !slices.Equal(member.got.parts, []int32{0, 1, 2, 3}) {
		t.Fatalf("the group's member owns %v, want the four partitions the stream has records in", member.got.parts)
	}
	for _, sub := range []*subscription{all, member} {
		got := sub.atLeast(n)
		checkOrder(t, got, nil, true)
		parts := map[int32]bool{}
		for _, r := range got {
			parts[r.GetPartition()] = true
		}
		if len(got) != n || !parts[2] && !parts[3] {
			t.Fatalf("%d records from partitions %v, want %d with some beyond partition 1", len(got), parts, n)
		}
	}
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("after", 10)...)
	for _, r := range all.atLeast(n + 10)[n:] {
		if r.GetPartition() > 1 || !strings.HasPrefix(r.GetRecord().GetBody(), "after-") {
			t.Fatalf("live record %d:%d %q", r.GetPartition(), r.GetOffset(), r.GetRecord().GetBody())
		}
	}
}

// TestConsumeDamagedOffsets: a consumer group's offsets file damaged at
// rest no longer stops the start. That group is refused with DATA_LOSS
// (Commit and Subscribe) while the others work; once the file is
// removed, the group starts over without a restart.
func TestConsumeDamagedOffsets(t *testing.T) {
	t.Parallel()
	s, ing, sc := consumeServer(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("r", 8)...)
	for group, off := range map[string]int64{"g": 3, "h": 2} {
		if _, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: group,
			Offsets: []*weirv1.PartitionOffset{{Partition: 0, Offset: off}}})); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(s.data, "consumers", "tenant="+record.DefaultTenant, "stream=app", "group=g.json")
	if _, err := os.Stat(damaged); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(damaged, []byte(`{"offsets": {"0": 3`), 0o644); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, s.data, consumeConfig(1, nil))
	sc = weirv1connect.NewSubscribeServiceClient(newHTTPClient(), s.url)
	_, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: "g",
		Offsets: []*weirv1.PartitionOffset{{Partition: 0, Offset: 4}}}))
	if connect.CodeOf(err) != connect.CodeDataLoss || strings.Contains(err.Error(), s.data) {
		t.Errorf("Commit to the damaged group: %v, want data_loss without the server's paths", err)
	}
	st, err := sc.Subscribe(ctx, connect.NewRequest(&weirv1.SubscribeRequest{Stream: "app", Group: "g"}))
	if err == nil {
		if st.Receive() {
			t.Errorf("Subscribe to the damaged group answered %v", st.Msg())
		}
		err = st.Err()
		st.Close()
	}
	if connect.CodeOf(err) != connect.CodeDataLoss {
		t.Errorf("Subscribe to the damaged group: %v, want data_loss", err)
	}
	// The other group resumes after its commit.
	h := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "h"})
	if got := h.atLeast(6); got[0].GetOffset() != 2 || len(got) != 6 {
		t.Errorf("group h resumed at %d with %d records, want offset 2 and 6", got[0].GetOffset(), len(got))
	}
	// Removed, the damaged file's group starts over.
	if err := os.Remove(damaged); err != nil {
		t.Fatal(err)
	}
	g := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "g"})
	if got := g.atLeast(8); got[0].GetOffset() != 0 {
		t.Errorf("group g started over at %d, want 0", got[0].GetOffset())
	}
}

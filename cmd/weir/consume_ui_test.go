package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/weirlabs/weir/internal/ui"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
)

// TestConsumeGroupsUI: /ui/groups and the Consumers view show a group's
// committed offset, end and lag per partition, and follow its commits.
func TestConsumeGroupsUI(t *testing.T) {
	t.Parallel()
	chrome := findChromium(t)
	s, ing, sc := consumeServer(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 40
	push(t, ctx, ing, "app", weirv1.AckLevel_ACK_LEVEL_DURABLE, mixed("r", n)...)
	m := openSub(t, sc, &weirv1.SubscribeRequest{Stream: "app", Group: "billing"})
	end := map[int32]int64{}
	for _, r := range m.atLeast(n) {
		end[r.GetPartition()] = max(end[r.GetPartition()], r.GetOffset()+1)
	}
	if len(end) != 2 {
		t.Fatalf("records in partitions %v, want both", end)
	}
	half := end[0] / 2
	commit := func(p int32, o int64) {
		t.Helper()
		if _, err := sc.Commit(ctx, connect.NewRequest(&weirv1.CommitRequest{Stream: "app", Group: "billing",
			Offsets: []*weirv1.PartitionOffset{{Partition: p, Offset: o}}})); err != nil {
			t.Fatal(err)
		}
	}
	commit(0, half)

	resp, err := http.Get(s.url + "/ui/groups")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Groups []ui.ConsumerGroup }
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("[{app billing 1 [{0 %d %d %d true} {1 -1 %d %d true}]}]", half, end[0], end[0]-half, end[1], end[1])
	if got := fmt.Sprint(doc.Groups); got != want {
		t.Fatalf("/ui/groups: %s, want %s", got, want)
	}

	b := newBrowser(t, chrome)
	b.do(chromedp.Navigate(s.url + "/#/groups"))
	row := func(p int) string {
		return fmt.Sprintf(`document.querySelector('#groups tr.partition[data-group="billing"][data-partition="%d"]')`, p)
	}
	b.waitFor(`document.querySelector('#groups').dataset.state === 'ready' && !!`+row(1), "the consumer groups")
	cell := func(p int, class string) string {
		return evalJS[string](b, row(p)+`.querySelector('.`+class+`').textContent`)
	}
	for _, c := range []struct {
		p           int
		class, want string
	}{
		{0, "committed", fmt.Sprint(half)}, {0, "end", fmt.Sprint(end[0])}, {0, "lag", fmt.Sprint(end[0] - half)}, {0, "owned", "owned"},
		{1, "committed", "none"}, {1, "lag", fmt.Sprint(end[1])},
	} {
		if got := cell(c.p, c.class); got != c.want {
			t.Errorf("partition %d %s: %q, want %q", c.p, c.class, got, c.want)
		}
	}
	total := evalJS[string](b, `document.querySelector('#groups tr.group[data-group="billing"] .total-lag').textContent`)
	if total != fmt.Sprint(end[0]-half+end[1]) {
		t.Errorf("total lag %q, want %d", total, end[0]-half+end[1])
	}
	b.screenshot("consumers")
	// The view follows commits.
	commit(1, end[1])
	b.waitFor(row(1)+`.querySelector('.lag').textContent === '0' && `+row(1)+`.querySelector('.committed').textContent === '`+fmt.Sprint(end[1])+`'`, "the commit of partition 1")
	b.checkErrors()
}

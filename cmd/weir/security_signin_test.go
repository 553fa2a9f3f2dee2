package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/weirlabs/weir/internal/auth"
	weirv1 "github.com/weirlabs/weir/proto/weir/v1"
	"github.com/weirlabs/weir/proto/weir/v1/weirv1connect"
)

// On a server with API keys the UI asks for a key, says when one is
// refused, and then shows the key's tenant's records only.
func TestSecurityUISignIn(t *testing.T) {
	chrome := findChromium(t)
	acme := newTenantKey(t, "acme", "acme", auth.RoleIngest, auth.RoleQuery, auth.RoleTail)
	globex := newTenantKey(t, "globex", "globex", auth.RoleIngest)
	s := startServer(t, "", func(c *config) { c.Auth.Keys = []auth.Key{acme.key, globex.key} })
	for _, k := range []tenantKey{acme, globex} {
		ing := weirv1connect.NewIngestServiceClient(keyClient(k.token), s.url)
		if _, err := ing.Push(context.Background(), connect.NewRequest(&weirv1.PushRequest{Stream: "app", Records: []*weirv1.LogRecord{textRecord("hello from " + k.key.Tenant)}})); err != nil {
			t.Fatal(err)
		}
	}
	countAs(t, s.url, acme.token, "SELECT count(*) FROM app", 1)

	const q = "SELECT string_agg(body, ' | ') AS bodies FROM logs"
	b := newBrowser(t, chrome)
	b.do(chromedp.Navigate(s.url+"/#/console"),
		chromedp.SetValue(chromedp.CSS(`#sql`), q), chromedp.Click(chromedp.CSS(`#sql-run`)))
	b.waitFor(`!!document.querySelector('dialog.signin[open]')`, "the sign-in dialog")
	b.do(chromedp.SetValue(chromedp.CSS(`dialog.signin input`), "weir_not_a_key"),
		chromedp.Click(chromedp.CSS(`dialog.signin button`)))
	b.waitFor(`!!document.querySelector('dialog.signin[open]') && document.querySelector('dialog.signin').textContent.includes('refused')`,
		"the dialog again, saying the key was refused")
	b.do(chromedp.SetValue(chromedp.CSS(`dialog.signin input`), acme.token),
		chromedp.Click(chromedp.CSS(`dialog.signin button`)))
	// The statement runs once the key is accepted.
	b.waitFor(`!document.querySelector('dialog.signin') && document.querySelector('#console-table').textContent.includes('hello from acme')`,
		"acme's record in the console")
	if got := evalJS[string](b, `document.querySelector('#console-table').textContent`); strings.Contains(got, "globex") {
		t.Errorf("acme's console shows another tenant's records: %s", got)
	}
	if key := evalJS[string](b, `sessionStorage.getItem('weir.key') || ''`); key != acme.token {
		t.Errorf("the tab keeps %s, want the key entered", strconv.Quote(key))
	}
	if n := evalJS[int](b, `document.cookie.length`); n != 0 {
		t.Errorf("the UI set cookies: %d bytes", n)
	}
	b.checkErrors()
}

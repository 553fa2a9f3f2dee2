package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// A console link (/#/console?sql=...) fills the editor and runs
// nothing; the user's click on Run runs it, once. The browser talks to
// the server through a proxy that records every statement sent to
// /v1/sql.
func TestSecurityUIConsoleLinkDoesNotRun(t *testing.T) {
	chrome := findChromium(t)
	s := startServer(t, "", nil)
	target, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	var mu sync.Mutex
	var sent []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/sql" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			mu.Lock()
			sent = append(sent, string(body))
			mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	runs := func(marker string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, b := range sent {
			if strings.Contains(b, marker) {
				n++
			}
		}
		return n
	}

	const marker = "from_a_link_5c1e"
	q := "SELECT '" + marker + "' AS m"
	b := newBrowser(t, chrome)
	b.do(chromedp.Navigate(proxy.URL + "/#/console?sql=" + url.QueryEscape(q)))
	b.waitFor(`document.querySelector('#console').dataset.state === 'prefilled' && document.querySelector('#sql').value === `+strconv.Quote(q),
		"the link's statement in the editor")
	if n := runs(marker); n != 0 {
		t.Fatalf("opening the link sent its statement to /v1/sql %d times", n)
	}
	if rows := evalJS[int](b, `document.querySelectorAll('#console-table tbody tr').length`); rows != 0 {
		t.Fatalf("opening the link shows %d result rows", rows)
	}
	b.do(chromedp.Click(chromedp.CSS("#sql-run")))
	b.waitFor(`document.querySelector('#console').dataset.state === 'ready' && document.querySelector('#console-table').textContent.includes(`+strconv.Quote(marker)+`)`,
		"the result after Run")
	// Once: the click's run, and none left over from the link.
	if n := runs(marker); n != 1 {
		t.Fatalf("the statement was sent %d times, want once, for the click", n)
	}
	b.checkErrors()
}

package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func FuzzCredential(f *testing.F) {
	for _, seed := range []string{
		"Bearer weir_abc",
		"bearer  weir_abc ",
		"Basic " + base64.StdEncoding.EncodeToString([]byte("user:weir_abc")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("weir_abc")),
		"Basic !!!",
		"Splunk weir_abc",
		"ApiKey weir_abc",
		"Token weir_abc",
		"Bearer",
		"Bearer ",
		"Bearer a b",
		"Bearer weir\x00abc",
		"Bearer " + strings.Repeat("a", maxAuthorization),
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := credential(header)
		if !ok {
			if token != "" {
				t.Fatalf("credential(%q) = %q, false: a refused header must give no token", header, token)
			}
			return
		}
		if len(header) > maxAuthorization {
			t.Fatalf("credential accepted a %d-byte header", len(header))
		}
		if !validToken(token) {
			t.Fatalf("credential(%q) = %q, which is not a valid token", header, token)
		}
		// Every form gives the same token back.
		for _, h := range []string{
			"Bearer " + token,
			"Splunk " + token,
			"ApiKey " + token,
			"Basic " + base64.StdEncoding.EncodeToString([]byte("any:"+token)),
		} {
			if len(h) > maxAuthorization {
				continue
			}
			if got, ok := credential(h); !ok || got != token {
				t.Fatalf("credential(%q) = %q, %v; want %q", h, got, ok, token)
			}
		}
	})
}

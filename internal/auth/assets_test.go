package auth_test

import (
	"io/fs"
	"os"
	"path"
	"testing"
)

// TestUIAssetsArePublic: every file the UI embeds (internal/ui/static)
// loads without a key, so a browser can start the application and then
// ask for one. A new view that is missing from the list would leave the
// application unable to load when keys are configured.
func TestUIAssetsArePublic(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newAuthenticator(t))
	n := 0
	err := fs.WalkDir(os.DirFS("../ui/static"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		resp, body := do(t, srv, "GET", path.Join("/", p), "")
		if resp.StatusCode != 200 || body["none"] != true {
			t.Errorf("GET /%s without a key: %d %v, want it public", p, resp.StatusCode, body)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walk the UI's files: %d files, %v", n, err)
	}
}

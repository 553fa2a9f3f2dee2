package tlsfiles_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirlabs/weir/internal/tlsfiles"
)

// authority is a test CA that issues certificates.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newAuthority(t *testing.T, name string) *authority {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate (PEM) and its key (PEM) signed by the
// authority, for the server (127.0.0.1) or a client.
func (a *authority) issue(t *testing.T, serial int64, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "weir test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	// Write beside and rename, as certificate renewals do.
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// files writes a server pair (and, if given, client CAs) into a fresh
// directory and returns the config naming them.
func files(t *testing.T, certPEM, keyPEM, clientCAs []byte) tlsfiles.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := tlsfiles.Config{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	writeFile(t, cfg.CertFile, certPEM)
	writeFile(t, cfg.KeyFile, keyPEM)
	if clientCAs != nil {
		cfg.ClientCAFile = filepath.Join(dir, "clients.pem")
		writeFile(t, cfg.ClientCAFile, clientCAs)
	}
	return cfg
}

// serve runs an HTTPS server on 127.0.0.1 with r's configuration; it
// answers with the number of client certificates it verified.
func serve(t *testing.T, r *tlsfiles.Reloader) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, req.Proto+" "+strings.Repeat("v", len(req.TLS.VerifiedChains)))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.TLS = r.TLSConfig()
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// serial connects anew and returns the serial number of the server's
// certificate and the protocol ALPN chose.
func serial(t *testing.T, addr string, roots *x509.CertPool) (int64, string) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0].SerialNumber.Int64(), st.NegotiatedProtocol
}

// get sends one request over a new connection.
func get(t *testing.T, url string, roots *x509.CertPool, client *tls.Certificate) (string, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots}
	if client != nil {
		// Send it whatever CAs the server asks for, as a client that
		// holds the wrong certificate would.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return client, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestReload(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "server CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cert1, key1 := ca.issue(t, 101, false)
	cfg := files(t, cert1, key1, nil)
	r, err := tlsfiles.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, r)
	addr := srv.Listener.Addr().String()
	if n, proto := serial(t, addr, roots); n != 101 || proto != "h2" {
		t.Fatalf("serial %d over %q, want 101 over h2", n, proto)
	}
	if body, err := get(t, srv.URL, roots, nil); err != nil || body != "HTTP/2.0 " {
		t.Fatalf("GET: %q, %v", body, err)
	}

	// A renewal: new files, Reload, and new connections get the new pair.
	cert2, key2 := ca.issue(t, 202, false)
	writeFile(t, cfg.CertFile, cert2)
	writeFile(t, cfg.KeyFile, key2)
	if n, _ := serial(t, addr, roots); n != 101 {
		t.Fatalf("serial %d before Reload, want 101", n)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if n, _ := serial(t, addr, roots); n != 202 {
		t.Fatalf("serial %d after Reload, want 202", n)
	}

	// A broken renewal leaves the pair in use.
	for name, write := range map[string]func(){
		"garbage certificate": func() { writeFile(t, cfg.CertFile, []byte("not PEM")) },
		"key of another pair": func() { writeFile(t, cfg.CertFile, cert1) }, // key2 stays
		"missing key":         func() { os.Remove(cfg.KeyFile) },
	} {
		write()
		if err := r.Reload(); err == nil {
			t.Fatalf("%s: Reload succeeded", name)
		}
		if n, _ := serial(t, addr, roots); n != 202 {
			t.Fatalf("%s: serial %d after a failed Reload, want 202", name, n)
		}
		writeFile(t, cfg.CertFile, cert2)
		writeFile(t, cfg.KeyFile, key2)
	}
}

func TestClientCertificates(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "server CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	clients := newAuthority(t, "client CA")
	stranger := newAuthority(t, "another CA")
	serverCert, serverKey := ca.issue(t, 7, false)
	pair := func(a *authority) *tls.Certificate {
		c, k := a.issue(t, 9, true)
		p, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	good, bad := pair(clients), pair(stranger)

	for _, required := range []bool{true, false} {
		cfg := files(t, serverCert, serverKey, clients.pem)
		cfg.RequireClientCert = required
		r, err := tlsfiles.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := serve(t, r)
		if body, err := get(t, srv.URL, roots, good); err != nil || body != "HTTP/2.0 v" {
			t.Errorf("required=%v: with a client certificate: %q, %v; want it verified", required, body, err)
		}
		if _, err := get(t, srv.URL, roots, bad); err == nil {
			t.Errorf("required=%v: a certificate of another CA was accepted", required)
		}
		body, err := get(t, srv.URL, roots, nil)
		if required && err == nil {
			t.Errorf("required: a client without a certificate was served %q", body)
		}
		if !required && (err != nil || body != "HTTP/2.0 ") {
			t.Errorf("optional: a client without a certificate: %q, %v", body, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "CA")
	cert, key := ca.issue(t, 1, false)
	ok := files(t, cert, key, ca.pem)
	cases := []struct {
		name string
		cfg  tlsfiles.Config
		is   error
		says string
	}{
		{"nothing", tlsfiles.Config{}, tlsfiles.ErrConfig, "not set"},
		{"cert only", tlsfiles.Config{CertFile: ok.CertFile}, tlsfiles.ErrConfig, "key_file is not"},
		{"key only", tlsfiles.Config{KeyFile: ok.KeyFile}, tlsfiles.ErrConfig, "cert_file is not"},
		{"required without CA", tlsfiles.Config{CertFile: ok.CertFile, KeyFile: ok.KeyFile, RequireClientCert: true}, tlsfiles.ErrConfig, "client_ca_file"},
		{"missing file", tlsfiles.Config{CertFile: ok.CertFile + ".gone", KeyFile: ok.KeyFile}, os.ErrNotExist, "cert.pem.gone"},
		{"swapped", tlsfiles.Config{CertFile: ok.KeyFile, KeyFile: ok.CertFile}, nil, "key.pem"},
		{"CA file without PEM", tlsfiles.Config{CertFile: ok.CertFile, KeyFile: ok.KeyFile, ClientCAFile: ok.KeyFile}, tlsfiles.ErrNoCertificate, "key.pem"},
	}
	for _, tc := range cases {
		_, err := tlsfiles.New(tc.cfg)
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v; want an error wrapping %v that says %q", tc.name, err, tc.is, tc.says)
		}
	}
	if _, err := tlsfiles.New(ok); err != nil {
		t.Errorf("valid files: %v", err)
	}
	if (tlsfiles.Config{}).Enabled() || !(tlsfiles.Config{KeyFile: "k"}).Enabled() {
		t.Error("Enabled is wrong")
	}
}

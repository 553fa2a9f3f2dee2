// Package tlsfiles serves TLS from certificate files that can be replaced
// while the server runs: weir's port (Connect, gRPC, HTTP) terminates
// TLS itself with the pair and, optionally, a client CA it reads here.
//
// [Reloader.Reload] reads the files again, for SIGHUP or a timer after a
// renewal (certbot, cert-manager); new connections get the new pair, and
// open ones keep theirs. A bad file leaves the pair in use as it is.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

var (
	// ErrConfig is wrapped by the errors for a Config that cannot work.
	ErrConfig = errors.New("invalid TLS configuration")
	// ErrNoCertificate is wrapped by the error for a client CA file
	// that holds no PEM certificate.
	ErrNoCertificate = errors.New("no certificate")
)

// maxFileBytes bounds each file read: a certificate chain or key is a few
// KiB, a CA bundle a few hundred.
const maxFileBytes = 4 << 20

// Config names the files, in PEM.
type Config struct {
	// CertFile holds the server's certificate, followed by any
	// intermediates.
	CertFile string `yaml:"cert_file"`
	// KeyFile holds the certificate's private key.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile, when set, holds the CAs that sign client
	// certificates; a client that presents one is verified against them.
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert refuses connections without a client certificate
	// signed by a CA of ClientCAFile, which it requires.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Enabled reports whether c asks for TLS at all (a certificate or key
// file is named).
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate reports a Config that names only one of the pair, or client
// certificates without a certificate of its own.
func (c Config) Validate() error {
	switch {
	case c.CertFile == "" && c.KeyFile == "":
		return fmt.Errorf("%w: cert_file and key_file are not set", ErrConfig)
	case c.CertFile == "":
		return fmt.Errorf("%w: key_file is set but cert_file is not", ErrConfig)
	case c.KeyFile == "":
		return fmt.Errorf("%w: cert_file is set but key_file is not", ErrConfig)
	case c.RequireClientCert && c.ClientCAFile == "":
		return fmt.Errorf("%w: require_client_cert needs client_ca_file", ErrConfig)
	}
	return nil
}

// Reloader holds the current certificate and client CAs. It is safe for
// concurrent use: handshakes read the pair while Reload replaces it. Make
// one with New; the zero value holds no certificate.
type Reloader struct {
	cfg     Config
	mu      sync.Mutex // serialises Reload
	current atomic.Pointer[tls.Config]
}

// New checks cfg and reads its files.
func New(cfg Config) (*Reloader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Reloader{cfg: cfg}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. On success new handshakes use what it
// read; on error it returns the error (naming the file) and the pair and
// CAs in use stay as they were, so a half-written renewal never takes the
// server down. Connections already open are not affected either way.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, err := readFile(r.cfg.CertFile)
	if err != nil {
		return err
	}
	keyPEM, err := readFile(r.cfg.KeyFile)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	c := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if r.cfg.ClientCAFile != "" {
		caPEM, err := readFile(r.cfg.ClientCAFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return fmt.Errorf("tls: client CAs %s: %w in PEM", r.cfg.ClientCAFile, ErrNoCertificate)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if r.cfg.RequireClientCert {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	r.current.Store(c)
	return nil
}

// TLSConfig returns a configuration for a server (http.Server.TLSConfig,
// tls.NewListener) that answers each handshake with the pair and client
// CAs of the latest successful Reload: TLS 1.2 and later, ALPN h2 and
// http/1.1, client certificates verified when a client CA file is set and
// required when RequireClientCert says so. Handshakes take every setting
// from the configuration Reload built, so fields the caller sets on the
// returned value do not change them.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &r.current.Load().Certificates[0], nil
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current.Load(), nil
		},
	}
}

// readFile reads a whole file of at most maxFileBytes.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tls: read %s: %w", name, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("tls: %s is larger than %d bytes", name, maxFileBytes)
	}
	return b, nil
}

package brokertest

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy relays TCP connections on a loopback port to a broker, and can
// cut them: to its clients, a cut proxy is a broker that went away and
// came back on the same address, without the broker's restart time.
type Proxy struct {
	target, addr string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// NewProxy relays a new loopback port to target (host:port); the test's
// cleanup cuts it and joins its goroutines.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(func() { p.Cut(); p.wg.Wait() })
	return p
}

// URL returns url (an AMQP URL of the target) with the proxy's address
// in place of the target's.
func (p *Proxy) URL(url string) string { return strings.Replace(url, p.target, p.addr, 1) }

// Cut closes the listener and every relayed connection.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore listens again on the proxy's address.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut meanwhile
				p.mu.Unlock()
				c.Close()
				b.Close()
				return
			}
			p.conns[c], p.conns[b] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go p.relay(c, b)
			go p.relay(b, c)
		}
	}()
}

func (p *Proxy) relay(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

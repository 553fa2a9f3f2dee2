package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeUDPAddr returns a loopback UDP address no socket is bound to.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// startSyslogServer runs weir with syslog listeners on free loopback
// ports, streams picked by app-name.
func startSyslogServer(t *testing.T) (s *testServer, tcpAddr, udpAddr string) {
	t.Helper()
	tcpAddr, udpAddr = freeAddr(t), freeUDPAddr(t)
	s = startServer(t, "", func(c *config) {
		c.Syslog.TCP, c.Syslog.UDP, c.Syslog.StreamFrom = tcpAddr, udpAddr, "app_name"
		c.Syslog.BatchDelay = 50 * time.Millisecond
	})
	return s, tcpAddr, udpAddr
}

// TestSyslogLogger sends RFC 5424 messages with util-linux logger over
// TCP (octet counting and newlines) and UDP, and checks through SQL that
// each arrived once with its severity, host, app-name and structured
// data.
func TestSyslogLogger(t *testing.T) {
	logger := requireProgram(t, "logger", "apt-get install bsdutils")
	s, tcpAddr, udpAddr := startSyslogServer(t)
	const n = 50
	send := func(addr, app string, extra ...string) {
		t.Helper()
		host, port, _ := net.SplitHostPort(addr)
		var lines strings.Builder
		for i := range n {
			fmt.Fprintf(&lines, "%s message %d\n", app, i)
		}
		args := append([]string{"--rfc5424", "-n", host, "-P", port, "-t", app, "-p", "local3.warning",
			"--sd-id", "test@32473", "--sd-param", `run="e2e"`}, extra...)
		cmd := exec.Command(logger, args...)
		cmd.Stdin = strings.NewReader(lines.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v\n%s", args, err, out)
		}
	}
	send(tcpAddr, "octets", "--tcp", "--octet-count")
	send(tcpAddr, "lines", "--tcp")
	send(udpAddr, "datagrams", "--udp")
	for _, stream := range []string{"octets", "lines", "datagrams"} {
		waitCount(t, s.url, "SELECT count(*) FROM "+stream, n)
		waitCount(t, s.url, "SELECT count(DISTINCT body) FROM "+stream+" WHERE body LIKE '"+stream+" message %'", n)
		waitCount(t, s.url, "SELECT count(*) FROM "+stream+` WHERE severity_text = 'WARN' AND service_name = '`+stream+
			`' AND resource['host.name'] <> '' AND attributes['sd.test@32473.run'] = 'e2e' AND attributes['syslog.facility'] = '19'`, n)
	}
}

// TestSyslogRsyslog has rsyslog forward the lines of a file it follows
// (imfile) over TCP with octet counting in RFC 5424 (omfwd).
func TestSyslogRsyslog(t *testing.T) {
	requireProgram(t, "rsyslogd", "apt-get install rsyslog")
	s, tcpAddr, _ := startSyslogServer(t)
	host, port, _ := net.SplitHostPort(tcpAddr)
	dir := t.TempDir()
	const n = 200
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, "forwarded line %d\n", i)
	}
	in := filepath.Join(dir, "in.log")
	if err := os.WriteFile(in, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	startRsyslog(t, dir, fmt.Sprintf(`
global(workDirectory=%[1]q)
module(load="imfile" mode="polling" PollingInterval="1")
input(type="imfile" File=%[2]q Tag="fwdapp" Severity="err" Facility="local1")
action(type="omfwd" target=%[3]q port=%[4]q protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format" queue.type="linkedlist" action.resumeRetryCount="-1")
`, dir, in, host, port))
	waitCountFor(t, s.url, "SELECT count(*) FROM fwdapp", n, 30*time.Second)
	waitCount(t, s.url, "SELECT count(DISTINCT body) FROM fwdapp WHERE body LIKE 'forwarded line %'", n)
	waitCount(t, s.url, "SELECT count(*) FROM fwdapp WHERE severity_text = 'ERROR' AND service_name = 'fwdapp' AND attributes['syslog.facility'] = '17'", n)
}

// TestSyslogBadInput sends garbage, an oversized frame and valid
// messages on one connection: the valid are stored once, the others are
// in the dead-letter stream with their text.
func TestSyslogBadInput(t *testing.T) {
	// One stream for all: a batch whose every record is dead-lettered
	// is refused by ingest.Service.Submit, so the bad messages share a
	// stream with good ones here.
	tcpAddr := freeAddr(t)
	s := startServer(t, "", func(c *config) { c.Syslog.TCP, c.Syslog.Stream = tcpAddr, "badin" })
	conn, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	good := func(i int) string {
		return fmt.Sprintf("<14>1 2026-04-01T00:00:0%dZ h1 badin - - - good %d", i, i)
	}
	big := "<14>1 - h1 badin - - - " + strings.Repeat("z", 70<<10)
	var frames strings.Builder
	for _, m := range []string{good(1), "\x01\x7f not syslog at all", big, good(2)} {
		fmt.Fprintf(&frames, "%d %s", len(m), m)
	}
	if _, err := conn.Write([]byte(frames.String())); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitCount(t, s.url, "SELECT count(*) FROM badin", 2)
	if got := countBy(t, s.url, "SELECT body, count(*) FROM badin GROUP BY 1"); got["good 1"] != 1 || got["good 2"] != 1 {
		t.Errorf("stored %v", got)
	}
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE attributes['weir.dead_letter.stream'] = 'badin'", 2)
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE body = '\x01\x7f not syslog at all'", 1)
	waitCount(t, s.url, "SELECT count(*) FROM _dead_letter WHERE length(body) = 65536 AND attributes['weir.dead_letter.error'] LIKE '%more than 65536%'", 1)
}

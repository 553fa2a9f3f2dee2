// Package brokertest starts the message brokers weir's sources are
// tested against, as children of the test on loopback: RabbitMQ (Debian's
// rabbitmq-server) and goaws, an SQS emulator. Without the server's
// binary a test skips with a note on how to install it, or fails when
// WEIR_CI=1.
package brokertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitServer is the path of Debian's rabbitmq-server start script.
const rabbitServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// broker is the RabbitMQ node of the test binary, started by the first
// test that needs one and stopped by StopRabbit.
var broker struct {
	once sync.Once
	url  string
	err  error
	stop func()
}

// Rabbit returns the AMQP URL of the test binary's RabbitMQ node,
// starting it on loopback ports with its own directories; without
// rabbitmq-server the test skips, or fails when WEIR_CI=1. Call
// StopRabbit from TestMain after the tests.
func Rabbit(t testing.TB) string {
	t.Helper()
	needRabbit(t)
	broker.once.Do(func() { broker.url, broker.stop, broker.err = startRabbit() })
	if broker.err != nil {
		t.Fatal(broker.err)
	}
	return broker.url
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRabbit starts a node: AMQP, distribution and its own epmd all on
// 127.0.0.1 and free ports, its data and logs in a temporary directory.
func startRabbit() (url string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "weir-rabbitmq-")
	if err != nil {
		return "", nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return "", nil, err
		}
	}
	amqpPort, distPort, epmdPort := ports[0], ports[1], ports[2]
	conf := filepath.Join(dir, "rabbitmq.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listeners.tcp.default = 127.0.0.1:%d\n", amqpPort), 0o644); err != nil {
		return "", nil, err
	}
	plugins := filepath.Join(dir, "enabled_plugins")
	if err := os.WriteFile(plugins, []byte("[].\n"), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(rabbitServer)
	cmd.Dir = dir
	epmdEnv := []string{"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort), "ERL_EPMD_ADDRESS=127.0.0.1"}
	cmd.Env = append(os.Environ(), append(epmdEnv,
		"HOME="+dir,
		fmt.Sprintf("RABBITMQ_NODENAME=weirtest%d_%d@localhost", os.Getpid(), amqpPort),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE="+conf,
		"RABBITMQ_ENABLED_PLUGINS_FILE="+plugins,
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"))...)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// The node started its own epmd as a daemon; it serves no one
		// now.
		kill := exec.Command("epmd", "-kill")
		kill.Env = append(os.Environ(), epmdEnv...)
		kill.Run()
		logf.Close()
		os.RemoveAll(dir)
	}
	url = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort)
	deadline := time.Now().Add(90 * time.Second)
	for {
		conn, err := amqp.Dial(url)
		if err == nil {
			conn.Close()
			return url, stop, nil
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			stop()
			return "", nil, fmt.Errorf("rabbitmq-server exited: %s", out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			stop()
			return "", nil, fmt.Errorf("rabbitmq-server did not accept connections in 90s: %v\n%s", err, out)
		}
	}
}

// StartRabbit starts a RabbitMQ node of the test's own, stopped when
// the test ends, and returns its AMQP URL; it skips or fails as Rabbit
// does.
func StartRabbit(t testing.TB) string {
	t.Helper()
	needRabbit(t)
	url, stop, err := startRabbit()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return url
}

func needRabbit(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(rabbitServer); err != nil {
		if os.Getenv("WEIR_CI") == "1" {
			t.Fatalf("%s is missing (apt-get install rabbitmq-server)", rabbitServer)
		}
		t.Skipf("%s is missing: install Debian's rabbitmq-server to run this test", rabbitServer)
	}
}

// StopRabbit stops the node Rabbit started, if any.
func StopRabbit() {
	if broker.stop != nil {
		broker.stop()
	}
}

// Declare creates queue name (and its dead-letter queue name_dead, fed
// through the default exchange) afresh and returns a channel to publish
// with.
func Declare(t testing.TB, url, name string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name+"_dead", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name + "_dead"}); err != nil {
		t.Fatal(err)
	}
	return ch
}

// Publish sends msg to queue through the default exchange.
func Publish(t testing.TB, ch *amqp.Channel, queue string, msg amqp.Publishing) {
	t.Helper()
	if err := ch.PublishWithContext(context.Background(), "", queue, false, false, msg); err != nil {
		t.Fatal(err)
	}
}

// QueueDepth returns the messages ready in queue.
func QueueDepth(t testing.TB, ch *amqp.Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

package perf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/nsrun"
)

// etcdAddr is where etcd listens: on the underlay bridge, the one place
// every node namespace reaches (the agent dials etcd from inside its node
// namespace).
const etcdAddr = "192.168.77.1"

// startEtcd runs the real etcd (etcdtest.Bin) inside the underlay namespace
// ns on etcdAddr:2379, waits until it answers and returns its endpoint and
// a client (dialling from inside ns). Both stop at the end of the test.
func startEtcd(tb testing.TB, ns string) (string, *clientv3.Client) {
	tb.Helper()
	bin, err := etcdtest.Bin()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	endpoint := "http://" + etcdAddr + ":2379"
	peer := "http://127.0.0.1:2380"
	logPath := filepath.Join(dir, "etcd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin,
		"--name", "perf", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "perf="+peer, "--initial-cluster-state", "new",
		"--log-level", "warn", "--quota-backend-bytes", "4294967296")
	cmd.Stdout, cmd.Stderr = logf, logf
	// It dies with the benchmark process, even a killed one.
	done, err := etcdtest.StartChild(cmd)
	logf.Close() // the child has its own copy
	if err != nil {
		tb.Fatalf("start etcd in %s: %v", ns, err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})

	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(nsrun.Dialer(ns))},
	})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			tb.Fatalf("etcd exited at start; log %s:\n%s", logPath, tail(logPath, 10))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx, endpoint)
		cancel()
		if err == nil {
			return endpoint, c
		}
		if time.Now().After(deadline) {
			tb.Fatalf("etcd at %s in %s not answering after 20s: %v; log:\n%s", endpoint, ns, err, tail(logPath, 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail returns the last n lines of a log file, indented.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Package etcdtest runs a real etcd server (the bin/etcd that `make tools`
// builds) for tests: on 127.0.0.1 with free ports and a temporary data dir,
// optionally with TLS and client certificates. It changes no kernel state.
//
//	endpoint, stop := etcdtest.Start(t)   // stopped at the end of the test anyway
//	defer stop()
//
// StartServer gives more control: Stop and Restart on the same data dir and
// ports (to test an etcd outage), a ready client, TLS files.
//
// The binary is $TWILL_ETCD_BIN, else bin/etcd in the module root. When
// neither exists the test fails (it does not skip), saying to run
// `make tools`.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// healthTimeout bounds how long a start waits for etcd to answer.
const healthTimeout = 20 * time.Second

// Options configures StartServer.
type Options struct {
	// TLS serves clients over https and requires client certificates signed
	// by a CA generated for this server (see Server.CAFile and friends).
	TLS bool
}

// Server is one running etcd.
type Server struct {
	// Endpoint is the client URL, e.g. http://127.0.0.1:41234.
	Endpoint string
	// DataDir is etcd's data directory (kept across Restart).
	DataDir string
	// LogFile collects etcd's output.
	LogFile string
	// CAFile, CertFile and KeyFile are, with Options.TLS, the CA that signed
	// the server and client certificates, and a valid client certificate and
	// key (PEM). Empty otherwise.
	CAFile, CertFile, KeyFile string

	t    testing.TB
	argv []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{}
}

// Start runs an etcd server and returns its client endpoint and a stop
// function (safe to call more than once; also called at test cleanup).
func Start(t testing.TB) (endpoint string, stop func()) {
	t.Helper()
	s := StartServer(t, Options{})
	return s.Endpoint, s.Stop
}

// StartServer runs an etcd server and waits until it answers. It is stopped
// at test cleanup.
func StartServer(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := Bin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{t: t, DataDir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "etcd.log")}
	scheme := "http"
	var tlsArgs []string
	if o.TLS {
		scheme = "https"
		if err := s.writeCerts(dir); err != nil {
			t.Fatalf("etcdtest: certificates: %v", err)
		}
		tlsArgs = []string{"--cert-file", filepath.Join(dir, "server.pem"), "--key-file", filepath.Join(dir, "server-key.pem"),
			"--trusted-ca-file", s.CAFile, "--client-cert-auth"}
	}
	clientPort, peerPort := FreePort(t), FreePort(t)
	s.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	s.argv = append([]string{bin,
		"--name", "etcdtest",
		"--data-dir", s.DataDir,
		"--listen-client-urls", s.Endpoint,
		"--advertise-client-urls", s.Endpoint,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "etcdtest=" + peer,
		"--initial-cluster-state", "new",
		"--log-level", "warn",
	}, tlsArgs...)
	t.Cleanup(s.Stop)
	s.start()
	return s
}

// Bin finds the etcd binary: $TWILL_ETCD_BIN, else bin/etcd in the module
// root (found by walking up from the working directory to go.mod).
func Bin() (string, error) { return FindBin("etcd", "TWILL_ETCD_BIN") }

// FindBin finds an upstream program the tests run (etcd, kube-apiserver,
// kubectl): $env when set, else bin/<name> in the module root. The error
// says how to get it (`make tools` builds them from the Go module proxy).
func FindBin(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w: run `make tools-kube` to build bin/%s", env, p, err, name)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", name)
			if err := executable(p); err != nil {
				return "", fmt.Errorf("the real %s is needed at %s: %w: run `make tools-kube` (builds it from the Go module proxy)", name, p, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory and %s unset: run `make tools-kube` and set %s", env, env)
		}
		dir = parent
	}
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	// A port the kernel hands out for ":0" lies in the ephemeral range,
	// where any outgoing connection (of a parallel test, of the agents) may
	// take it as its source port before the server binds it. Pick a free
	// port below that range instead, at random; fall back to ":0".
	if lo := ephemeralLow(); lo > 11000 {
		for range 100 {
			p := 10000 + rand.IntN(lo-10000)
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
				l.Close()
				return p
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ephemeralLow is the lowest port of net.ipv4.ip_local_port_range (the
// kernel's source ports for outgoing connections); 0 when unreadable.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	lo, _ := strconv.Atoi(f[0])
	return lo
}

// start runs the process and waits until it answers.
func (s *Server) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatalf("etcdtest: log: %v", err)
	}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	done, err := StartChild(cmd)
	logf.Close() // the child has its own copy
	if err != nil {
		s.t.Fatalf("etcdtest: start %s: %v", s.argv[0], err)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(healthTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.t.Fatalf("etcdtest: etcd exited at start; log %s:\n%s", s.LogFile, s.tail(10))
		default:
		}
		if last = s.healthy(); last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("etcdtest: etcd at %s not healthy after %s: %v; log:\n%s", s.Endpoint, healthTimeout, last, s.tail(10))
}

// healthy asks for the server's status once.
func (s *Server) healthy() error {
	c, err := s.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.Status(ctx, s.Endpoint)
	return err
}

func (s *Server) newClient() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	if s.CAFile != "" {
		tc, err := clientTLS(s.CAFile, s.CertFile, s.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// Client returns a client of the server, closed at test cleanup. Use it to
// inspect or disturb the store (Get, Compact, Revoke) beside the code under
// test.
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	c, err := s.newClient()
	if err != nil {
		s.t.Fatalf("etcdtest: client: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10s) and waits
// for it. The data dir is kept. Safe to call more than once. Note that a
// graceful stop can take seconds while clients hold streams open, and etcd
// keeps expiring leases meanwhile; use Kill for a sharp outage.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Kill stops the server abruptly (SIGKILL, like a crash or a power cut) and
// waits for it. The data dir is kept: etcd's log is synced, Restart finds
// every key and lease again. Safe to call more than once.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts a stopped server again on the same ports and data dir
// (keys and leases survive) and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// tail returns the last n lines of the log.
func (s *Server) tail(n int) string {
	b, _ := os.ReadFile(s.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/twillnet/twill/nsrun"
)

// etcdHealthTimeout bounds how long Up waits for etcd to answer.
const etcdHealthTimeout = 20 * time.Second

// FindEtcd resolves the etcd binary: explicit (flag), then $TWILL_ETCD_BIN,
// then "etcd" next to the running twill binary, then ./bin/etcd, then $PATH.
func FindEtcd(explicit string) (string, error) {
	return findBinary("etcd", explicit, "--etcd-bin", "TWILL_ETCD_BIN",
		"etcd not found: run `make tools` (builds bin/etcd from the Go module proxy) or pass --etcd-bin")
}

// etcdArgv is the command line of the lab's etcd: clients on the underlay
// bridge address, peers on loopback, all inside the underlay namespace.
func etcdArgv(bin, dataDir string) []string {
	return []string{bin,
		"--name", "lab",
		"--data-dir", dataDir,
		"--listen-client-urls", EtcdEndpoint,
		"--advertise-client-urls", EtcdEndpoint,
		"--listen-peer-urls", "http://127.0.0.1:2380",
		"--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "lab=http://127.0.0.1:2380",
		"--initial-cluster-state", "new",
		"--log-level", "warn",
	}
}

// startEtcd starts etcd in the underlay namespace and waits until it answers.
func startEtcd(ctx context.Context, st *State) error {
	if err := os.MkdirAll(st.EtcdDataDir, 0o700); err != nil {
		return fmt.Errorf("etcd data dir: %w", err)
	}
	p, err := startDaemon(st.Underlay, etcdArgv(st.EtcdBin, st.EtcdDataDir), filepath.Join(StateDir(st.Name), "etcd.log"), nil)
	if err != nil {
		return err
	}
	st.Etcd = p
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, etcdHealthTimeout)
	defer cancel()
	for {
		if err := parent.Err(); err != nil {
			return fmt.Errorf("interrupted while waiting for etcd: %w", err)
		}
		if !p.Alive() {
			return fmt.Errorf("etcd (pid %d) exited: last log lines:\n%s", p.PID, tail(p.Log, 8))
		}
		if err := etcdHealthy(ctx, st, time.Second); err == nil {
			return nil
		} else if ctx.Err() != nil && parent.Err() == nil {
			return fmt.Errorf("etcd did not become healthy within %s (last error: %v); see %s", etcdHealthTimeout, err, p.Log)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// etcdClient returns a client for the lab's etcd. Its connections are dialled
// from inside the underlay namespace (etcd is not reachable from the root
// namespace).
func etcdClient(st *State) (*clientv3.Client, error) {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsrun.Do(st.Underlay, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{st.EtcdEndpoint},
		DialTimeout: 2 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client %s: %w", st.EtcdEndpoint, err)
	}
	return c, nil
}

// EtcdClient returns a client for lab st's etcd, dialling from inside the
// underlay namespace; the caller closes it.
func EtcdClient(st *State) (*clientv3.Client, error) { return etcdClient(st) }

// etcdHealthy asks etcd for its status within timeout.
func etcdHealthy(ctx context.Context, st *State, timeout time.Duration) error {
	c, err := etcdClient(st)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := c.Status(ctx, st.EtcdEndpoint); err != nil {
		return fmt.Errorf("etcd %s: %w", st.EtcdEndpoint, err)
	}
	return nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

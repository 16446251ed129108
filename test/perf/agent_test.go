package perf

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/subnetfile"
)

// agentProc is one `twill agent` process started by a benchmark.
type agentProc struct {
	node   string
	cmd    *exec.Cmd
	done   <-chan struct{}
	health string // host:port of /readyz and /metrics
	log    string // path of its log
}

// startAgent runs the real twill agent for node nd as a separate process in
// the root namespace with --netns nd.NS: it programs the node namespace and
// dials etcd from inside it. Its files live under a fresh root, with a
// subnet file asking for nd.Subnet in the cluster network (so the
// testbed's pod addresses fit). It
// is stopped (SIGTERM, SIGKILL after 10s) at the end of the test.
func startAgent(tb testing.TB, nd testbed.Node, network netip.Prefix, endpoint string, resync time.Duration) *agentProc {
	tb.Helper()
	root := tb.TempDir()
	gw := nd.Subnet.Masked().Addr().Next()
	info := subnetfile.Info{Network: network, Subnet: netip.PrefixFrom(gw, nd.Subnet.Bits()), MTU: 1450, IPMasq: true, Backend: "vxlan"}
	if err := subnetfile.Write(filepath.Join(root, subnetfile.TwillPath), info); err != nil {
		tb.Fatal(err)
	}
	a := &agentProc{node: nd.Name, health: freeAddr(tb), log: filepath.Join(tb.TempDir(), nd.Name+"-agent.log")}
	logf, err := os.Create(a.log)
	if err != nil {
		tb.Fatal(err)
	}
	a.cmd = exec.Command(twillBinary(tb), "agent",
		"--netns", nd.NS, "--node", nd.Name, "--iface", "eth0", "--root", root,
		"--etcd-endpoints", endpoint, "--health-addr", a.health, "--resync", resync.String())
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// It dies with the benchmark process, even a killed one.
	a.done, err = etcdtest.StartChild(a.cmd)
	logf.Close() // the child has its own copy
	if err != nil {
		tb.Fatalf("start agent %s: %v", nd.Name, err)
	}
	tb.Cleanup(a.stop)
	return a
}

func (a *agentProc) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

// waitReady polls /readyz until it answers 200, for at most d.
func (a *agentProc) waitReady(tb testing.TB, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			tb.Fatalf("agent %s exited (%v); log %s:\n%s", a.node, a.cmd.ProcessState, a.log, tail(a.log, 15))
		default:
		}
		code, body, err := a.get("/readyz")
		if err == nil && code == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s %v", code, body, err)
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("agent %s not ready after %s: %s; log %s:\n%s", a.node, d, last, a.log, tail(a.log, 15))
}

// get fetches a path of the agent's health server (bounded by 5s).
func (a *agentProc) get(path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.health+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// memory reads the agent's resident memory from /proc.
func (a *agentProc) memory(tb testing.TB) Memory {
	tb.Helper()
	m, err := ReadMemory(a.cmd.Process.Pid)
	if err != nil {
		tb.Fatalf("agent %s: %v", a.node, err)
	}
	return m
}

// metric returns the value of one unlabelled sample of /metrics (e.g.
// "twill_reconcile_duration_seconds_sum"); -1 when absent.
func (a *agentProc) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	_, body, err := a.get("/metrics")
	if err != nil {
		tb.Fatalf("agent %s /metrics: %v", a.node, err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// freeAddr returns a 127.0.0.1 TCP address that was free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

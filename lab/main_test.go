package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestMain lets the test binary act as the pod server: Up starts
// `<Self> lab serve --port P --name POD`, and in tests Self is this binary.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "lab" && os.Args[2] == "serve" {
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		port := fs.Int("port", ServerPort, "")
		name := fs.String("name", "", "")
		echo := fs.Int("echo-port", 0, "")
		_ = fs.Parse(os.Args[3:])
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := ServeEcho(ctx, *name, *port, *echo); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Real binaries for agent-mode labs, built once per test run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// realBinaries builds cmd/twill and cmd/twill-cni from this checkout (the
// agent, `twill doctor` and the CNI plugin must be the real programs) and
// returns their paths.
func realBinaries(t *testing.T) (twill, cniBin string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "twill-lab-test-bin-"); buildErr != nil {
			return
		}
		for _, b := range [][2]string{{"twill", "./cmd/twill"}, {"twill-cni", "./cmd/twill-cni"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b[0]), b[1])
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("building the real twill and twill-cni binaries: %v", buildErr)
	}
	return filepath.Join(binDir, "twill"), filepath.Join(binDir, "twill-cni")
}

// agentConfig is testConfig for an agent-mode lab: the real twill binary
// runs the agents and the pod servers, the real twill-cni makes the pods.
func agentConfig(t *testing.T, backend string, nodes, pods int) Config {
	t.Helper()
	c := testConfig(t, backend, nodes, pods)
	c.Self, c.CNIBin = realBinaries(t)
	c.Agent = true
	return c
}

// needRoot fails (never skips) when the test cannot run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it builds a lab in network namespaces (run `sudo go test ./lab/`)")
	}
}

// testConfig returns a config for a lab with a unique name, using this test
// binary as the pod server and the repo's bin/etcd.
func testConfig(t *testing.T, backend string, nodes, pods int) Config {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	etcd, err := filepath.Abs("../bin/etcd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(etcd); err != nil {
		t.Fatalf("%s missing: run `make tools` first (%v)", etcd, err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Config{Name: "twill-t-lab-" + hex.EncodeToString(b), Nodes: nodes, Pods: pods, Backend: backend,
		EtcdBin: etcd, Self: self, Out: testWriter{t}}
}

// testWriter sends progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// upLab builds a lab and registers its removal.
func upLab(t *testing.T, c Config) *State {
	t.Helper()
	t.Cleanup(func() {
		if err := Down(context.Background(), c.Name, nil); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	st, err := Up(context.Background(), c)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return st
}

// rootNetState lists the root namespace's links and routes, to prove the lab
// does not touch them.
func rootNetState(t *testing.T) string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("link %d %s %s mtu %d master %d", a.Index, a.Name, l.Type(), a.MTU, a.MasterIndex))
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		out = append(out, "route "+r.String())
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

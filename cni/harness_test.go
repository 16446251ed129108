package cni

// Test harness for the root tests: a "node" network namespace with its own
// root directory (subnet file, IPAM state), pod namespaces, the built plugin
// installed as "twill" in a CNI_PATH directory, and the real cnitool as the
// client, run inside the node namespace.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/twillnet/twill/cni/invoke"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/subnetfile"
)

// requireRoot fails (never skips) when the test cannot run: CI runs as root.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("this test needs root to create network namespaces; run it as root (CI does)")
	}
}

var (
	pluginOnce sync.Once
	pluginDir  string // holds the built plugin as "twill"
	pluginErr  error
)

// TestMain removes the built plugin after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if pluginDir != "" {
		os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

// buildPlugin builds cmd/twill-cni once into a temporary CNI_PATH directory
// under the name the conflist's "type" uses.
func buildPlugin(tb testing.TB) string {
	tb.Helper()
	pluginOnce.Do(func() {
		pluginDir, pluginErr = os.MkdirTemp("", "twill-t-cni-bin-")
		if pluginErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(pluginDir, PluginType), "./cmd/twill-cni")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginErr = fmt.Errorf("go build ./cmd/twill-cni: %v\n%s", err, out)
		}
	})
	if pluginErr != nil {
		tb.Fatal(pluginErr)
	}
	return pluginDir
}

// cnitoolPath is the real cnitool that scripts/setup.sh builds.
func cnitoolPath(tb testing.TB) string {
	tb.Helper()
	p, err := filepath.Abs("../bin/cnitool")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("%s is missing: run `make tools` (it builds the real cnitool from github.com/containernetworking/cni)", p)
	}
	return p
}

// testNode is a simulated node: a network namespace and a root directory.
type testNode struct {
	tb      testing.TB
	id      string // random, shared by every name of this node
	ns      string // node network namespace
	root    string // TWILL_ROOT
	confDir string // NETCONFPATH
	cache   string // libcni's cache (bind-mounted over /var/lib for cnitool)
	network string // CNI network name (unique: cnitool's cache is per name)
	cnitool string
	bin     string

	mu   sync.Mutex
	pods []string
}

// newNode creates the node namespace, its root with a subnet file (subnet
// and MTU as given; "" writes none) and a conflist naming the plugin.
func newNode(tb testing.TB, subnet string, mtu int) *testNode {
	tb.Helper()
	requireRoot(tb)
	n := &testNode{tb: tb, cnitool: cnitoolPath(tb), bin: buildPlugin(tb)}
	b := make([]byte, 4)
	rand.Read(b)
	n.id = hex.EncodeToString(b)
	n.ns = "twill-t-cni-" + n.id
	n.network = "twill-t-" + n.id
	dir := tb.TempDir()
	n.root = filepath.Join(dir, "root")
	n.confDir = filepath.Join(dir, "net.d")
	n.cache = filepath.Join(dir, "cache")
	for _, d := range []string{n.root, n.confDir, n.cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"twill"}]}`, n.network)
	if err := os.WriteFile(filepath.Join(n.confDir, "10-twill.conflist"), []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	if subnet != "" {
		n.writeSubnetFile(subnet, mtu)
	}
	n.ipNetnsAdd(n.ns)
	return n
}

// writeSubnetFile writes the node's subnet file as the agent does.
func (n *testNode) writeSubnetFile(subnet string, mtu int) {
	n.tb.Helper()
	n.writeSubnetInfo(subnetfile.Info{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix(subnet), MTU: mtu, IPMasq: true, Backend: "vxlan"})
}

// writeSubnetInfo writes the node's subnet file with info.
func (n *testNode) writeSubnetInfo(info subnetfile.Info) {
	n.tb.Helper()
	if err := subnetfile.Write(filepath.Join(n.root, subnetfile.TwillPath), info); err != nil {
		n.tb.Fatal(err)
	}
}

// dualStackInfo is a dual-stack subnet file: IPv4 subnet 10.244.<i>.1/24,
// IPv6 subnet fd00:10:244:<i>::1/64.
func dualStackInfo(i, mtu int) subnetfile.Info {
	return subnetfile.Info{
		Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.1/24", i)),
		IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), IPv6Subnet: netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%x::1/64", i)),
		MTU: mtu, IPMasq: true, Backend: "vxlan",
	}
}

func (n *testNode) subnetFilePath() string { return filepath.Join(n.root, subnetfile.TwillPath) }

// dataDir is the IPAM state directory (the default under TWILL_ROOT).
func (n *testNode) dataDir() string { return filepath.Join(n.root, DefaultDataDir, n.network) }

// ipNetnsAdd creates a namespace with lo up, removed when the test ends.
func (n *testNode) ipNetnsAdd(name string) {
	n.tb.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		n.tb.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n.tb.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		n.tb.Fatalf("lo up in %s: %v: %s", name, err, out)
	}
}

// newPod creates a pod namespace and returns its name.
func (n *testNode) newPod(i int) string {
	name := fmt.Sprintf("%s-p%d", n.ns, i)
	n.ipNetnsAdd(name)
	n.mu.Lock()
	n.pods = append(n.pods, name)
	n.mu.Unlock()
	return name
}

func netnsPath(pod string) string { return "/run/netns/" + pod }

// env is the environment of cnitool and the plugin.
func (n *testNode) env() []string {
	return append(os.Environ(), "CNI_PATH="+n.bin, "NETCONFPATH="+n.confDir, RootEnv+"="+n.root)
}

// cnitool runs `cnitool <cmd> <network> /run/netns/<pod>` inside the node
// namespace, in a private mount namespace whose /var/lib is the node's cache
// directory (cnitool keeps its results cache in /var/lib/cni; this keeps
// the machine's own /var/lib untouched and the nodes apart). It returns
// stdout and, on failure, an error holding stderr.
func (n *testNode) cnitoolRun(cmd, pod string) (string, error) {
	script := `mount --bind "$1" /var/lib && shift && exec "$@"`
	argv := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", n.cache,
		n.cnitool, cmd, n.network, netnsPath(pod)}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := nsrun.Do(n.ns, func() error {
		c := exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Env = n.env()
		c.Stdout, c.Stderr = &stdout, &stderr
		return c.Run()
	})
	if err != nil {
		return stdout.String(), fmt.Errorf("cnitool %s %s: %v: %s", cmd, pod, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// add runs cnitool add and parses the result.
func (n *testNode) add(pod string) *current.Result {
	n.tb.Helper()
	out, err := n.cnitoolRun("add", pod)
	if err != nil {
		n.tb.Fatal(err)
	}
	return parseResult(n.tb, out)
}

func parseResult(tb testing.TB, out string) *current.Result {
	tb.Helper()
	var res current.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		tb.Fatalf("ADD result %q: %v", out, err)
	}
	if len(res.IPs) < 1 {
		tb.Fatalf("ADD result has no IPs: %s", out)
	}
	return &res
}

func resultAddr(res *current.Result) netip.Prefix {
	p, _ := prefixOf(&res.IPs[0].Address)
	return p
}

// containerID is the ID cnitool gives the pod (a hash of its netns path).
func containerIDOf(pod string) string {
	return cnitoolContainerID(netnsPath(pod))
}

// plugin runs the plugin binary itself as a container runtime does (CNI_*
// variables, config on stdin) inside the node namespace, through package
// invoke (which the lab uses), and returns stdout.
func (n *testNode) plugin(command, containerID, pod string, conf string) (string, time.Duration, error) {
	call := invoke.Call{Plugin: filepath.Join(n.bin, PluginType), NodeNetns: n.ns, Root: n.root,
		Command: command, ContainerID: containerID, Config: []byte(conf)}
	if pod != "" {
		call.Netns = netnsPath(pod)
	}
	out, took, err := call.Run(context.Background())
	return string(out), took, err
}

// pluginConf is the plugin's config as libcni passes it (from the conflist).
func (n *testNode) pluginConf(extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"type":"twill"%s}`, n.network, extra)
}

// withNS runs fn with a netlink handle in the named namespace.
func withNS(tb testing.TB, name string, fn func(h *netlink.Handle)) {
	tb.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer h.Close()
	fn(h)
}

// link returns the named link in the namespace (fails the test if absent).
func link(tb testing.TB, ns, name string) netlink.Link {
	tb.Helper()
	var l netlink.Link
	withNS(tb, ns, func(h *netlink.Handle) {
		var err error
		l, err = h.LinkByName(name)
		if err != nil {
			tb.Fatalf("%s in %s: %v", name, ns, err)
		}
	})
	return l
}

// linkExists tells whether the named link exists in the namespace.
func linkExists(tb testing.TB, ns, name string) bool {
	var ok bool
	withNS(tb, ns, func(h *netlink.Handle) {
		_, err := h.LinkByName(name)
		ok = err == nil
	})
	return ok
}

// listen starts a TCP echo-once server in a namespace and returns its port.
// It closes when the test ends.
func listen(tb testing.TB, ns string, ip netip.Addr) int {
	tb.Helper()
	var ln net.Listener
	err := nsrun.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 64)
				k, _ := c.Read(buf)
				c.Write(append([]byte("echo:"), buf[:k]...))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// dial sends one line over TCP from a namespace and returns the reply
// (bounded: 3 s).
func dial(ns string, ip netip.Addr, port int, msg string) (string, error) {
	var reply string
	err := nsrun.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), fmt.Sprint(port)), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, 128)
		k, err := c.Read(buf)
		reply = string(buf[:k])
		return err
	})
	return reply, err
}

// cnitoolContainerID is the container ID cnitool derives from a netns path.
func cnitoolContainerID(path string) string {
	sum := sha512.Sum512([]byte(path))
	return fmt.Sprintf("cnitool-%x", sum[:10])
}

// runCmd runs a command in the test's own namespace.
func runCmd(argv ...string) ([]byte, error) {
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

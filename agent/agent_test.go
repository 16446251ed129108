package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/subnetfile"
)

// running is one agent started by a test.
type running struct {
	root   string
	health string
	cancel context.CancelFunc
	done   chan error
	store  *etcd.Store
	once   sync.Once
	logs   *logBuffer
}

// logBuffer collects an agent's log lines (safe for concurrent use).
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgent runs a real agent in-process for testbed node nd, against the
// etcd at endpoint, with its files under root.
func startAgent(t *testing.T, endpoint string, nd testbed.Node, root string, cfg *netconf.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store, err := etcd.New(ctx, etcd.Options{Endpoints: []string{endpoint}, TTL: 3 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := firewall.New(firewall.BackendNft, nd.NS)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{root: root, cancel: cancel, done: make(chan error, 1), store: store, logs: &logBuffer{}}
	healthCh := make(chan string, 1)
	opt := Options{
		Node: nd.Name, Iface: "eth0", Root: root, NetConf: cfg, Resync: 300 * time.Millisecond,
		HealthAddr: "127.0.0.1:0", OnHealth: func(a string) { healthCh <- a },
		Log: slog.New(slog.NewTextHandler(r.logs, nil)),
	}
	go func() {
		r.done <- Run(ctx, opt, Deps{Store: store, Kernel: NodeKernel{Netns: nd.NS, Root: root}, Firewall: &NodeFirewall{Backend: fw}})
	}()
	select {
	case r.health = <-healthCh:
	case err := <-r.done:
		t.Fatalf("agent %s exited: %v", nd.Name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s: no health server after 10s", nd.Name)
	}
	t.Cleanup(r.stop)
	return r
}

// leave stops the agent and releases its lease, as `twill uninstall` does.
func (r *running) leave(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		<-r.done
		if err := r.store.Release(context.Background()); err != nil {
			t.Errorf("release: %v", err)
		}
		r.store.Close()
	})
}

func (r *running) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			panic("agent did not stop within 10s of its context being cancelled")
		}
		r.store.Close()
	})
}

// get fetches a health endpoint and returns status code and body.
func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.health + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// repairs returns twill_repairs_total{kind} from /metrics.
func (r *running) repairs(t *testing.T, kind string) int {
	_, body := r.get(t, "/metrics")
	m := regexp.MustCompile(`twill_repairs_total\{kind="` + regexp.QuoteMeta(kind) + `"\} (\d+)`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// eventually polls cond every 100ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
}

// seedSubnetFile makes the node ask for the subnet the testbed's pod already uses.
func seedSubnetFile(t *testing.T, root string, nd testbed.Node) {
	t.Helper()
	info := subnetfile.Info{Network: testbed.Network, Subnet: subnetfile.Gateway(nd.Subnet), MTU: 1450, IPMasq: true, Backend: "vxlan"}
	if err := subnetfile.Write(filepath.Join(root, subnetfile.TwillPath), info); err != nil {
		t.Fatal(err)
	}
}

// startAgents runs one agent per testbed node (vxlan, 10.244.0.0/16), each
// asking for its node's subnet, with a server on port 8080 in every pod.
func startAgents(t *testing.T, c *testbed.Cluster, endpoint string) ([]*running, netconf.Config) {
	t.Helper()
	cfg, err := netconf.Parse("test", []byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var agents []*running
	for _, nd := range c.Nodes {
		root := t.TempDir()
		seedSubnetFile(t, root, nd)
		testbed.Serve(t, nd.Pod, 8080)
		agents = append(agents, startAgent(t, endpoint, nd, root, &cfg))
	}
	return agents, cfg
}

func TestAgentsBuildThePodNetworkAndRepairDrift(t *testing.T) {
	c := testbed.New(t, "agent", 3)
	endpoint, _ := etcdtest.Start(t)
	agents, cfg := startAgents(t, c, endpoint)
	for i, a := range agents {
		eventually(t, 15*time.Second, c.Nodes[i].Name+" ready", func() error {
			if code, body := a.get(t, "/readyz"); code != 200 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	// Every pod reaches every other pod, and sees the real pod address.
	callAll := func() error {
		for _, from := range c.Nodes {
			for _, to := range c.Nodes {
				got, err := testbed.Call(from.Pod, to.PodIP, 8080)
				if err != nil {
					return err
				}
				if got != from.PodIP.String() {
					return fmt.Errorf("%s saw %s, want %s (pod-to-pod must not be masqueraded)", to.Name, got, from.PodIP)
				}
			}
		}
		return nil
	}
	eventually(t, 10*time.Second, "pod-to-pod across nodes", callAll)
	// Pod to outside is masqueraded: the outside sees the node's address.
	testbed.Serve(t, c.Outside, 9090)
	got, err := testbed.Call(c.Nodes[0].Pod, c.OutsideIP, 9090)
	if err != nil || got != c.Nodes[0].IP.String() {
		t.Fatalf("pod -> outside: saw %q (%v), want the node address %s", got, err, c.Nodes[0].IP)
	}
	// The subnet file is the one the CNI plugin reads.
	b, err := os.ReadFile(filepath.Join(agents[0].root, subnetfile.TwillPath))
	if err != nil || !strings.Contains(string(b), "TWILL_SUBNET=10.244.1.1/24") || !strings.Contains(string(b), "TWILL_MTU=1450") {
		t.Fatalf("subnet file: %q %v", b, err)
	}

	// Drift: remove an FDB entry, a route and the masquerade rule, flip
	// bridge-nf-call-iptables: each comes back and is counted.
	n1 := c.Nodes[0]
	// Nodes joining one after the other is programming, not drift.
	for _, k := range []string{"route", "neighbor", "fdb"} {
		if n := agents[0].repairs(t, k); n != 0 {
			t.Fatalf("peers joining counted as %d %s repairs", n, k)
		}
	}
	before := map[string]int{}
	for _, k := range []string{"fdb", "route", "masquerade", "sysctl"} {
		before[k] = agents[0].repairs(t, k)
	}
	testbed.In(t, n1.NS, "bridge", "fdb", "del", "0e:74:c0:a8:4d:0c", "dev", "twill.1", "dst", "192.168.77.12")
	testbed.In(t, n1.NS, "ip", "route", "del", "10.244.3.0/24")
	testbed.In(t, n1.NS, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
	out := testbed.In(t, n1.NS, "nft", "-a", "list", "chain", "inet", "twill", "postrouting")
	h := regexp.MustCompile(`masquerade.*# handle (\d+)`).FindStringSubmatch(out)
	if h == nil {
		t.Fatalf("no masquerade rule in:\n%s", out)
	}
	testbed.In(t, n1.NS, "nft", "delete", "rule", "inet", "twill", "postrouting", "handle", h[1])
	eventually(t, 5*time.Second, "drift repaired and counted", func() error {
		for _, k := range []string{"fdb", "route", "masquerade", "sysctl"} {
			if agents[0].repairs(t, k) <= before[k] {
				return fmt.Errorf("twill_repairs_total{kind=%q} did not grow", k)
			}
		}
		return nil
	})
	eventually(t, 5*time.Second, "traffic after repair", callAll)

	// Restart node1's agent while a TCP stream runs from node1's pod to
	// node2's: the stream must not notice.
	stream := startStream(t, n1.Pod, c.Nodes[1].Pod, c.Nodes[1].PodIP)
	agents[0].stop()
	agents[0] = startAgent(t, endpoint, n1, agents[0].root, &cfg)
	eventually(t, 10*time.Second, "restarted agent ready", func() error {
		if code, body := agents[0].get(t, "/readyz"); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if l, ok := agents[0].store.Lease(); !ok || l.Subnet != n1.Subnet {
		t.Fatalf("restarted node got %v, want %s back", l.Subnet, n1.Subnet)
	}
	if tbl := testbed.In(t, n1.NS, "nft", "list", "table", "inet", "twill"); strings.Count(tbl, " masquerade comment") != 1 {
		t.Fatalf("after restart: want exactly one masquerade rule:\n%s", tbl)
	}
	if err := callAll(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a few resyncs of the restarted agent
	if n, err := stream.stop(); err != nil || n < 10 {
		t.Fatalf("TCP stream across the restart: %d round trips, error %v", n, err)
	}

	// A node leaves (releases its lease), another dies (its lease expires):
	// node1 removes their routes either way.
	agents[2].leave(t)
	routeGone(t, n1.NS, c.Nodes[2].Subnet, 5*time.Second)
	agents[1].cancel() // no release: the 3s TTL runs out
	routeGone(t, n1.NS, c.Nodes[1].Subnet, 15*time.Second)

	// Uninstall node1: nothing of twill is left, the lease is released.
	agents[0].stop()
	// A pod as the CNI plugin leaves it: a host veth on bridge cni0.
	testbed.In(t, n1.NS, "ip", "link", "add", "cni0", "type", "bridge")
	testbed.In(t, n1.NS, "ip", "link", "add", "vethpod1", "type", "veth", "peer", "name", "podend1")
	testbed.In(t, n1.NS, "ip", "link", "set", "vethpod1", "master", "cni0")
	done, err := Uninstall(context.Background(), UninstallOptions{Netns: n1.NS, Root: agents[0].root, Iface: "eth0"})
	if err != nil {
		t.Fatalf("uninstall: %v (did: %v)", err, done)
	}
	s, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: n1.NS, Root: agents[0].root})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range s.Links {
		if strings.HasPrefix(l.Name, "twill") || l.Name == "cni0" || l.Name == "vethpod1" || l.Name == "podend1" {
			t.Errorf("uninstall left link %s", l.Name)
		}
	}
	if strings.Contains(s.Nftables.JSON, `"twill"`) {
		t.Errorf("uninstall left the nft table: %s", s.Nftables.JSON)
	}
	if _, err := os.Stat(filepath.Join(agents[0].root, subnetfile.TwillPath)); !os.IsNotExist(err) {
		t.Errorf("uninstall left the subnet file: %v", err)
	}
	for _, r := range s.Routes {
		if r.Table == 254 && testbed.Network.Contains(r.Dst.Addr()) && r.Dev != "vpod" {
			t.Errorf("uninstall left route %s dev %s", r.Dst, r.Dev)
		}
	}
	st, err := etcd.New(context.Background(), etcd.Options{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if l, ok, err := st.ReleaseNode(context.Background(), n1.Name); err != nil || !ok || l.Subnet != n1.Subnet {
		t.Fatalf("release node1's lease: %v %v %v", l.Subnet, ok, err)
	}
	if _, ok, _ := st.ReleaseNode(context.Background(), n1.Name); ok {
		t.Fatal("node1's lease released twice")
	}
}

// routeGone waits until ns has no route to dst.
func routeGone(t *testing.T, ns string, dst netip.Prefix, within time.Duration) {
	t.Helper()
	eventually(t, within, "route "+dst.String()+" removed", func() error {
		s, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: ns})
		if err != nil {
			return err
		}
		for _, r := range s.Routes {
			if r.Dst == dst {
				return fmt.Errorf("route %s still there", r.Dst)
			}
		}
		return nil
	})
}

// stream is a TCP connection kept busy with round trips until stopped.
type stream struct {
	stopc chan struct{}
	done  chan struct{}
	n     int
	err   error
}

// startStream runs an echo server in server's namespace and a client in
// client's that sends a line every 20ms and reads it back.
func startStream(t *testing.T, client, server string, serverIP netip.Addr) *stream {
	t.Helper()
	var ln net.Listener
	if err := nsrun.Do(server, func() error {
		var err error
		ln, err = net.Listen("tcp4", ":8081")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		ln.Close() // one stream per listener: the port is free for the next
		if err != nil {
			return
		}
		io.Copy(conn, conn)
		conn.Close()
	}()
	var conn net.Conn
	if err := nsrun.Do(client, func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", netip.AddrPortFrom(serverIP, 8081).String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &stream{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer conn.Close()
		buf := make([]byte, 5)
		for {
			select {
			case <-s.stopc:
				return
			case <-time.After(20 * time.Millisecond):
			}
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				s.err = err
				return
			}
			if _, err := io.ReadFull(conn, buf); err != nil {
				s.err = err
				return
			}
			s.n++
		}
	}()
	return s
}

// stop ends the stream and returns the round trips made and the first error.
func (s *stream) stop() (int, error) {
	close(s.stopc)
	<-s.done
	return s.n, s.err
}

func TestInvalidConfigChangesNothing(t *testing.T) {
	c := testbed.New(t, "agentbad", 1)
	endpoint, _ := etcdtest.Start(t)
	nd := c.Nodes[0]
	before := testbed.In(t, nd.NS, "ip", "-d", "link") + testbed.In(t, nd.NS, "ip", "route")
	store, err := etcd.New(context.Background(), etcd.Options{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, c := range []struct{ name, conf, want string }{
		// A pod network that overlaps the node's own underlay network.
		{"overlap", `{"Network": "192.168.0.0/16"}`, "overlaps the node network"},
		// A dual-stack or IPv6 net-conf on a node without IPv6 on its underlay.
		{"dual stack", `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`, "the cluster runs IPv6 (EnableIPv6, IPv6Network fd00:10:244::/56), but interface eth0 has no global IPv6 address"},
		{"ipv6 only", `{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`, "interface eth0 has no global IPv6 address"},
	} {
		cfg, err := netconf.Parse("test", []byte(c.conf))
		if err != nil {
			t.Fatal(err)
		}
		err = Run(context.Background(), Options{Node: nd.Name, Iface: "eth0", Root: t.TempDir(), NetConf: &cfg, HealthAddr: "off", Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
			Deps{Store: store, Kernel: NodeKernel{Netns: nd.NS}})
		if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: got %v, want a config error with %q", c.name, err, c.want)
		}
		after := testbed.In(t, nd.NS, "ip", "-d", "link") + testbed.In(t, nd.NS, "ip", "route")
		if before != after {
			t.Fatalf("%s: node changed:\nbefore:\n%s\nafter:\n%s", c.name, before, after)
		}
	}
}

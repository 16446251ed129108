package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	labpkg "github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/nsrun"
)

// The pod-network tests (issue 3) run against the lab TestMain built: three
// nodes with real agents (vxlan) and pods made by twill-cni. TestHostGW
// builds its own host-gw lab.

func nodeNS(lab, node string) string { return lab + "-" + node }

// everyPairTalks calls every pod from every pod and checks that the server
// saw the caller's own address (pod-to-pod is never masqueraded).
func everyPairTalks(t *testing.T, name string) {
	t.Helper()
	st := status(t, name)
	n := 0
	for _, from := range allPods(st) {
		for _, to := range allPods(st) {
			r := tw(t, "lab", "call", from.name, to.ip+":8080", "--timeout", "2s", "--name", name)
			if r.code != 0 {
				t.Errorf("%s -> %s (%s): %s", from.name, to.name, to.ip, r.out)
				continue
			}
			if !strings.Contains(r.out, to.name+" "+from.ip+":") {
				t.Errorf("%s -> %s: server answered %q, want it to see %s", from.name, to.name, strings.TrimSpace(r.out), from.ip)
			}
			n++
		}
	}
	if n < 36 && len(allPods(st)) == 6 {
		t.Errorf("only %d of 36 pod pairs talked", n)
	}
}

type pod struct{ name, ip, node string }

func allPods(st labStatus) []pod {
	var out []pod
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			out = append(out, pod{p.Name, p.IP, n.Name})
		}
	}
	return out
}

// outsideServer listens on the lab's underlay (192.168.77.1, outside the pod
// network) and answers each connection with the address it saw.
func outsideServer(t *testing.T, name string, port int) {
	t.Helper()
	stop, err := labpkg.OutsideServer(name, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

func checkMasquerade(t *testing.T, name string) {
	t.Helper()
	outsideServer(t, name, 9999)
	r := tw(t, "lab", "call", "node1-a", "192.168.77.1:9999", "--timeout", "2s", "--name", name)
	if r.code != 0 || !strings.Contains(r.out, "outside 192.168.77.11:") {
		t.Fatalf("pod -> outside: %q (exit %d), want the outside to see node1's address 192.168.77.11", strings.TrimSpace(r.out), r.code)
	}
}

func TestPodsTalkAndLeaveMasqueraded(t *testing.T) {
	everyPairTalks(t, labName)
	checkMasquerade(t, labName)
}

// metric reads one sample of a node agent's /metrics, fetched from inside
// the node's namespace (the agent listens on the node's 127.0.0.1).
func metric(t *testing.T, name, node, series string) int {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return nsrun.Dialer(nodeNS(name, node))(ctx, addr)
		},
	}}
	resp, err := c.Get("http://127.0.0.1:9473/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", node, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(regexp.QuoteMeta(series) + ` (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// within polls cond every 200ms until it holds or d passes.
func within(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	end := time.Now().Add(d)
	var err error
	for time.Now().Before(end) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, d, err)
}

// inNode runs a command in a lab node (via `lab exec`) and returns its output.
func inNode(t *testing.T, node string, argv ...string) string {
	t.Helper()
	args := append([]string{"lab", "exec", node, "--name", labName, "--"}, argv...)
	r := tw(t, args...)
	if r.code != 0 {
		t.Fatalf("%s: %s: exit %d\n%s", node, strings.Join(argv, " "), r.code, r.out)
	}
	return r.out
}

func TestDriftIsRepairedAndCounted(t *testing.T) {
	st := status(t, labName)
	node2 := st.Nodes[1]
	kinds := []string{"fdb", "route", "masquerade", "sysctl"}
	before := map[string]int{}
	for _, k := range kinds {
		before[k] = metric(t, labName, "node1", `twill_repairs_total{kind="`+k+`"}`)
	}
	fdb := inNode(t, "node1", "bridge", "fdb", "show", "dev", "twill.1")
	var mac string
	for _, l := range strings.Split(fdb, "\n") {
		if strings.Contains(l, "dst "+node2.IP) {
			mac = strings.Fields(l)[0]
		}
	}
	if mac == "" {
		t.Fatalf("no FDB entry toward node2 (%s) on node1:\n%s", node2.IP, fdb)
	}
	inNode(t, "node1", "bridge", "fdb", "del", mac, "dev", "twill.1", "dst", node2.IP)
	inNode(t, "node1", "ip", "route", "del", st.Nodes[2].Subnet)
	inNode(t, "node1", "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
	chain := inNode(t, "node1", "nft", "-a", "list", "chain", "inet", "twill", "postrouting")
	h := regexp.MustCompile(`masquerade.*# handle (\d+)`).FindStringSubmatch(chain)
	if h == nil {
		t.Fatalf("no masquerade rule on node1:\n%s", chain)
	}
	inNode(t, "node1", "nft", "delete", "rule", "inet", "twill", "postrouting", "handle", h[1])
	start := time.Now()
	// The lab's agents resync every 2s.
	within(t, 10*time.Second, "every drift repaired and counted", func() error {
		for _, k := range kinds {
			if metric(t, labName, "node1", `twill_repairs_total{kind="`+k+`"}`) <= before[k] {
				return fmt.Errorf("twill_repairs_total{kind=%q} still %d", k, before[k])
			}
		}
		return nil
	})
	t.Logf("all four drifts repaired in %s", time.Since(start).Round(100*time.Millisecond))
	if v := strings.TrimSpace(inNode(t, "node1", "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables")); v != "1" {
		t.Fatalf("bridge-nf-call-iptables = %s after repair", v)
	}
	if ok, out := call(t, "node1-a", resolve(t, "node2-a:8080")); !ok {
		t.Fatalf("cross-node call after repair: %s", out)
	}
}

func TestAgentKillDoesNotDisturbPods(t *testing.T) {
	subnetBefore := readSubnetFile(t, "node1")
	// A TCP stream from node2's pod to node1's pod runs while node1's agent
	// is killed with SIGKILL and started again.
	target := resolve(t, "node1-a:8081")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream := exec.CommandContext(ctx, twill, "lab", "stream", "node2-a", target, "--for", "8s", "--name", labName)
	var out strings.Builder
	stream.Stdout, stream.Stderr = &out, &out
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	lab(t, "agent", "node1", "kill")
	time.Sleep(time.Second)
	lab(t, "agent", "node1", "start")
	if err := stream.Wait(); err != nil {
		t.Fatalf("stream across the agent kill: %v\n%s", err, out.String())
	}
	t.Logf("stream: %s", strings.TrimSpace(out.String()))
	if after := readSubnetFile(t, "node1"); after != subnetBefore {
		t.Fatalf("subnet file changed across the restart:\n%s\n->\n%s", subnetBefore, after)
	}
	table := inNode(t, "node1", "nft", "list", "table", "inet", "twill")
	if n := strings.Count(table, "masquerade comment"); n != 1 {
		t.Fatalf("%d masquerade rules after the restart, want 1:\n%s", n, table)
	}
	routes := inNode(t, "node1", "ip", "route", "show", "dev", "twill.1")
	if n := len(strings.Split(strings.TrimSpace(routes), "\n")); n != 2 {
		t.Fatalf("node1 has %d routes on twill.1, want 2 (one per peer):\n%s", n, routes)
	}
}

func readSubnetFile(t *testing.T, node string) string {
	t.Helper()
	for _, n := range status(t, labName).Nodes {
		if n.Name == node {
			b, err := os.ReadFile(filepath.Join(n.Root, "run/twill/subnet.env"))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("no node %s", node)
	return ""
}

func TestDockerForwardDropDoesNotStopPods(t *testing.T) {
	// Docker's doing on node2, behind the agent's back (not a lab scenario:
	// the agent keeps running).
	inNode(t, "node2", "iptables-nft", "-N", "DOCKER-USER")
	inNode(t, "node2", "iptables-nft", "-A", "DOCKER-USER", "-j", "RETURN")
	inNode(t, "node2", "iptables-nft", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
	inNode(t, "node2", "iptables-nft", "-P", "FORWARD", "DROP")
	defer func() {
		inNode(t, "node2", "iptables-nft", "-P", "FORWARD", "ACCEPT")
		inNode(t, "node2", "iptables-nft", "-D", "FORWARD", "-j", "DOCKER-USER")
		// The agent keeps its accept in DOCKER-USER while the chain exists,
		// and may put it back between the flush and the delete: retry.
		within(t, 10*time.Second, "DOCKER-USER removed from node2", func() error {
			inNode(t, "node2", "iptables-nft", "-F", "DOCKER-USER")
			args := []string{"lab", "exec", "node2", "--name", labName, "--", "iptables-nft", "-X", "DOCKER-USER"}
			if r := tw(t, args...); r.code != 0 {
				return fmt.Errorf("iptables-nft -X DOCKER-USER: exit %d: %s", r.code, r.out)
			}
			return nil
		})
	}()
	target := resolve(t, "node2-a:8080")
	within(t, 10*time.Second, "pod traffic into node2 with FORWARD DROP", func() error {
		if ok, out := call(t, "node1-a", target); !ok {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	if rules := inNode(t, "node2", "iptables-nft", "-S", "DOCKER-USER"); !strings.Contains(rules, "twill") {
		t.Fatalf("the agent's accept is not in DOCKER-USER:\n%s", rules)
	}
}

func TestEtcdDownTrafficFlowsAgentsRecover(t *testing.T) {
	lab(t, "etcd", "stop")
	started := false
	defer func() {
		if !started {
			lab(t, "etcd", "start")
		}
	}()
	target := resolve(t, "node3-b:8080")
	end := time.Now().Add(30 * time.Second)
	calls := 0
	for time.Now().Before(end) {
		if ok, out := call(t, "node1-a", target); !ok {
			t.Fatalf("call with etcd down (after %d good calls): %s", calls, out)
		}
		calls++
		time.Sleep(2 * time.Second)
	}
	lab(t, "etcd", "start")
	started = true
	within(t, 30*time.Second, "agents ready again", func() error {
		if st := status(t, labName); !st.Healthy {
			return fmt.Errorf("lab not healthy: %v", st.Problems)
		}
		return nil
	})
	if got := metric(t, labName, "node1", "twill_ready"); got != 1 {
		t.Fatalf("node1 twill_ready = %d", got)
	}
	t.Logf("%d calls succeeded while etcd was down for 30s", calls)
}

func TestInvalidNetConfChangesNothing(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "net-conf.json")
	os.WriteFile(bad, []byte(`{"Network": "10.244.0.0/16", "SubnetLen": 33, "Backend": {"Type": "vxlan"}}`), 0o644)
	// The node's running agent stays; counters move with traffic, so compare without them.
	counters := regexp.MustCompile(`counter packets \d+ bytes \d+`)
	state := func() string {
		return counters.ReplaceAllString(inNode(t, "node1", "ip", "-o", "link")+inNode(t, "node1", "ip", "route")+inNode(t, "node1", "nft", "list", "ruleset"), "counter")
	}
	before := state()
	args := []string{"lab", "exec", "node1", "--name", labName, "--", twill, "agent", "--node", "node1", "--net-conf", bad, "--health-addr", "off"}
	r := tw(t, args...)
	if r.code != 2 || !strings.Contains(r.out, "SubnetLen 33") {
		t.Fatalf("agent with a bad net-conf: exit %d, output %q; want exit 2 naming SubnetLen 33", r.code, r.out)
	}
	if after := state(); before != after {
		t.Fatalf("node changed by an agent that refused its config:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// rogue attaches a namespace to the lab's underlay switch, as an attacker on
// the node network would be.
func rogue(t *testing.T) string {
	t.Helper()
	ns := labName + "-rogue"
	run := func(argv ...string) {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "rogue0", "netns", labName+"-underlay")
	run("ip", "-n", labName+"-underlay", "link", "set", "rogue0", "master", "br0", "up")
	run("ip", "-n", ns, "addr", "add", "192.168.77.250/24", "dev", "eth0")
	run("ip", "-n", ns, "link", "set", "eth0", "up")
	return ns
}

func TestVxlanGuardDropsStrangers(t *testing.T) {
	ns := rogue(t)
	counter := func() int {
		out := inNode(t, "node1", "nft", "list", "chain", "inet", "twill", "input")
		m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no guard counter on node1:\n%s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := counter()
	// A vxlan header (VNI 1) and an inner Ethernet frame aimed at node1's pods.
	pkt := append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, make([]byte, 60)...)
	err := nsrun.Do(ns, func() error {
		c, err := net.Dial("udp4", "192.168.77.11:8472")
		if err != nil {
			return err
		}
		defer c.Close()
		for range 5 {
			if _, err := c.Write(pkt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	within(t, 3*time.Second, "guard drops the stranger's vxlan packets", func() error {
		if got := counter() - before; got < 5 {
			return fmt.Errorf("guard counted %d of 5 packets", got)
		}
		return nil
	})
	// Peers are still welcome.
	if ok, out := call(t, "node2-a", resolve(t, "node1-a:8080")); !ok {
		t.Fatalf("peer traffic after the rogue: %s", out)
	}
}

func TestNodeLeavesPeersForgetIt(t *testing.T) {
	// Runs last among the pod-network tests (it removes node3's networking).
	st := status(t, labName)
	node3 := st.Nodes[2]
	lab(t, "agent", "node3", "stop")
	if store == "kubernetes" {
		// The node is deleted from the API (kubectl delete node node3).
		lab(t, "node", "delete", "node3")
	}
	r := tw(t, "lab", "exec", "node3", "--name", labName, "--", twill, "uninstall", "--node", "node3", "--store", store)
	if r.code != 0 {
		t.Fatalf("uninstall on node3: exit %d\n%s", r.code, r.out)
	}
	if store == "etcd" && !strings.Contains(r.out, "released lease "+node3.Subnet) {
		t.Fatalf("uninstall on node3 did not release the lease:\n%s", r.out)
	}
	for _, node := range []string{"node1", "node2"} {
		within(t, 10*time.Second, node+" forgets node3", func() error {
			if routes := inNode(t, node, "ip", "route"); strings.Contains(routes, node3.Subnet) {
				return fmt.Errorf("route to %s still on %s", node3.Subnet, node)
			}
			return nil
		})
	}
	left := inNode(t, "node3", "ip", "-o", "link")
	sc := bufio.NewScanner(strings.NewReader(left))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "twill.1") || strings.Contains(sc.Text(), " cni0:") {
			t.Errorf("uninstall left a link on node3: %s", sc.Text())
		}
	}
}

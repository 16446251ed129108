package firewall

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/backend/kernel"
	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
)

const port = 8080

// overlay builds a 2-node vxlan cluster with twill's backend, servers in
// every pod and outside.
func overlay(t *testing.T, tag string) *testbed.Cluster {
	t.Helper()
	c := testbed.New(t, tag, 2)
	program(t, c, false)
	return c
}

// program applies twill's vxlan backend on every node of c (with v6 both
// families: c.AddIPv6 must have run) and serves in every pod and outside.
func program(t *testing.T, c *testbed.Cluster, v6 bool) {
	t.Helper()
	var leases []lease.Lease
	for _, n := range c.Nodes {
		l := lease.Lease{Subnet: n.Subnet, Attrs: lease.Attrs{PublicIP: n.IP, BackendType: "vxlan", Node: n.Name,
			BackendData: &lease.BackendData{VtepMAC: backend.VtepMAC(n.IP)}}}
		if v6 {
			l.IPv6Subnet, l.Attrs.PublicIPv6 = n.Subnet6, n.IPv6
			l.Attrs.BackendV6Data = &lease.BackendData{VtepMAC: backend.VtepMAC(n.IPv6)}
		}
		leases = append(leases, l)
	}
	for i, n := range c.Nodes {
		bn := backend.Node{Self: leases[i], Peers: leases, Config: netconf.Config{Network: testbed.Network},
			UnderlayDev: "eth0", UnderlayIP: n.IP, UnderlayMTU: 1500, UnderlayNets: []netip.Prefix{testbed.Segment}}
		if v6 {
			bn.Config.IPv6Network, bn.UnderlayIPv6, bn.UnderlayNets6 = testbed.Network6, n.IPv6, []netip.Prefix{testbed.Segment6}
		}
		d, err := backend.Compute(bn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kernel.Apply(context.Background(), n.NS, backend.Diff(d, nil)); err != nil {
			t.Fatal(err)
		}
		testbed.Serve(t, n.Pod, port)
	}
	testbed.Serve(t, c.Outside, port)
}

func specFor(c *testbed.Cluster, i int) Spec {
	s := Spec{Network: testbed.Network, Subnet: c.Nodes[i].Subnet, IPMasq: true, VXLANPort: 8472}
	for j, n := range c.Nodes {
		if j != i {
			s.Peers = append(s.Peers, n.IP)
		}
	}
	return s
}

func ensure(t *testing.T, b Backend, s Spec) []Repair {
	t.Helper()
	rs, err := b.Ensure(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func kinds(rs []Repair) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		m[r.Kind]++
	}
	return m
}

func seen(t *testing.T, ns string, addr netip.Addr) string {
	t.Helper()
	got, err := testbed.Call(ns, addr, port)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// guardDrops reads the packet counter of the nft guard rule.
func guardDrops(t *testing.T, ns string) int {
	t.Helper()
	out := testbed.In(t, ns, "nft", "list", "chain", "inet", "twill", "input")
	m := counterRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in the guard chain:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// vxlanFrame is a vxlan header (VNI 1) and a small Ethernet frame.
var vxlanFrame = append([]byte{0x08, 0, 0, 0, 0, 0, 1, 0}, make([]byte, 60)...)

// arrivals counts, on a node, the vxlan packets that come from addr (a probe
// table of the test's own, hooked before everything).
func arrivals(t *testing.T, ns string, from netip.Addr) int {
	t.Helper()
	if _, err := testbed.Try(ns, "nft", "list", "table", "inet", "probe"); err != nil {
		testbed.In(t, ns, "nft", "add table inet probe")
		testbed.In(t, ns, "nft", "add chain inet probe in { type filter hook input priority raw ; }")
		testbed.In(t, ns, "nft", "add rule inet probe in ip saddr "+from.String()+" udp dport 8472 counter")
	}
	out := testbed.In(t, ns, "nft", "list", "chain", "inet", "probe", "in")
	m := counterRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in the probe chain:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkPodInjection: a vxlan frame that a pod of node1 sends to node2's
// underlay address is dropped on node1 (counted by podDrops), never reaches
// node2; with the pod guard flushed by flush, it would (the test can fail).
func checkPodInjection(t *testing.T, c *testbed.Cluster, podDrops func() int, flush func()) {
	t.Helper()
	n1, n2 := c.Nodes[0], c.Nodes[1]
	before, got := podDrops(), arrivals(t, n2.NS, n1.IP)
	if err := testbed.SendUDP(n1.Pod, n2.IP, 8472, vxlanFrame); err != nil {
		t.Fatal(err)
	}
	if d := podDrops(); d != before+1 {
		t.Errorf("pod guard counter %d -> %d: want the pod's vxlan frame dropped", before, d)
	}
	if a := arrivals(t, n2.NS, n1.IP); a != got {
		t.Errorf("node2 received %d vxlan packets from node1's address after a pod's injection: want none", a-got)
	}
	flush()
	if err := testbed.SendUDP(n1.Pod, n2.IP, 8472, vxlanFrame); err != nil {
		t.Fatal(err)
	}
	if a := arrivals(t, n2.NS, n1.IP); a != got+1 {
		t.Errorf("without the pod guard node2 received %d injected packets, want 1: the test proves nothing", a-got)
	}
}

// checkMasquerade: pods reach the outside as their node, each other as themselves.
func checkMasquerade(t *testing.T, c *testbed.Cluster) {
	t.Helper()
	if got := seen(t, c.Nodes[0].Pod, c.OutsideIP); got != c.Nodes[0].IP.String() {
		t.Errorf("outside saw pod of node1 as %s, want the node's address %s", got, c.Nodes[0].IP)
	}
	if got := seen(t, c.Nodes[0].Pod, c.Nodes[1].PodIP); got != c.Nodes[0].PodIP.String() {
		t.Errorf("pod of node2 saw pod of node1 as %s, want %s (pod-to-pod must not be masqueraded)", got, c.Nodes[0].PodIP)
	}
}

func TestNftBackend(t *testing.T) {
	c := overlay(t, "fwn")
	n1 := c.Nodes[0]
	if _, err := testbed.Call(n1.Pod, c.OutsideIP, port); err == nil {
		t.Fatal("pod reaches the outside before any masquerade: the test proves nothing")
	}
	b, _ := New(BackendNft, n1.NS)
	b2, _ := New(BackendNft, c.Nodes[1].NS)
	ensure(t, b2, specFor(c, 1))
	k := kinds(ensure(t, b, specFor(c, 0)))
	if k[KindMasquerade] != 1 || k[KindForward] != 2 || k[KindGuard] != 3 {
		t.Errorf("first Ensure repairs by kind %v: want masquerade 1, forward 2, guard 3 (rules + peer)", k)
	}
	if rs := ensure(t, b, specFor(c, 0)); len(rs) != 0 {
		t.Errorf("second Ensure repaired %v: want nothing", rs)
	}
	checkMasquerade(t, c)

	// Drift: the masquerade rule deleted by hand.
	testbed.In(t, n1.NS, "nft", "flush", "chain", "inet", "twill", "postrouting")
	if rs := ensure(t, b, specFor(c, 0)); len(rs) != 1 || rs[0].Kind != KindMasquerade {
		t.Errorf("after deleting the masquerade rule: repairs %v, want one masquerade", rs)
	}
	checkMasquerade(t, c)

	// Guard: a stranger's vxlan packet is dropped, a peer's is not.
	before := guardDrops(t, n1.NS)
	if err := testbed.SendUDP(c.Outside, n1.IP, 8472, vxlanFrame); err != nil {
		t.Fatal(err)
	}
	if err := testbed.SendUDP(c.Nodes[1].NS, n1.IP, 8472, vxlanFrame); err != nil {
		t.Fatal(err)
	}
	if after := guardDrops(t, n1.NS); after != before+1 {
		t.Errorf("guard counter %d -> %d: want exactly the stranger's packet dropped", before, after)
	}
	// A pod cannot inject into node2 through node1's masquerade.
	checkPodInjection(t, c, func() int {
		out := testbed.In(t, n1.NS, "nft", "list", "chain", "inet", "twill", "podguard")
		m := counterRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no counter in the pod guard chain:\n%s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}, func() { testbed.In(t, n1.NS, "nft", "flush", "chain", "inet", "twill", "podguard") })
	if rs := ensure(t, b, specFor(c, 0)); len(rs) != 1 || rs[0].Kind != KindGuard || !strings.Contains(rs[0].Object, "podguard") {
		t.Errorf("after flushing the pod guard: repairs %v, want it rewritten", rs)
	}
	// The peer set is updated in place: node2 removed, its vxlan traffic stops.
	s := specFor(c, 0)
	s.Peers = nil
	if rs := ensure(t, b, s); len(rs) != 1 || rs[0].Kind != KindGuard || !strings.Contains(rs[0].Object, "delete 192.168.77.12") {
		t.Errorf("peer removed: repairs %v", rs)
	}
	if _, err := testbed.Call(c.Nodes[1].Pod, n1.PodIP, port); err == nil {
		t.Error("node2's pod still reaches node1's pod with node2 out of the guard set")
	}
	ensure(t, b, specFor(c, 0))
	seen(t, c.Nodes[1].Pod, n1.PodIP)

	if err := b.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := testbed.In(t, n1.NS, "nft", "list", "ruleset"); strings.Contains(out, "twill") {
		t.Errorf("Remove left:\n%s", out)
	}
	if err := b.Remove(context.Background()); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// dockerDrop makes a node's iptables-nft filter FORWARD look like Docker's.
func dockerDrop(t *testing.T, ns string) {
	t.Helper()
	testbed.In(t, ns, "iptables-nft", "-N", "DOCKER-USER")
	testbed.In(t, ns, "iptables-nft", "-A", "DOCKER-USER", "-j", "RETURN")
	testbed.In(t, ns, "iptables-nft", "-A", "FORWARD", "-j", "DOCKER-USER")
	testbed.In(t, ns, "iptables-nft", "-P", "FORWARD", "DROP")
}

// placeAccepts captures node n, checks that the forward accepts for
// network/subnet belong at exactly want (an iptables-nft host is detected as
// nft), ensures spec with them (two accepts, then nothing more to repair)
// and checks that twill's own accepts leave the placement unchanged (no
// flapping). It returns n's backend.
func placeAccepts(t *testing.T, n testbed.Node, network, subnet netip.Prefix, s Spec, want Placement) Backend {
	t.Helper()
	capture := func() *nodestate.Snapshot {
		snap, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: n.NS, Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	snap := capture()
	name := Detect(snap)
	if name != BackendNft {
		t.Errorf("%s: Detect = %s, want nft (an iptables-nft host)", n.Name, name)
	}
	pl, err := Placements(snap, network, subnet)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl) != 1 || pl[0] != want {
		t.Fatalf("%s: placements for %s %v, want [%v]", n.Name, network, pl, want)
	}
	s.ForwardAccept = pl
	b, _ := New(name, n.NS)
	if k := kinds(ensure(t, b, s)); k[KindForwardAccept] != 2 {
		t.Errorf("%s: repairs %v, want 2 forward-accept", n.Name, k)
	}
	if rs := ensure(t, b, s); len(rs) != 0 {
		t.Errorf("%s: second Ensure repaired %v", n.Name, rs)
	}
	if again, err := Placements(capture(), network, subnet); err != nil || len(again) != 1 || again[0] != want {
		t.Errorf("%s: placements after Ensure %v, %v", n.Name, again, err)
	}
	return b
}

func TestDockerForwardDrop(t *testing.T) {
	c := overlay(t, "fwd")
	for _, n := range c.Nodes {
		dockerDrop(t, n.NS)
	}
	if _, err := testbed.Call(c.Nodes[0].Pod, c.Nodes[1].PodIP, port); err == nil {
		t.Fatal("pod traffic flows through a FORWARD DROP: the test proves nothing")
	}
	var backends []Backend
	for i, n := range c.Nodes {
		want := Placement{Backend: BackendIptablesNft, Table: "filter", Chain: "DOCKER-USER"}
		backends = append(backends, placeAccepts(t, n, testbed.Network, n.Subnet, specFor(c, i), want))
	}
	seen(t, c.Nodes[0].Pod, c.Nodes[1].PodIP)
	seen(t, c.Nodes[1].Pod, c.Nodes[0].PodIP)
	user := testbed.In(t, c.Nodes[1].NS, "iptables-nft", "-S", "DOCKER-USER")
	if !strings.HasPrefix(strings.Split(user, "\n")[1], "-A DOCKER-USER -s 10.244.0.0/16") || !strings.Contains(user, "twill: accept pods") {
		t.Errorf("DOCKER-USER does not start with twill's accepts:\n%s", user)
	}
	// Docker flushes DOCKER-USER (restart): Ensure puts the accepts back.
	testbed.In(t, c.Nodes[1].NS, "iptables-nft", "-F", "DOCKER-USER")
	s := specFor(c, 1)
	s.ForwardAccept = []Placement{{Backend: BackendIptablesNft, Table: "filter", Chain: "DOCKER-USER"}}
	if k := kinds(ensure(t, backends[1], s)); k[KindForwardAccept] != 2 {
		t.Errorf("after a flush of DOCKER-USER: repairs %v", k)
	}
	seen(t, c.Nodes[0].Pod, c.Nodes[1].PodIP)
	for i, b := range backends {
		if err := b.Remove(context.Background()); err != nil {
			t.Fatal(err)
		}
		if out := testbed.In(t, c.Nodes[i].NS, "iptables-nft-save"); strings.Contains(out, "twill") {
			t.Errorf("Remove left in iptables-nft:\n%s", out)
		}
		if out := testbed.In(t, c.Nodes[i].NS, "nft", "list", "ruleset"); strings.Contains(out, "twill") {
			t.Errorf("Remove left in nft:\n%s", out)
		}
	}
}

func TestIptablesBackends(t *testing.T) {
	for _, name := range []string{BackendIptablesLegacy, BackendIptablesNft} {
		t.Run(name, func(t *testing.T) {
			c := overlay(t, "fwi"+name[9:10])
			n1 := c.Nodes[0]
			b, _ := New(name, n1.NS)
			b2, _ := New(name, c.Nodes[1].NS)
			ensure(t, b2, specFor(c, 1))
			k := kinds(ensure(t, b, specFor(c, 0)))
			if k[KindMasquerade] != 2 || k[KindForward] != 3 || k[KindGuard] != 6 {
				t.Errorf("first Ensure repairs by kind %v: want masquerade 2, forward 3, guard 6 (rules + jumps, ipset + member)", k)
			}
			if rs := ensure(t, b, specFor(c, 0)); len(rs) != 0 {
				t.Errorf("second Ensure repaired %v", rs)
			}
			checkMasquerade(t, c)
			save := testbed.In(t, n1.NS, name+"-save")
			for _, line := range strings.Split(save, "\n") {
				if strings.HasPrefix(line, "-A ") && strings.Contains(line, "TWILL-") && !strings.Contains(line, "twill:") {
					t.Errorf("rule without a twill: comment: %s", line)
				}
			}
			// Drift: masquerade rule deleted.
			spec := IptablesRules(specFor(c, 0))[0]
			testbed.In(t, n1.NS, append([]string{name, "-t", "nat", "-D", ChainPostrouting}, spec.Args...)...)
			if rs := ensure(t, b, specFor(c, 0)); len(rs) != 1 || rs[0].Kind != KindMasquerade {
				t.Errorf("after deleting the masquerade rule: %v", rs)
			}
			checkMasquerade(t, c)
			// Guard: the stranger's packet counts on the guard rule, the peer's does not.
			drops := func() int {
				out := testbed.In(t, n1.NS, name, "-t", "filter", "-L", ChainGuard, "-v", "-x", "-n")
				for _, l := range strings.Split(out, "\n") {
					if f := strings.Fields(l); len(f) > 2 && f[2] == "DROP" {
						n, _ := strconv.Atoi(f[0])
						return n
					}
				}
				t.Fatalf("no DROP rule in %s:\n%s", ChainGuard, out)
				return 0
			}
			before := drops()
			_ = testbed.SendUDP(c.Outside, n1.IP, 8472, vxlanFrame)
			_ = testbed.SendUDP(c.Nodes[1].NS, n1.IP, 8472, vxlanFrame)
			if after := drops(); after != before+1 {
				t.Errorf("guard counter %d -> %d: want exactly the stranger's packet dropped", before, after)
			}
			checkPodInjection(t, c, func() int {
				out := testbed.In(t, n1.NS, name, "-t", "mangle", "-L", ChainPodGuard, "-v", "-x", "-n")
				for _, l := range strings.Split(out, "\n") {
					if f := strings.Fields(l); len(f) > 2 && f[2] == "DROP" {
						n, _ := strconv.Atoi(f[0])
						return n
					}
				}
				t.Fatalf("no DROP rule in %s:\n%s", ChainPodGuard, out)
				return 0
			}, func() { testbed.In(t, n1.NS, name, "-t", "mangle", "-F", ChainPodGuard) })
			ensure(t, b, specFor(c, 0))
			if err := b.Remove(context.Background()); err != nil {
				t.Fatal(err)
			}
			if out := testbed.In(t, n1.NS, name+"-save"); strings.Contains(out, "twill") || strings.Contains(out, "TWILL") {
				t.Errorf("Remove left:\n%s", out)
			}
			if out, _ := testbed.Try(n1.NS, "ipset", "list", "-n"); strings.Contains(out, IpsetPeers) {
				t.Errorf("Remove left the ipset: %s", out)
			}
		})
	}
}

package firewall

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/nodestate"
)

// overlay6 builds a 2-node dual-stack vxlan cluster with twill's backend
// (twill.1 and twill-v6.1), servers in every pod and outside.
func overlay6(t *testing.T, tag string) *testbed.Cluster {
	t.Helper()
	c := testbed.New(t, tag, 2)
	c.AddIPv6(t)
	program(t, c, true)
	return c
}

func specFor6(c *testbed.Cluster, i int) Spec {
	s := specFor(c, i)
	s.IPv6Network = testbed.Network6
	for j, n := range c.Nodes {
		if j != i {
			s.Peers = append(s.Peers, n.IPv6)
		}
	}
	return s
}

// checkMasquerade6: over IPv6, pods reach the outside as their node's IPv6
// underlay address (NAT66 masquerade), each other as themselves.
func checkMasquerade6(t *testing.T, c *testbed.Cluster) {
	t.Helper()
	outside := netip.MustParseAddr("fd00:77::200")
	if got := seen(t, c.Nodes[0].Pod, outside); got != c.Nodes[0].IPv6.String() {
		t.Errorf("outside saw pod of node1 as %s over IPv6, want the node's address %s", got, c.Nodes[0].IPv6)
	}
	if got := seen(t, c.Nodes[0].Pod, c.Nodes[1].PodIP6); got != c.Nodes[0].PodIP6.String() {
		t.Errorf("pod of node2 saw pod of node1 as %s, want %s (pod-to-pod must not be masqueraded)", got, c.Nodes[0].PodIP6)
	}
}

// dropCounter reads the packet counter of the first DROP rule of an
// ip(6)tables chain.
func dropCounter(t *testing.T, ns, binary, table, chain string) int {
	t.Helper()
	out := testbed.In(t, ns, binary, "-t", table, "-L", chain, "-v", "-x", "-n")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "DROP" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("no DROP rule in %s %s:\n%s", binary, chain, out)
	return 0
}

// Every backend writes the IPv6 twin of each rule: NAT66 masquerade out,
// none between pods, forward accepts, and the vxlan guard on the IPv6
// underlay (a stranger's packet dropped, a peer's not); IPv4 keeps
// working; Remove leaves nothing of either family.
func TestFirewallIPv6(t *testing.T) {
	for _, name := range []string{BackendNft, BackendIptablesNft, BackendIptablesLegacy} {
		t.Run(name, func(t *testing.T) {
			c := overlay6(t, "fw6"+name[len(name)-2:])
			n1 := c.Nodes[0]
			b, _ := New(name, n1.NS)
			b2, _ := New(name, c.Nodes[1].NS)
			ensure(t, b2, specFor6(c, 1))
			ensure(t, b, specFor6(c, 0))
			if rs := ensure(t, b, specFor6(c, 0)); len(rs) != 0 {
				t.Errorf("second Ensure repaired %v", rs)
			}
			checkMasquerade(t, c)
			checkMasquerade6(t, c)

			var drops func() int
			if name == BackendNft {
				drops = func() int {
					out := testbed.In(t, n1.NS, "nft", "list", "chain", "inet", "twill", "input")
					for _, l := range strings.Split(out, "\n") {
						if strings.Contains(l, "ip6 saddr") {
							if m := counterRE.FindStringSubmatch(l); m != nil {
								n, _ := strconv.Atoi(m[1])
								return n
							}
						}
					}
					t.Fatalf("no IPv6 guard rule:\n%s", out)
					return 0
				}
			} else {
				ip6 := ip6Binary(name)
				drops = func() int { return dropCounter(t, n1.NS, ip6, "filter", ChainGuard) }
				// The forward path drops IPv6 by policy: only twill's accept lets pods through.
				testbed.In(t, n1.NS, ip6, "-P", "FORWARD", "DROP")
				testbed.In(t, c.Nodes[1].NS, ip6, "-P", "FORWARD", "DROP")
				if got := seen(t, n1.Pod, c.Nodes[1].PodIP6); got != n1.PodIP6.String() {
					t.Errorf("with FORWARD policy DROP: pod-to-pod over IPv6 saw %s", got)
				}
			}
			before := drops()
			for _, from := range []string{c.Outside, c.Nodes[1].NS} {
				if err := testbed.SendUDP(from, n1.IPv6, 8472, vxlanFrame); err != nil {
					t.Fatal(err)
				}
			}
			if after := drops(); after != before+1 {
				t.Errorf("IPv6 guard counter %d -> %d: want exactly the stranger's packet dropped", before, after)
			}

			if err := b.Remove(context.Background()); err != nil {
				t.Fatal(err)
			}
			if name == BackendNft {
				if out := testbed.In(t, n1.NS, "nft", "list", "ruleset"); strings.Contains(out, "twill") {
					t.Errorf("Remove left in nft:\n%s", out)
				}
				return
			}
			for _, bin := range []string{name, ip6Binary(name)} {
				if out := testbed.In(t, n1.NS, bin+"-save"); strings.Contains(out, "twill") || strings.Contains(out, "TWILL") {
					t.Errorf("Remove left in %s:\n%s", bin, out)
				}
			}
			if out, _ := testbed.Try(n1.NS, "ipset", "list", "-n"); strings.Contains(out, IpsetPeers) {
				t.Errorf("Remove left an ipset: %s", out)
			}
		})
	}
}

// TestDockerForwardDropIPv6 is TestDockerForwardDrop's IPv6 twin: Docker's
// ip6tables FORWARD policy DROP (with its DOCKER-USER chain) blocks IPv6
// pod traffic between nodes; Placements over the IPv6 network finds
// ip6tables-nft DOCKER-USER, Ensure puts twill's IPv6 accepts there (and
// not the IPv4 ones), the placement does not flap, and Remove takes them
// out again.
func TestDockerForwardDropIPv6(t *testing.T) {
	c := overlay6(t, "fwd6")
	for _, n := range c.Nodes {
		testbed.In(t, n.NS, "ip6tables-nft", "-N", "DOCKER-USER")
		testbed.In(t, n.NS, "ip6tables-nft", "-A", "DOCKER-USER", "-j", "RETURN")
		testbed.In(t, n.NS, "ip6tables-nft", "-A", "FORWARD", "-j", "DOCKER-USER")
		testbed.In(t, n.NS, "ip6tables-nft", "-P", "FORWARD", "DROP")
	}
	if _, err := testbed.Call(c.Nodes[0].Pod, c.Nodes[1].PodIP6, port); err == nil {
		t.Fatal("IPv6 pod traffic flows through an ip6tables FORWARD DROP: the test proves nothing")
	}
	want := Placement{Backend: BackendIptablesNft, Table: "filter", Chain: "DOCKER-USER", IPv6: true}
	var backends []Backend
	for i, n := range c.Nodes {
		snap, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: n.NS, Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if pl, err := Placements(snap, testbed.Network, n.Subnet); err != nil || len(pl) != 0 {
			t.Errorf("%s: IPv4 placements %v (%v), want none (only ip6tables drops)", n.Name, pl, err)
		}
		if got := want.String(); got != "ip6tables-nft filter DOCKER-USER" {
			t.Errorf("placement reads %q", got)
		}
		backends = append(backends, placeAccepts(t, n, testbed.Network6, n.Subnet6, specFor6(c, i), want))
	}
	seen(t, c.Nodes[0].Pod, c.Nodes[1].PodIP6)
	seen(t, c.Nodes[1].Pod, c.Nodes[0].PodIP6)
	user := testbed.In(t, c.Nodes[1].NS, "ip6tables-nft", "-S", "DOCKER-USER")
	if !strings.HasPrefix(strings.Split(user, "\n")[1], "-A DOCKER-USER -s "+testbed.Network6.String()) || !strings.Contains(user, "twill: accept pods") {
		t.Errorf("ip6tables DOCKER-USER does not start with twill's IPv6 accepts:\n%s", user)
	}
	if v4 := testbed.In(t, c.Nodes[1].NS, "iptables-nft-save"); strings.Contains(v4, "DOCKER-USER") {
		t.Errorf("an IPv6 placement wrote to iptables:\n%s", v4)
	}
	for i, b := range backends {
		if err := b.Remove(context.Background()); err != nil {
			t.Fatal(err)
		}
		if out := testbed.In(t, c.Nodes[i].NS, "ip6tables-nft-save"); strings.Contains(out, "twill") {
			t.Errorf("Remove left in ip6tables-nft:\n%s", out)
		}
	}
}

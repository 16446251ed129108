package kernel

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

// leaseOf6 is node n's lease in a dual-stack (or, with v4 false,
// IPv6-only) cluster.
func leaseOf6(n testbed.Node, v4 bool) lease.Lease {
	l := leaseOf(n)
	l.IPv6Subnet, l.Attrs.PublicIPv6 = n.Subnet6, n.IPv6
	l.Attrs.BackendV6Data = &lease.BackendData{VtepMAC: backend.VtepMAC(n.IPv6)}
	if !v4 {
		l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData = netip.Prefix{}, netip.Addr{}, nil
	}
	return l
}

// nodeSpec6 is nodeSpec for a dual-stack (v4) or IPv6-only cluster.
func nodeSpec6(c *testbed.Cluster, i int, typ string, v4 bool, peers ...int) backend.Node {
	n := nodeSpec(c, i, typ)
	n.Config.IPv6Network, n.Config.IPv6SubnetLen = testbed.Network6, 64
	if !v4 {
		n.Config.Network, n.Config.SubnetLen = netip.Prefix{}, 0
	}
	n.Self = leaseOf6(c.Nodes[i], v4)
	n.UnderlayIPv6, n.UnderlayNets6 = c.Nodes[i].IPv6, []netip.Prefix{testbed.Segment6}
	for _, p := range peers {
		n.Peers = append(n.Peers, leaseOf6(c.Nodes[p], v4))
	}
	return n
}

// upIPv6 builds a dual-stack testbed of n nodes, serves on every pod and
// reconciles every node (IPv6 and, with v4, IPv4); it returns each node's
// first repairs.
func upIPv6(t *testing.T, tag string, n int, typ string, v4 bool) (*testbed.Cluster, [][]backend.Repair) {
	c := testbed.New(t, tag, n)
	c.AddIPv6(t)
	var out [][]backend.Repair
	for i, nd := range c.Nodes {
		testbed.Serve(t, nd.Pod, port)
		out = append(out, reconcile(t, nd.NS, nodeSpec6(c, i, typ, v4, all(c)...)))
	}
	return c, out
}

func mustReach6(t *testing.T, c *testbed.Cluster, from, to int) {
	t.Helper()
	got, err := testbed.Call(c.Nodes[from].Pod, c.Nodes[to].PodIP6, port)
	if err != nil {
		t.Fatalf("pod of %s -> pod of %s over IPv6: %v", c.Nodes[from].Name, c.Nodes[to].Name, err)
	}
	if got != c.Nodes[from].PodIP6.String() {
		t.Errorf("pod of %s seen by %s as %s, want %s (no NAT between pods)", c.Nodes[from].Name, c.Nodes[to].Name, got, c.Nodes[from].PodIP6)
	}
}

// Dual-stack vxlan: IPv4 pods over twill.1 on the IPv4 underlay, IPv6
// pods over twill-v6.1 on the IPv6 underlay (MTU underlay-70 for both and
// the pods); a second apply changes nothing; IPv6 drift (route, FDB,
// neighbour) is repaired; a leaving peer's IPv6 entries go.
func TestVxlanDualStack(t *testing.T) {
	c, first := upIPv6(t, "kv6", 3, "vxlan", true)
	for i, n := range c.Nodes {
		if rs := first[i]; !hasRepair(rs, "link", "add", "twill-v6.1") || len(rs) != 16 {
			t.Fatalf("%s: first apply repairs %v: want per family link, addr and 2x(fdb, neighbor, route)", n.Name, rs)
		}
	}
	for from := range c.Nodes {
		for to := range c.Nodes {
			if from != to {
				mustReach(t, c, from, to)
				mustReach6(t, c, from, to)
			}
		}
	}
	n1 := c.Nodes[0]
	s := capture(t, n1.NS)
	vx6 := linkOf(t, s, "twill-v6.1")
	if vx6.MTU != 1430 || vx6.Vxlan == nil || vx6.Vxlan.Local != n1.IPv6 || vx6.MAC != backend.VtepMAC(n1.IPv6) || vx6.Vxlan.Learning || !vx6.Up {
		t.Errorf("twill-v6.1 = %+v %+v: want mtu 1430 (1500-70), local %s, mac %s, learning off, up", vx6, vx6.Vxlan, n1.IPv6, backend.VtepMAC(n1.IPv6))
	}
	if vx4 := linkOf(t, s, "twill.1"); vx4.MTU != 1450 {
		t.Errorf("twill.1 mtu %d, want 1450 (its own IPv4 encapsulation; the pods use 1430)", vx4.MTU)
	}
	if rs := reconcile(t, n1.NS, nodeSpec6(c, 0, "vxlan", true, all(c)...)); len(rs) != 0 {
		t.Errorf("re-apply of the same dual-stack state made changes (the kernel's link-local addresses and routes must not count): %v", rs)
	}

	// IPv6 drift: route and FDB entry deleted, neighbour with a stale MAC.
	mac2 := backend.VtepMAC(c.Nodes[1].IPv6)
	testbed.In(t, n1.NS, "bridge", "fdb", "del", mac2, "dev", "twill-v6.1", "dst", c.Nodes[1].IPv6.String(), "self")
	testbed.In(t, n1.NS, "ip", "-6", "route", "del", "fd00:10:244:2::/64")
	testbed.In(t, n1.NS, "ip", "-6", "neigh", "replace", "fd00:10:244:2::", "lladdr", "02:77:de:ad:00:02", "dev", "twill-v6.1", "nud", "permanent")
	if _, err := testbed.Call(n1.Pod, c.Nodes[1].PodIP6, port); err == nil {
		t.Fatal("IPv6 traffic still flows after breaking node1's IPv6 overlay: the test breaks nothing")
	}
	rs := reconcile(t, n1.NS, nodeSpec6(c, 0, "vxlan", true, all(c)...))
	if len(rs) != 3 || !hasRepair(rs, "fdb", "add", mac2) || !hasRepair(rs, "route", "add", "fd00:10:244:2::/64 via fd00:10:244:2:: dev twill-v6.1 onlink") || !hasRepair(rs, "neighbor", "replace", mac2) {
		t.Errorf("IPv6 drift repairs %v: want fdb add, route add, neighbor replace", rs)
	}
	mustReach6(t, c, 0, 1)

	// node3 leaves: its IPv6 route, neighbour and FDB entry go too.
	rs = reconcile(t, n1.NS, nodeSpec6(c, 0, "vxlan", true, 0, 1))
	if len(rs) != 6 || !hasRepair(rs, "route", "delete", "fd00:10:244:3::/64") || !hasRepair(rs, "fdb", "delete", "fd00:77::13") {
		t.Errorf("node3 left: repairs %v", rs)
	}
	if left := mentions(capture(t, n1.NS), "fd00:10:244:3:", "dst fd00:77::13"); len(left) != 0 {
		t.Errorf("node3's IPv6 entries still on node1: %v", left)
	}

	// An IPv4 desired state (doctor reading an IPv4 subnet file, an agent
	// with IPv6 turned off) leaves the IPv6 overlay alone: it never deletes
	// a live one. Uninstall (OwnershipFor) removes it.
	rs = reconcile(t, n1.NS, nodeSpec(c, 0, "vxlan", 0, 1))
	for _, r := range rs {
		if strings.Contains(r.Object, "twill-v6") || strings.Contains(r.Object, "fd00:") {
			t.Errorf("an IPv4 desired state touched the IPv6 overlay: %v", r)
		}
	}
	mustReach(t, c, 0, 1)
	mustReach6(t, c, 0, 1)
	if _, err := Teardown(context.Background(), n1.NS, backend.OwnershipFor(netconf.Config{Network: testbed.Network}, n1.Subnet, "eth0")); err != nil {
		t.Fatal(err)
	}
	if left := mentions(capture(t, n1.NS), "twill-v6.1", "twill.1"); len(left) != 0 {
		t.Errorf("teardown left %v", left)
	}
	if out := testbed.In(t, n1.NS, "ip", "-o", "link"); strings.Contains(out, ": twill") {
		t.Errorf("teardown left a device:\n%s", out)
	}
}

// IPv6-only host-gw: plain IPv6 routes via the peers' IPv6 underlay
// addresses; no vxlan device; pods talk over IPv6.
func TestHostGWIPv6Only(t *testing.T) {
	c, first := upIPv6(t, "kh6", 2, "host-gw", false)
	for i, n := range c.Nodes {
		if rs := first[i]; len(rs) != 1 || !hasRepair(rs, "route", "add", "via fd00:77::1") {
			t.Fatalf("%s: repairs %v: want one IPv6 route via the peer's underlay address", n.Name, rs)
		}
	}
	mustReach6(t, c, 0, 1)
	mustReach6(t, c, 1, 0)
	if _, err := testbed.Call(c.Nodes[0].Pod, c.Nodes[1].PodIP, port); err == nil {
		t.Error("IPv4 pod traffic flows in an IPv6-only cluster: no IPv4 route should exist")
	}
	if rs := reconcile(t, c.Nodes[0].NS, nodeSpec6(c, 0, "host-gw", false, all(c)...)); len(rs) != 0 {
		t.Errorf("re-apply made changes: %v", rs)
	}
	testbed.In(t, c.Nodes[0].NS, "ip", "-6", "route", "del", "fd00:10:244:2::/64")
	if rs := reconcile(t, c.Nodes[0].NS, nodeSpec6(c, 0, "host-gw", false, all(c)...)); len(rs) != 1 {
		t.Errorf("drift repairs %v: want the route back", rs)
	}
	mustReach6(t, c, 0, 1)
}

package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
)

const port = 8080

func leaseOf(n testbed.Node) lease.Lease {
	return lease.Lease{Subnet: n.Subnet, Attrs: lease.Attrs{
		PublicIP: n.IP, BackendType: "vxlan", Node: n.Name,
		BackendData: &lease.BackendData{VtepMAC: backend.VtepMAC(n.IP)},
	}}
}

func nodeSpec(c *testbed.Cluster, i int, typ string, peers ...int) backend.Node {
	n := backend.Node{
		Self:         leaseOf(c.Nodes[i]),
		Config:       netconf.Config{Network: testbed.Network, SubnetLen: 24, Backend: netconf.Backend{Type: typ}},
		UnderlayDev:  "eth0",
		UnderlayIP:   c.Nodes[i].IP,
		UnderlayMTU:  1500,
		UnderlayNets: []netip.Prefix{testbed.Segment},
	}
	for _, p := range peers {
		n.Peers = append(n.Peers, leaseOf(c.Nodes[p]))
	}
	return n
}

// reconcile is the agent's step: compute, observe, diff, apply.
func reconcile(t *testing.T, ns string, n backend.Node) []backend.Repair {
	t.Helper()
	want, err := backend.Compute(n)
	if err != nil {
		t.Fatal(err)
	}
	have, err := Observe(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	repairs, err := Apply(context.Background(), ns, backend.Diff(want, have))
	if err != nil {
		t.Fatal(err)
	}
	return repairs
}

func all(c *testbed.Cluster) []int {
	out := make([]int, len(c.Nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

func mustReach(t *testing.T, c *testbed.Cluster, from, to int) {
	t.Helper()
	got, err := testbed.Call(c.Nodes[from].Pod, c.Nodes[to].PodIP, port)
	if err != nil {
		t.Fatalf("pod of %s -> pod of %s: %v", c.Nodes[from].Name, c.Nodes[to].Name, err)
	}
	if got != c.Nodes[from].PodIP.String() {
		t.Errorf("pod of %s seen by %s as %s, want its own address %s (pod-to-pod must not be NATed)", c.Nodes[from].Name, c.Nodes[to].Name, got, c.Nodes[from].PodIP)
	}
}

func capture(t *testing.T, ns string) *nodestate.Snapshot {
	t.Helper()
	s, err := Observe(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mentions lists the routes, neighbours and FDB entries of a snapshot that
// mention any of the words.
func mentions(s *nodestate.Snapshot, words ...string) []string {
	var out []string
	add := func(line string) {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				return
			}
		}
	}
	for _, r := range s.Routes {
		if r.Table == nodestate.TableMain {
			add("route " + backend.RouteString(r))
		}
	}
	for _, n := range s.Neighbors {
		add(fmt.Sprintf("neigh %s %s dev %s %s", n.IP, n.MAC, n.Dev, n.State))
	}
	for _, f := range s.FDB {
		add(fmt.Sprintf("fdb %s dst %s dev %s", f.MAC, f.Dst, f.Dev))
	}
	return out
}

func hasRepair(rs []backend.Repair, kind, action, object string) bool {
	for _, r := range rs {
		if r.Kind == kind && r.Action == action && strings.Contains(r.Object, object) {
			return true
		}
	}
	return false
}

func linkOf(t *testing.T, s *nodestate.Snapshot, name string) nodestate.Link {
	t.Helper()
	for _, l := range s.Links {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no link %s in %s", name, s.Netns)
	return nodestate.Link{}
}

func TestVxlanBackend(t *testing.T) {
	c := testbed.New(t, "kvx", 3)
	for i, n := range c.Nodes {
		testbed.Serve(t, n.Pod, port)
		if rs := reconcile(t, n.NS, nodeSpec(c, i, "vxlan", all(c)...)); !hasRepair(rs, "link", "add", "twill.1") || len(rs) != 8 {
			t.Fatalf("%s: first apply repairs %v: want link, addr and 2x(fdb, neighbor, route)", n.Name, rs)
		}
	}
	for from := range c.Nodes {
		for to := range c.Nodes {
			if from != to {
				mustReach(t, c, from, to)
			}
		}
	}
	n1 := c.Nodes[0]
	s := capture(t, n1.NS)
	vx := linkOf(t, s, "twill.1")
	if vx.MTU != 1450 || vx.MAC != backend.VtepMAC(n1.IP) || vx.Vxlan == nil || vx.Vxlan.Learning || vx.Vxlan.Port != 8472 || vx.Vxlan.Dev != "eth0" || !vx.Up {
		t.Errorf("twill.1 = %+v %+v: want mtu 1450, mac %s, port 8472, dev eth0, learning off, up", vx, vx.Vxlan, backend.VtepMAC(n1.IP))
	}

	// The agent restarts: the same desired state is a no-op, the device is kept.
	if rs := reconcile(t, n1.NS, nodeSpec(c, 0, "vxlan", all(c)...)); len(rs) != 0 {
		t.Errorf("re-apply of the same state made changes: %v", rs)
	}
	if again := linkOf(t, capture(t, n1.NS), "twill.1"); again.Index != vx.Index || again.MAC != vx.MAC {
		t.Errorf("twill.1 re-created or changed: index %d -> %d, mac %s -> %s", vx.Index, again.Index, vx.MAC, again.MAC)
	}

	// node3 leaves: node1 drops its route, neighbour and FDB entry.
	rs := reconcile(t, n1.NS, nodeSpec(c, 0, "vxlan", 0, 1))
	if len(rs) != 3 || !hasRepair(rs, "route", "delete", "10.244.3.0/24") || !hasRepair(rs, "neighbor", "delete", "10.244.3.0") || !hasRepair(rs, "fdb", "delete", "192.168.77.13") {
		t.Errorf("node3 left: repairs %v", rs)
	}
	if left := mentions(capture(t, n1.NS), "10.244.3.", "dst 192.168.77.13", backend.VtepMAC(c.Nodes[2].IP)); len(left) != 0 {
		t.Errorf("node3's entries still on node1: %v", left)
	}
	mustReach(t, c, 0, 1)
	if _, err := testbed.Call(n1.Pod, c.Nodes[2].PodIP, port); err == nil {
		t.Error("node1's pod still reaches node3's pod after node3 left")
	}
	if rs := reconcile(t, n1.NS, nodeSpec(c, 0, "vxlan", 0, 1)); len(rs) != 0 {
		t.Errorf("re-apply after the leave made changes: %v", rs)
	}

	// Drift: an FDB entry and a route deleted by hand, a neighbour with a stale MAC.
	mac2 := backend.VtepMAC(c.Nodes[1].IP)
	testbed.In(t, n1.NS, "bridge", "fdb", "del", mac2, "dev", "twill.1", "dst", "192.168.77.12", "self")
	testbed.In(t, n1.NS, "ip", "route", "del", "10.244.2.0/24")
	testbed.In(t, n1.NS, "ip", "neigh", "replace", "10.244.2.0", "lladdr", "02:77:de:ad:00:02", "dev", "twill.1", "nud", "permanent")
	if _, err := testbed.Call(n1.Pod, c.Nodes[1].PodIP, port); err == nil {
		t.Fatal("traffic still flows after breaking node1's overlay state: the test breaks nothing")
	}
	rs = reconcile(t, n1.NS, nodeSpec(c, 0, "vxlan", 0, 1))
	if len(rs) != 3 || !hasRepair(rs, "fdb", "add", mac2) || !hasRepair(rs, "route", "add", "10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink") || !hasRepair(rs, "neighbor", "replace", mac2) {
		t.Errorf("drift repairs %v: want fdb add, route add, neighbor replace", rs)
	}
	mustReach(t, c, 0, 1)

	// MTU changed by hand: fixed in place, the device is not re-created.
	testbed.In(t, n1.NS, "ip", "link", "set", "twill.1", "mtu", "1400")
	rs = reconcile(t, n1.NS, nodeSpec(c, 0, "vxlan", 0, 1))
	if len(rs) != 1 || !hasRepair(rs, "link", "replace", "twill.1") {
		t.Errorf("mtu drift repairs %v", rs)
	}
	if l := linkOf(t, capture(t, n1.NS), "twill.1"); l.Index != vx.Index || l.MTU != 1450 {
		t.Errorf("after mtu repair: index %d (was %d) mtu %d", l.Index, vx.Index, l.MTU)
	}

	// Uninstall: nothing of twill's is left; the node's own pod route stays.
	own := backend.OwnershipFor(netconf.Config{Network: testbed.Network}, n1.Subnet, "eth0")
	if _, err := Teardown(context.Background(), n1.NS, own); err != nil {
		t.Fatal(err)
	}
	after := capture(t, n1.NS)
	for _, l := range after.Links {
		if strings.HasPrefix(l.Name, "twill.") {
			t.Errorf("teardown left device %s", l.Name)
		}
	}
	if left := mentions(after, "twill.1", "10.244.2.", "10.244.3."); len(left) != 0 {
		t.Errorf("teardown left %v", left)
	}
	if len(mentions(after, "10.244.1.0/24 dev vpod")) != 1 || len(mentions(after, "192.168.77.0/24 dev eth0")) != 1 {
		t.Errorf("teardown touched routes it does not own: %v", mentions(after, "route"))
	}
	if rs, err := Teardown(context.Background(), n1.NS, own); err != nil || len(rs) != 0 {
		t.Errorf("second teardown: %v, %v", rs, err)
	}
}

func TestHostGWBackend(t *testing.T) {
	c := testbed.New(t, "khg", 3)
	for i, n := range c.Nodes {
		testbed.Serve(t, n.Pod, port)
		if rs := reconcile(t, n.NS, nodeSpec(c, i, "host-gw", all(c)...)); len(rs) != 2 {
			t.Fatalf("%s: first apply repairs %v: want 2 routes", n.Name, rs)
		}
	}
	for from := range c.Nodes {
		for to := range c.Nodes {
			if from != to {
				mustReach(t, c, from, to)
			}
		}
	}
	n1 := c.Nodes[0]
	if rs := reconcile(t, n1.NS, nodeSpec(c, 0, "host-gw", all(c)...)); len(rs) != 0 {
		t.Errorf("re-apply made changes: %v", rs)
	}
	// A user's route into the pod network on another device is not ours.
	testbed.In(t, n1.NS, "ip", "route", "add", "10.244.200.0/24", "dev", "vpod")
	testbed.In(t, n1.NS, "ip", "route", "del", "10.244.2.0/24")
	rs := reconcile(t, n1.NS, nodeSpec(c, 0, "host-gw", 0, 1)) // node3 left, node2's route drifted away
	if len(rs) != 2 || !hasRepair(rs, "route", "add", "10.244.2.0/24 via 192.168.77.12 dev eth0") || !hasRepair(rs, "route", "delete", "10.244.3.0/24") {
		t.Errorf("repairs %v: want route add for node2, route delete for node3", rs)
	}
	mustReach(t, c, 0, 1)
	if len(mentions(capture(t, n1.NS), "10.244.200.0/24 dev vpod")) != 1 {
		t.Error("the user's route was touched")
	}
	// An off-segment peer: error naming it, the others still programmed.
	far := nodeSpec(c, 0, "host-gw", 0, 1)
	far.Peers = append(far.Peers, lease.Lease{Subnet: netip.MustParsePrefix("10.244.9.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("172.16.0.9"), BackendType: "host-gw", Node: "node9"}})
	if _, err := backend.Compute(far); err == nil || !strings.Contains(err.Error(), "node9") {
		t.Errorf("off-segment peer: err %v, want one naming node9", err)
	}
	own := backend.OwnershipFor(netconf.Config{Network: testbed.Network, Backend: netconf.Backend{Type: "host-gw"}}, n1.Subnet, "eth0")
	if _, err := Teardown(context.Background(), n1.NS, own); err != nil {
		t.Fatal(err)
	}
	if left := mentions(capture(t, n1.NS), "10.244.2.", "10.244.3."); len(left) != 0 {
		t.Errorf("teardown left %v", left)
	}
}

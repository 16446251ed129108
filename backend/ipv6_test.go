package backend

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/nodestate"
)

// mkDual adds IPv6 to mkLease's lease: subnet fd00:10:244:<k>::/64,
// underlay fd00:77::1<k>.
func mkDual(l lease.Lease, k string) lease.Lease {
	l.IPv6Subnet = netip.MustParsePrefix("fd00:10:244:" + k + "::/64")
	l.Attrs.PublicIPv6 = netip.MustParseAddr("fd00:77::1" + k)
	l.Attrs.BackendV6Data = &lease.BackendData{VtepMAC: VtepMAC(l.Attrs.PublicIPv6)}
	return l
}

func mkDualNode(typ string, peers ...lease.Lease) Node {
	n := mkNode(typ)
	n.Self = mkDual(n.Self, "1")
	n.Peers = append([]lease.Lease{n.Self}, peers...)
	n.Config.IPv6Network, n.Config.IPv6SubnetLen = netip.MustParsePrefix("fd00:10:244::/56"), 64
	n.UnderlayIPv6, n.UnderlayNets6 = netip.MustParseAddr("fd00:77::11"), []netip.Prefix{netip.MustParsePrefix("fd00:77::/64")}
	return n
}

func TestComputeDualStackVxlan(t *testing.T) {
	p2 := mkDual(mkLease("node2", "10.244.2.0/24", "192.168.77.12", VtepMAC(netip.MustParseAddr("192.168.77.12"))), "2")
	d, err := Compute(mkDualNode("vxlan", p2))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Links) != 2 || d.Links[0].Name != "twill.1" || d.Links[1].Name != "twill-v6.1" || d.Links[1].Local.String() != "fd00:77::11" ||
		d.Links[0].MTU != 1450 || d.Links[1].MTU != 1430 || d.MTU != 1430 {
		t.Fatalf("links %v, MTU %d: want twill.1 at 1500-50, twill-v6.1 (local fd00:77::11) at 1500-70, pods at the least", d.Links, d.MTU)
	}
	if d.Own.VxlanDevV6 != "twill-v6.1" || d.Own.IPv6Network.String() != "fd00:10:244::/56" || d.Own.IPv6Subnet.String() != "fd00:10:244:1::/64" {
		t.Errorf("ownership %+v", d.Own)
	}
	want := []string{"10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink", "fd00:10:244:2::/64 via fd00:10:244:2:: dev twill-v6.1 onlink metric 1024"}
	if len(d.Routes) != 2 || RouteString(d.Routes[0]) != want[0] || RouteString(d.Routes[1]) != want[1] {
		t.Errorf("routes %v, want %v", d.Routes, want)
	}
	if d.Neighbors[1].IP.String() != "fd00:10:244:2::" || d.Neighbors[1].MAC != p2.Attrs.BackendV6Data.VtepMAC || d.FDB[1].Dst.String() != "fd00:77::12" {
		t.Errorf("IPv6 neighbour %+v, fdb %+v", d.Neighbors[1], d.FDB[1])
	}
	if PodMTU(mkDualNode("vxlan").Config, 1500) != 1430 || PodMTU(mkNode("vxlan").Config, 1500) != 1450 {
		t.Error("PodMTU: IPv4 1500-50, with IPv6 1500-70")
	}

	// Peers lacking IPv6 data are skipped with a reason, their IPv4 half kept.
	bad := mkDual(mkLease("node3", "10.244.3.0/24", "192.168.77.13", VtepMAC(netip.MustParseAddr("192.168.77.13"))), "3")
	bad.Attrs.BackendV6Data = nil
	worse := mkDual(mkLease("node4", "10.244.4.0/24", "192.168.77.14", VtepMAC(netip.MustParseAddr("192.168.77.14"))), "4")
	worse.Attrs.PublicIPv6 = netip.MustParseAddr("10.1.1.1")
	d, err = Compute(mkDualNode("vxlan", bad, worse))
	var perr PeerErrors
	if !errors.As(err, &perr) || len(perr) != 2 || !strings.Contains(perr[0].Reason, "no BackendV6Data.VtepMAC") || perr[1].Cause != PeerBadAddress {
		t.Fatalf("peer errors %v", err)
	}
	if len(d.Routes) != 2 || d.Routes[0].Dst.Addr().Is6() || d.Routes[1].Dst.Addr().Is6() {
		t.Errorf("routes %v: want the two IPv4 routes only", d.Routes)
	}
}

func TestComputeIPv6OnlyChecks(t *testing.T) {
	n := mkDualNode("host-gw", mkDual(mkLease("node2", "10.244.2.0/24", "192.168.77.12", ""), "2"))
	n.Config.Network, n.Config.SubnetLen = netip.Prefix{}, 0
	d, err := Compute(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != 1 || RouteString(d.Routes[0]) != "fd00:10:244:2::/64 via fd00:77::12 dev eth0 metric 1024" || d.MTU != 1500 {
		t.Fatalf("IPv6-only host-gw %v, MTU %d", d.Routes, d.MTU)
	}
	n.UnderlayIPv6 = netip.Addr{}
	if _, err := Compute(n); err == nil || !strings.Contains(err.Error(), "want an IPv6 address (pass --public-ipv6)") {
		t.Errorf("no IPv6 underlay: %v", err)
	}
	n = mkDualNode("vxlan")
	n.Self.IPv6Subnet = netip.MustParsePrefix("fd00:99::/64")
	if _, err := Compute(n); err == nil || !strings.Contains(err.Error(), "own IPv6 subnet fd00:99::/64 is not inside network fd00:10:244::/56") {
		t.Errorf("own subnet outside: %v", err)
	}
}

// The kernel's own IPv6 objects on twill-v6.1 (link-local address and
// routes, multicast route) are not twill's: Diff leaves them alone.
func TestDiffIgnoresKernelIPv6Objects(t *testing.T) {
	want, err := Compute(mkDualNode("vxlan"))
	if err != nil {
		t.Fatal(err)
	}
	have := &nodestate.Snapshot{
		Links: []nodestate.Link{{Name: "twill-v6.1", Kind: "vxlan", MTU: 1430, MAC: want.Links[1].MAC, Up: true,
			Vxlan: &nodestate.VxlanAttrs{VNI: 1, Port: 8472, Local: want.Links[1].Local, Dev: "eth0"}}},
		Addrs: []nodestate.Addr{{Link: "twill-v6.1", Prefix: netip.MustParsePrefix("fe80::1/64")}, {Link: "twill-v6.1", Prefix: netip.MustParsePrefix("fd00:10:244:1::/128")}},
		Routes: []nodestate.Route{
			{Table: nodestate.TableMain, Type: "unicast", Dst: netip.MustParsePrefix("fe80::/64"), Dev: "twill-v6.1", Metric: 256},
			{Table: nodestate.TableMain, Type: "multicast", Dst: netip.MustParsePrefix("ff00::/8"), Dev: "twill-v6.1", Metric: 256},
			{Table: nodestate.TableMain, Type: "unicast", Dst: netip.MustParsePrefix("fd00:10:244:9::/64"), Dev: "twill-v6.1", Metric: 1024},
		},
		Neighbors: []nodestate.Neighbor{{Dev: "twill-v6.1", IP: netip.MustParseAddr("fe80::2"), MAC: "02:00:00:00:00:02", State: "permanent"}},
	}
	for _, c := range Diff(want, have) {
		s := c.String()
		if strings.Contains(s, "fe80") || strings.Contains(s, "ff00") {
			t.Errorf("Diff touches a kernel object: %s", s)
		}
		if c.Action == ActionDelete && !strings.Contains(s, "fd00:10:244:9::/64") {
			t.Errorf("unexpected delete %s", s)
		}
	}
}

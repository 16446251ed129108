package backend

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
)

var (
	network = netip.MustParsePrefix("10.244.0.0/16")
	segment = netip.MustParsePrefix("192.168.77.0/24")
)

func mkLease(node string, subnet, ip, mac string) lease.Lease {
	l := lease.Lease{Subnet: netip.MustParsePrefix(subnet), Attrs: lease.Attrs{BackendType: "vxlan", Node: node}}
	l.Attrs.PublicIP, _ = netip.ParseAddr(ip) // a bad ip stays invalid
	if mac != "" {
		l.Attrs.BackendData = &lease.BackendData{VtepMAC: mac}
	}
	return l
}

func mkNode(typ string, peers ...lease.Lease) Node {
	self := mkLease("node1", "10.244.1.0/24", "192.168.77.11", VtepMAC(netip.MustParseAddr("192.168.77.11")))
	return Node{
		Self:         self,
		Peers:        append([]lease.Lease{self}, peers...),
		Config:       netconf.Config{Network: network, SubnetLen: 24, Backend: netconf.Backend{Type: typ}},
		UnderlayDev:  "eth0",
		UnderlayIP:   netip.MustParseAddr("192.168.77.11"),
		UnderlayMTU:  1500,
		UnderlayNets: []netip.Prefix{segment},
	}
}

func TestVtepMAC(t *testing.T) {
	for _, ip := range []string{"192.168.77.11", "10.0.0.1", "fd00::1"} {
		a := netip.MustParseAddr(ip)
		s := VtepMAC(a)
		mac, err := net.ParseMAC(s)
		if err != nil || len(mac) != 6 {
			t.Fatalf("VtepMAC(%s) = %q: not a MAC", ip, s)
		}
		if mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Errorf("VtepMAC(%s) = %s: want unicast and locally administered", ip, s)
		}
		if VtepMAC(a) != s {
			t.Errorf("VtepMAC(%s) not stable", ip)
		}
	}
	if VtepMAC(netip.MustParseAddr("192.168.77.11")) == VtepMAC(netip.MustParseAddr("192.168.77.12")) {
		t.Error("two nodes got the same VTEP MAC")
	}
	if got := VtepMAC(netip.MustParseAddr("192.168.77.11")); got != "0e:74:c0:a8:4d:0b" {
		t.Errorf("VtepMAC(192.168.77.11) = %s, want 0e:74:c0:a8:4d:0b (documented in docs/backends.md)", got)
	}
}

func TestComputeVxlan(t *testing.T) {
	p3 := mkLease("node3", "10.244.3.0/24", "192.168.77.13", "0e:74:c0:a8:4d:0d")
	p2 := mkLease("node2", "10.244.2.0/24", "192.168.77.12", "0E:74:C0:A8:4D:0C")
	d, err := Compute(mkNode("", p3, p2)) // empty type = vxlan; peers unsorted
	if err != nil {
		t.Fatal(err)
	}
	if d.Backend != "vxlan" || d.MTU != 1450 {
		t.Errorf("backend %q mtu %d, want vxlan 1450", d.Backend, d.MTU)
	}
	want := LinkSpec{Name: "twill.1", Kind: "vxlan", VNI: 1, Port: 8472, Local: netip.MustParseAddr("192.168.77.11"), Dev: "eth0", MTU: 1450, MAC: "0e:74:c0:a8:4d:0b"}
	if len(d.Links) != 1 || d.Links[0] != want {
		t.Errorf("links %+v, want %+v", d.Links, want)
	}
	if len(d.Addrs) != 1 || d.Addrs[0].Prefix.String() != "10.244.1.0/32" || d.Addrs[0].Link != "twill.1" {
		t.Errorf("addrs %+v, want 10.244.1.0/32 on twill.1", d.Addrs)
	}
	if len(d.Routes) != 2 || RouteString(d.Routes[0]) != "10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink" || RouteString(d.Routes[1]) != "10.244.3.0/24 via 10.244.3.0 dev twill.1 onlink" {
		t.Errorf("routes %v", d.Routes)
	}
	if len(d.Neighbors) != 2 || d.Neighbors[0] != (nodestate.Neighbor{Dev: "twill.1", IP: netip.MustParseAddr("10.244.2.0"), MAC: "0e:74:c0:a8:4d:0c", State: "permanent"}) {
		t.Errorf("neighbors %+v (MAC must be normalised to lower case)", d.Neighbors)
	}
	if len(d.FDB) != 2 || d.FDB[1] != (nodestate.FDBEntry{Dev: "twill.1", MAC: "0e:74:c0:a8:4d:0d", Dst: netip.MustParseAddr("192.168.77.13"), State: "permanent", Self: true}) {
		t.Errorf("fdb %+v", d.FDB)
	}
	own := Ownership{Network: network, Subnet: netip.MustParsePrefix("10.244.1.0/24"), VxlanDev: "twill.1", UnderlayDev: "eth0"}
	if d.Own != own {
		t.Errorf("own %+v, want %+v", d.Own, own)
	}
}

func TestComputeVxlanConfig(t *testing.T) {
	n := mkNode("vxlan")
	n.Config.Backend = netconf.Backend{Type: "vxlan", VNI: 7, Port: 4789, MTU: 1400}
	d, err := Compute(n)
	if err != nil {
		t.Fatal(err)
	}
	if l := d.Links[0]; l.Name != "twill.7" || l.VNI != 7 || l.Port != 4789 || l.MTU != 1400 || d.MTU != 1400 {
		t.Errorf("link %+v pod mtu %d: want twill.7 vni 7 port 4789 mtu 1400", l, d.MTU)
	}
}

func TestComputeDirectRouting(t *testing.T) {
	near := mkLease("node2", "10.244.2.0/24", "192.168.77.12", "0e:74:c0:a8:4d:0c")
	far := mkLease("node9", "10.244.9.0/24", "172.16.0.9", "0e:74:ac:10:00:09")
	n := mkNode("vxlan", near, far)
	n.Config.Backend.DirectRouting = true
	d, err := Compute(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != 2 || RouteString(d.Routes[0]) != "10.244.2.0/24 via 192.168.77.12 dev eth0" || RouteString(d.Routes[1]) != "10.244.9.0/24 via 10.244.9.0 dev twill.1 onlink" {
		t.Errorf("routes %v: want direct route to the near peer, vxlan to the far one", d.Routes)
	}
	if len(d.FDB) != 1 || len(d.Neighbors) != 1 || d.FDB[0].Dst.String() != "172.16.0.9" {
		t.Errorf("fdb %v neighbors %v: want entries only for the far peer", d.FDB, d.Neighbors)
	}
	if d.MTU != 1450 {
		t.Errorf("pod MTU %d, want 1450 (some peers still go through vxlan)", d.MTU)
	}
}

func TestComputeHostGW(t *testing.T) {
	near := mkLease("node2", "10.244.2.0/24", "192.168.77.12", "")
	far := mkLease("node9", "10.244.9.0/24", "172.16.0.9", "")
	d, err := Compute(mkNode("host-gw", near, far))
	var pe PeerErrors
	if !errors.As(err, &pe) || len(pe) != 1 {
		t.Fatalf("err %v: want PeerErrors naming node9", err)
	}
	msg := pe[0].Error()
	for _, w := range []string{"node9", "172.16.0.9", "L2 segment", "vxlan"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	if len(d.Routes) != 1 || RouteString(d.Routes[0]) != "10.244.2.0/24 via 192.168.77.12 dev eth0" {
		t.Errorf("routes %v: want the near peer still programmed", d.Routes)
	}
	if len(d.Links) != 0 || len(d.FDB) != 0 || d.MTU != 1500 {
		t.Errorf("host-gw: links %v fdb %v mtu %d", d.Links, d.FDB, d.MTU)
	}
}

func TestComputeBadPeers(t *testing.T) {
	noMAC := mkLease("node2", "10.244.2.0/24", "192.168.77.12", "")
	badIP := mkLease("node3", "10.244.3.0/24", "nonsense", "0e:74:00:00:00:03")
	outside := mkLease("node4", "10.99.4.0/24", "192.168.77.14", "0e:74:00:00:00:04")
	good := mkLease("node5", "10.244.5.0/24", "192.168.77.15", "0e:74:00:00:00:05")
	d, err := Compute(mkNode("vxlan", noMAC, badIP, outside, good))
	var pe PeerErrors
	if !errors.As(err, &pe) || len(pe) != 3 {
		t.Fatalf("err %v: want 3 peer errors", err)
	}
	if len(d.Routes) != 1 || d.Routes[0].Dst.String() != "10.244.5.0/24" {
		t.Errorf("routes %v: want only node5", d.Routes)
	}
}

func TestComputeInvalidNode(t *testing.T) {
	for name, mut := range map[string]func(*Node){
		"no dev":          func(n *Node) { n.UnderlayDev = "" },
		"no ip":           func(n *Node) { n.UnderlayIP = netip.Addr{} },
		"self outside":    func(n *Node) { n.Self.Subnet = netip.MustParsePrefix("10.99.1.0/24") },
		"bad type":        func(n *Node) { n.Config.Backend.Type = "udp" },
		"tiny mtu":        func(n *Node) { n.UnderlayMTU = 300 },
		"ipv6 network":    func(n *Node) { n.Config.Network = netip.MustParsePrefix("fd00::/64") },
		"no underlay mtu": func(n *Node) { n.UnderlayMTU = 0 },
	} {
		n := mkNode("vxlan")
		mut(&n)
		d, err := Compute(n)
		var pe PeerErrors
		if err == nil || errors.As(err, &pe) || len(d.Links) != 0 {
			t.Errorf("%s: Compute = %+v, %v: want a node error and nothing desired", name, d, err)
		}
	}
}

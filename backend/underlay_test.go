package backend

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

func labNode() *nodestate.Snapshot {
	p := netip.MustParsePrefix
	return &nodestate.Snapshot{
		Links: []nodestate.Link{{Name: "lo", MTU: 65536}, {Name: "eth0", MTU: 1500}, {Name: "eth1", MTU: 9000}},
		Addrs: []nodestate.Addr{
			{Link: "lo", Prefix: p("127.0.0.1/8")},
			{Link: "eth0", Prefix: p("192.168.77.11/24")},
			{Link: "eth1", Prefix: p("172.16.0.5/16")},
		},
		Routes: []nodestate.Route{{Table: 254, Dst: p("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.168.77.1"), Dev: "eth0"}},
	}
}

func TestFindUnderlay(t *testing.T) {
	u, err := FindUnderlay(labNode(), "", netip.Addr{})
	if err != nil || u.Dev != "eth0" || u.IP.String() != "192.168.77.11" || u.MTU != 1500 || len(u.Nets) != 1 || u.Nets[0].String() != "192.168.77.0/24" {
		t.Fatalf("default route: %+v %v", u, err)
	}
	u, err = FindUnderlay(labNode(), "eth1", netip.Addr{})
	if err != nil || u.Dev != "eth1" || u.IP.String() != "172.16.0.5" || u.MTU != 9000 {
		t.Fatalf("--iface eth1: %+v %v", u, err)
	}
	u, err = FindUnderlay(labNode(), "", netip.MustParseAddr("172.16.0.5"))
	if err != nil || u.Dev != "eth1" {
		t.Fatalf("--public-ip: %+v %v", u, err)
	}
	for _, c := range []struct {
		iface, ip, want string
	}{
		{"eth9", "", "eth9 does not exist"},
		{"", "10.9.9.9", "not an address of this node"},
	} {
		var ip netip.Addr
		if c.ip != "" {
			ip = netip.MustParseAddr(c.ip)
		}
		if _, err := FindUnderlay(labNode(), c.iface, ip); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("FindUnderlay(%q, %q) = %v, want %q", c.iface, c.ip, err, c.want)
		}
	}
	s := labNode()
	s.Routes = nil
	if _, err := FindUnderlay(s, "", netip.Addr{}); err == nil || !strings.Contains(err.Error(), "--iface") {
		t.Errorf("no default route: %v", err)
	}
}

// TestPickUnderlayIPv6 covers --public-ipv6: it picks the interface that
// holds it (NAT addresses need --iface), overrides the interface's first
// global IPv6 address, and addresses of the wrong family or kind are
// refused before anything is looked at.
func TestPickUnderlayIPv6(t *testing.T) {
	p := netip.MustParsePrefix
	s := labNode()
	s.Addrs = append(s.Addrs,
		nodestate.Addr{Link: "eth0", Prefix: p("fd00:77::11/64")},
		nodestate.Addr{Link: "eth1", Prefix: p("fe80::1/64")},
		nodestate.Addr{Link: "eth1", Prefix: p("2001:db8:1::5/64")},
		nodestate.Addr{Link: "eth1", Prefix: p("2001:db8:1::6/64")})
	u, err := PickUnderlay(s, UnderlayChoice{})
	if err != nil || u.Dev != "eth0" || u.IPv6.String() != "fd00:77::11" {
		t.Fatalf("no choice: %+v %v", u, err)
	}
	u, err = PickUnderlay(s, UnderlayChoice{PublicIPv6: netip.MustParseAddr("2001:db8:1::6")})
	if err != nil || u.Dev != "eth1" || u.IPv6.String() != "2001:db8:1::6" || u.IP.String() != "172.16.0.5" {
		t.Fatalf("--public-ipv6 on eth1: %+v %v", u, err)
	}
	u, err = PickUnderlay(s, UnderlayChoice{Iface: "eth0", PublicIPv6: netip.MustParseAddr("2001:db8:99::1")})
	if err != nil || u.Dev != "eth0" || u.IPv6.String() != "2001:db8:99::1" {
		t.Fatalf("--iface eth0 --public-ipv6 (NAT): %+v %v", u, err)
	}
	u, err = PickUnderlay(s, UnderlayChoice{PublicIP: netip.MustParseAddr("192.168.77.11"), PublicIPv6: netip.MustParseAddr("2001:db8:1::5")})
	if err != nil || u.Dev != "eth0" || u.IPv6.String() != "2001:db8:1::5" {
		t.Fatalf("--public-ip picks the interface, --public-ipv6 the address: %+v %v", u, err)
	}
	for _, c := range []struct {
		choice UnderlayChoice
		want   string
	}{
		{UnderlayChoice{PublicIPv6: netip.MustParseAddr("2001:db8:99::1")}, "--public-ipv6 2001:db8:99::1 is not an address of this node"},
		{UnderlayChoice{PublicIPv6: netip.MustParseAddr("fe80::1")}, "--public-ipv6 fe80::1: link-local address"},
		{UnderlayChoice{PublicIPv6: netip.MustParseAddr("::ffff:10.0.0.1")}, "not an IPv6 address"},
		{UnderlayChoice{PublicIPv6: netip.MustParseAddr("10.0.0.1")}, "not an IPv6 address"},
		{UnderlayChoice{PublicIP: netip.MustParseAddr("fd00:77::11")}, "use --public-ipv6"},
		{UnderlayChoice{PublicIP: netip.MustParseAddr("224.0.0.1")}, "--public-ip 224.0.0.1: multicast address"},
		{UnderlayChoice{PublicIP: netip.MustParseAddr("127.0.0.1")}, "loopback address"},
	} {
		if _, err := PickUnderlay(s, c.choice); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("PickUnderlay(%+v) = %v, want %q", c.choice, err, c.want)
		}
	}
}

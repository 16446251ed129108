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

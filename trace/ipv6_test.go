package trace

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// testdata/dual-node{1,2}.json are `twill snapshot`s of a 2-node
// dual-stack vxlan lab (`twill lab up --ip-family dual`) whose real agents
// programmed both families: pods fd00:10:244:<i>::2 and ::3 beside
// 10.244.<i>.2 and .3, IPv6 overlay on twill-v6.1 over fd00:77::1<i>.

func dualTrace(t *testing.T, set func(*nodestate.Snapshot), from, to string, proto string) *Result {
	t.Helper()
	w := worldWith(t, set, "dual-node1", "dual-node2")
	var ap netip.AddrPort
	if a, err := netip.ParseAddr(to); err == nil {
		ap = netip.AddrPortFrom(a, 0)
	} else {
		ap = netip.MustParseAddrPort(to)
	}
	res, err := w.Trace(Request{From: from, To: ap.Addr(), Port: ap.Port(), Proto: proto})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestIPv6CrossNodeOverVxlanV6: an IPv6 pod-to-pod connection between
// nodes goes through twill-v6.1 to the peer's IPv6 underlay address and is
// established; the IPv4 twin of the same pods still goes through twill.1.
func TestIPv6CrossNodeOverVxlanV6(t *testing.T) {
	r := dualTrace(t, nil, "fd00:10:244:1::2", "[fd00:10:244:2::2]:8081", "tcp")
	s := only(t, r)
	out := text(r)
	if s.Kind != Established || !strings.Contains(out, "encapsulated in udp fd00:77::11 -> fd00:77::12:8472") || !strings.Contains(out, "decapsulated on twill-v6.1") {
		t.Fatalf("got %+v\n%s", s, out)
	}
	r = dualTrace(t, nil, "10.244.1.2", "10.244.2.2:8081", "tcp")
	if s := only(t, r); s.Kind != Established || !strings.Contains(text(r), "decapsulated on twill.1") {
		t.Fatalf("IPv4 twin: %+v\n%s", s, text(r))
	}
	if s := only(t, dualTrace(t, nil, "fd00:10:244:1::2", "fd00:10:244:2::3", "icmp")); s.Kind != Established {
		t.Fatalf("ICMPv6 echo: %+v", s)
	}
}

// TestIPv6Breakage: the IPv6 twins of F2 and F3 stop IPv6 traffic and are
// named with their IPv6 checks; IPv4 is untouched.
func TestIPv6Breakage(t *testing.T) {
	noFwd := func(s *nodestate.Snapshot) { s.Sysctls["net.ipv6.conf.all.forwarding"] = "0" }
	r := dualTrace(t, noFwd, "fd00:10:244:1::2", "[fd00:10:244:2::2]:8081", "tcp")
	if f := r.Failures(); only(t, r).Kind != Unreachable || len(f) != 1 || f[0].Check != "TW004" {
		t.Fatalf("IPv6 forwarding off on node2: %+v, failures %+v\n%s", only(t, r), f, text(r))
	}
	if s := only(t, dualTrace(t, noFwd, "10.244.1.2", "10.244.2.2:8081", "tcp")); s.Kind != Established {
		t.Fatalf("IPv4 with only IPv6 forwarding off: %+v", s)
	}
	drop := func(s *nodestate.Snapshot) {
		s.Iptables.NFT.Save6 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
	}
	r = dualTrace(t, drop, "fd00:10:244:1::2", "[fd00:10:244:2::2]:8081", "tcp")
	if f := r.Failures(); only(t, r).Kind != Dropped || len(f) != 1 || f[0].Check != "TW010" {
		t.Fatalf("ip6tables FORWARD DROP on node2: %+v, failures %+v\n%s", only(t, r), f, text(r))
	}
	if s := only(t, dualTrace(t, drop, "10.244.1.2", "10.244.2.2:8081", "tcp")); s.Kind != Established {
		t.Fatalf("IPv4 with an ip6tables drop: %+v", s)
	}
}

// TestIPv6NeedsIPv6Nodes: an IPv6 destination in snapshots without IPv6
// is a clear error.
func TestIPv6NeedsIPv6Nodes(t *testing.T) {
	w := world(t, "healthy-node1", "healthy-node2")
	_, err := w.Trace(Request{From: "node1-a", To: netip.MustParseAddr("fd00::1"), Port: 80})
	if err == nil || !strings.Contains(err.Error(), "no node of this trace has a global IPv6 address") {
		t.Fatalf("err = %v", err)
	}
}

// TestIPv6NodeCallsItself: a node calling one of its own IPv6 addresses
// (or [::1]) sends from that address, as the kernel does (IPv6 local
// routes have no preferred source; RFC 6724 rule 1), not from whichever
// global address another device has; the IPv4 twin keeps the local
// route's source.
func TestIPv6NodeCallsItself(t *testing.T) {
	for _, to := range []string{"::1", "fd00:10:244:1::1", "fd00:77::11", "127.0.0.1", "10.244.1.1"} {
		for i := 0; i < 20; i++ { // the devices' addresses are kept in a map: every order
			r := dualTrace(t, nil, "node1", netip.AddrPortFrom(netip.MustParseAddr(to), 8080).String(), "tcp")
			if r.Packet.Src.String() != to {
				t.Fatalf("node1 -> %s: sent from %s, want %s\n%s", to, r.Packet.Src, to, text(r))
			}
		}
	}
}

// TestIPv6LocalhostNodePortIsDropped: IPv6 has no route_localnet: a call
// to [::1]:NODEPORT DNATed to a pod (and masqueraded) is dropped even with
// net.ipv4.conf.all.route_localnet=1, which lets the IPv4 twin through
// (test/difftrace TestRouteLocalnetAgrees shows the kernel
// doing the same).
func TestIPv6LocalhostNodePortIsDropped(t *testing.T) {
	set := func(s *nodestate.Snapshot) {
		s.Sysctls["net.ipv4.conf.all.route_localnet"] = "1"
		s.Iptables.NFT.Save6 = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
			"-A OUTPUT -d ::1/128 -p tcp -m tcp --dport 30080 -j DNAT --to-destination [fd00:10:244:2::2]:8081\n" +
			"-A POSTROUTING -s ::1/128 -j MASQUERADE\nCOMMIT\n"
		s.Iptables.NFT.Save = strings.Replace(s.Iptables.NFT.Save, ":POSTROUTING ACCEPT [2:180]\n", ":POSTROUTING ACCEPT [2:180]\n-A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 30080 -j DNAT --to-destination 10.244.2.2:8081\n-A POSTROUTING -s 127.0.0.0/8 -j MASQUERADE\n", 1)
	}
	r := dualTrace(t, set, "node2", "[::1]:30080", "tcp")
	if s := only(t, r); s.Kind != Dropped || s.Cause != CauseLoopbackV6 || !strings.Contains(s.Where, "no route_localnet for IPv6") {
		t.Fatalf("[::1] NodePort: %+v\n%s", s, text(r))
	}
	r = dualTrace(t, set, "node2", "127.0.0.1:30080", "tcp")
	if s := only(t, r); s.Kind != Established {
		t.Fatalf("127.0.0.1 NodePort with route_localnet=1: %+v\n%s", s, text(r))
	}
}

// TestIPv6ForwardingOffSameBridgeDNAT: with net.ipv6.conf.all.forwarding=0
// an IPv6 frame from a pod DNATed (bridge-nf-call-ip6tables=1) to a pod on
// the same bridge is bridged by br_netfilter and needs no forwarding: the
// differential test saw the kernel deliver it. Across nodes it is
// unreachable.
func TestIPv6ForwardingOffSameBridgeDNAT(t *testing.T) {
	set := func(s *nodestate.Snapshot) {
		s.Sysctls["net.ipv6.conf.all.forwarding"] = "0"
		s.Iptables.NFT.Save6 = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
			"-A PREROUTING -d fd00:96::10/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:10:244:2::3]:8081\n" +
			"-A PREROUTING -d fd00:96::20/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:10:244:1::3]:8081\nCOMMIT\n"
	}
	// set changes node2; its pods are fd00:10:244:2::2 and ::3.
	r := dualTrace(t, set, "fd00:10:244:2::2", "[fd00:96::10]:80", "tcp")
	if s := only(t, r); s.Kind != Established || !strings.Contains(text(r), "no forwarding needed") {
		t.Fatalf("same bridge: %+v\n%s", s, text(r))
	}
	if s := only(t, dualTrace(t, set, "fd00:10:244:2::2", "[fd00:96::20]:80", "tcp")); s.Kind != Unreachable {
		t.Fatalf("across nodes: %+v", s)
	}
}

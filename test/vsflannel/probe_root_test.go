package vsflannel

import (
	"net/netip"
	"testing"
	"time"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/nsrun"
)

// TestProbes checks the benchmark's instruments on two namespaces joined
// by a veth pair (root): the TCP meter moves data, the pinger gets a reply
// from a live address and none from an absent one, and readPeerState sees
// exactly the vxlan and host-gw shapes of a peer.
func TestProbes(t *testing.T) {
	testbed.RequireRoot(t)
	a, b := testbed.Netns(t, "vsfa"), testbed.Netns(t, "vsfb")
	testbed.In(t, a, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
	for ns, ip := range map[string]string{a: "10.99.0.1/24", b: "10.99.0.2/24"} {
		testbed.In(t, ns, "ip", "addr", "add", ip, "dev", "eth0")
		testbed.In(t, ns, "ip", "link", "set", "eth0", "up")
	}
	peer := netip.MustParseAddr("10.99.0.2")

	bps, err := tcpRate(a, b, peer, tcpPort, 300*time.Millisecond)
	if err != nil || bps <= 0 {
		t.Fatalf("tcpRate over a veth: %v bit/s, %v", bps, err)
	}

	p, err := newPinger(a, peer, 0x7711)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.firstReply(pollEvery, time.Now().Add(10*time.Second)); err != nil {
		t.Fatalf("ping %s: %v", peer, err)
	}
	p, err = newPinger(a, netip.MustParseAddr("10.99.0.3"), 0x7712)
	if err != nil {
		t.Fatal(err)
	}
	if at, err := p.firstReply(pollEvery, time.Now().Add(300*time.Millisecond)); err == nil {
		t.Fatalf("ping to an address nobody has: a reply at %v", at)
	}

	h, err := nsrun.NetlinkHandle(a)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	subnet, public := netip.MustParsePrefix("10.244.3.0/24"), netip.MustParseAddr("192.168.77.13")
	state := func(vxlan bool) peerState {
		t.Helper()
		s, err := readPeerState(h, subnet, public, vxlan)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := state(true); !s.none() {
		t.Fatalf("nothing programmed yet: %+v", s)
	}
	testbed.In(t, a, "ip", "link", "add", "vx1", "type", "vxlan", "id", "1", "dstport", "8472", "local", "10.99.0.1", "nolearning")
	testbed.In(t, a, "ip", "link", "set", "vx1", "up")
	testbed.In(t, a, "ip", "route", "add", "10.244.3.0/24", "via", "10.244.3.0", "dev", "vx1", "onlink")
	if s := state(true); s.complete(true) || !s.route || s.none() {
		t.Fatalf("route alone: %+v", s)
	}
	testbed.In(t, a, "ip", "neigh", "add", "10.244.3.0", "lladdr", "02:77:00:00:00:03", "dev", "vx1", "nud", "permanent")
	testbed.In(t, a, "bridge", "fdb", "add", "02:77:00:00:00:03", "dev", "vx1", "dst", "192.168.77.13")
	if s := state(true); !s.complete(true) {
		t.Fatalf("route, neighbour and FDB entry: %+v", s)
	}
	// host-gw: the route must go via the peer's public address.
	if s := state(false); s.complete(false) {
		t.Fatalf("a vxlan route is not a host-gw route to %s: %+v", public, s)
	}
	testbed.In(t, a, "ip", "route", "replace", "10.244.3.0/24", "via", "192.168.77.13", "dev", "eth0", "onlink")
	if s := state(false); !s.complete(false) {
		t.Fatalf("host-gw route via %s: %+v", public, s)
	}
}

package backend

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// observed renders a Desired state the way a capture of a node that has it
// looks, plus objects twill does not own that Diff must leave alone.
func observed(d Desired) *nodestate.Snapshot {
	s := &nodestate.Snapshot{}
	s.Links = append(s.Links,
		nodestate.Link{Name: "lo", Kind: "loopback", Up: true},
		nodestate.Link{Name: "eth0", Kind: "veth", MTU: 1500, Up: true},
		nodestate.Link{Name: "cni0", Kind: "bridge", MTU: 1450, Up: true},
		nodestate.Link{Name: "wg0", Kind: "vxlan", MTU: 1400, Up: true, Vxlan: &nodestate.VxlanAttrs{VNI: 9}},
	)
	for _, l := range d.Links {
		s.Links = append(s.Links, nodestate.Link{Name: l.Name, Kind: "vxlan", MTU: l.MTU, MAC: l.MAC, Up: true,
			Vxlan: &nodestate.VxlanAttrs{VNI: l.VNI, Port: l.Port, Local: l.Local, Dev: l.Dev}})
		s.Addrs = append(s.Addrs, nodestate.Addr{Link: l.Name, Prefix: netip.MustParsePrefix("fe80::c74:c0ff:fea8:4d0b/64")})
		s.Neighbors = append(s.Neighbors, nodestate.Neighbor{Dev: l.Name, IP: netip.MustParseAddr("10.244.77.0"), State: "failed"})
	}
	s.Addrs = append(s.Addrs, d.Addrs...)
	s.Addrs = append(s.Addrs,
		nodestate.Addr{Link: "eth0", Prefix: netip.MustParsePrefix("192.168.77.11/24")},
		nodestate.Addr{Link: "cni0", Prefix: netip.MustParsePrefix("10.244.1.1/24")})
	s.Routes = append(s.Routes, d.Routes...)
	s.Routes = append(s.Routes,
		nodestate.Route{Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("10.244.1.0/24"), Dev: "cni0", Protocol: "kernel"},
		nodestate.Route{Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("192.168.77.0/24"), Dev: "eth0", Protocol: "kernel"},
		nodestate.Route{Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.168.77.1"), Dev: "eth0"},
		nodestate.Route{Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("10.244.200.0/24"), Dev: "wg0"}, // a user's route into the network on another device
		nodestate.Route{Table: 100, Type: "unicast", Dst: netip.MustParsePrefix("10.244.9.0/24"), Gateway: netip.MustParseAddr("192.168.77.99"), Dev: "eth0"},
		nodestate.Route{Table: 255, Type: "local", Dst: netip.MustParsePrefix("10.244.1.0/32"), Dev: "twill.1"},
	)
	s.Neighbors = append(s.Neighbors, d.Neighbors...)
	s.Neighbors = append(s.Neighbors, nodestate.Neighbor{Dev: "eth0", IP: netip.MustParseAddr("192.168.77.12"), MAC: "aa:bb:cc:dd:ee:ff", State: "permanent"})
	s.FDB = append(s.FDB, d.FDB...)
	s.FDB = append(s.FDB,
		nodestate.FDBEntry{Dev: "wg0", MAC: "00:00:00:00:00:00", Dst: netip.MustParseAddr("192.168.77.50"), State: "permanent", Self: true},
		nodestate.FDBEntry{Dev: "eth0", MAC: "33:33:00:00:00:01", State: "permanent", Self: true})
	return s
}

func changeStrings(cs []Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Action + " " + c.Kind + " " + c.Object()
	}
	return out
}

func mustCompute(t *testing.T, n Node) Desired {
	t.Helper()
	d, err := Compute(n)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	peer2 = mkLease("node2", "10.244.2.0/24", "192.168.77.12", "0e:74:c0:a8:4d:0c")
	peer3 = mkLease("node3", "10.244.3.0/24", "192.168.77.13", "0e:74:c0:a8:4d:0d")
)

func TestDiffInSyncIsEmpty(t *testing.T) {
	for _, typ := range []string{"vxlan", "host-gw"} {
		d := mustCompute(t, mkNode(typ, peer2, peer3))
		if cs := Diff(d, observed(d)); len(cs) != 0 {
			t.Errorf("%s: in-sync node gives changes %v", typ, changeStrings(cs))
		}
	}
}

func TestDiffEmptyNode(t *testing.T) {
	d := mustCompute(t, mkNode("vxlan", peer2, peer3))
	got := changeStrings(Diff(d, nil))
	want := []string{
		"add link twill.1 vxlan id 1 dstport 8472 local 192.168.77.11 dev eth0 mtu 1450 address 0e:74:c0:a8:4d:0b",
		"add addr 10.244.1.0/32 dev twill.1",
		"add fdb 0e:74:c0:a8:4d:0c dev twill.1 dst 192.168.77.12 self permanent",
		"add fdb 0e:74:c0:a8:4d:0d dev twill.1 dst 192.168.77.13 self permanent",
		"add neighbor 10.244.2.0 lladdr 0e:74:c0:a8:4d:0c dev twill.1 permanent",
		"add neighbor 10.244.3.0 lladdr 0e:74:c0:a8:4d:0d dev twill.1 permanent",
		"add route 10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink",
		"add route 10.244.3.0/24 via 10.244.3.0 dev twill.1 onlink",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDiffPeerJoinsAndLeaves(t *testing.T) {
	before := mustCompute(t, mkNode("vxlan", peer2, peer3))
	have := observed(before)
	after := mustCompute(t, mkNode("vxlan", peer2)) // node3 left
	got := changeStrings(Diff(after, have))
	want := []string{
		"delete route 10.244.3.0/24 via 10.244.3.0 dev twill.1 onlink",
		"delete neighbor 10.244.3.0 lladdr 0e:74:c0:a8:4d:0d dev twill.1 permanent",
		"delete fdb 0e:74:c0:a8:4d:0d dev twill.1 dst 192.168.77.13 self permanent",
	}
	if !slices.Equal(got, want) {
		t.Errorf("leave: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Join: node3 comes back.
	got = changeStrings(Diff(before, observed(after)))
	want = []string{
		"add fdb 0e:74:c0:a8:4d:0d dev twill.1 dst 192.168.77.13 self permanent",
		"add neighbor 10.244.3.0 lladdr 0e:74:c0:a8:4d:0d dev twill.1 permanent",
		"add route 10.244.3.0/24 via 10.244.3.0 dev twill.1 onlink",
	}
	if !slices.Equal(got, want) {
		t.Errorf("join: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDiffStaleMAC(t *testing.T) {
	oldD := mustCompute(t, mkNode("vxlan", peer2, mkLease("node3", "10.244.3.0/24", "192.168.77.13", "02:77:de:ad:00:03")))
	d := mustCompute(t, mkNode("vxlan", peer2, peer3))
	got := changeStrings(Diff(d, observed(oldD)))
	want := []string{
		"delete fdb 02:77:de:ad:00:03 dev twill.1 dst 192.168.77.13 self permanent",
		"add fdb 0e:74:c0:a8:4d:0d dev twill.1 dst 192.168.77.13 self permanent",
		"replace neighbor 10.244.3.0 lladdr 0e:74:c0:a8:4d:0d dev twill.1 permanent",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDiffWrongObjects(t *testing.T) {
	d := mustCompute(t, mkNode("vxlan", peer2, peer3))
	have := observed(d)
	for i := range have.Links {
		if have.Links[i].Name == "twill.1" {
			have.Links[i].MTU, have.Links[i].Up = 1500, false
		}
	}
	for i := range have.FDB {
		if have.FDB[i].MAC == "0e:74:c0:a8:4d:0c" {
			have.FDB[i].Dst = netip.MustParseAddr("192.168.77.99") // peer moved
		}
	}
	for i := range have.Routes {
		if have.Routes[i].Dst.String() == "10.244.2.0/24" {
			have.Routes[i].Onlink = false
		}
	}
	have.Routes = append(have.Routes,
		nodestate.Route{Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("10.244.3.0/24"), Dev: "twill.1", Metric: 100},
		nodestate.Route{Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("10.244.8.0/24"), Gateway: netip.MustParseAddr("192.168.77.18"), Dev: "eth0"}, // left-over host-gw route
		nodestate.Route{Table: 254, Type: "unicast", Dst: netip.MustParsePrefix("172.30.0.0/16"), Dev: "twill.1"},
	)
	have.Addrs = append(have.Addrs, nodestate.Addr{Link: "twill.1", Prefix: netip.MustParsePrefix("10.244.99.0/32")})
	have.Neighbors = append(have.Neighbors, nodestate.Neighbor{Dev: "twill.1", IP: netip.MustParseAddr("10.244.9.0"), MAC: "0e:74:00:00:00:09", State: "permanent"})
	got := changeStrings(Diff(d, have))
	want := []string{
		"delete route 10.244.3.0/24 dev twill.1 metric 100",
		"delete route 10.244.8.0/24 via 192.168.77.18 dev eth0",
		"delete route 172.30.0.0/16 dev twill.1",
		"delete neighbor 10.244.9.0 lladdr 0e:74:00:00:00:09 dev twill.1 permanent",
		"delete addr 10.244.99.0/32 dev twill.1",
		"replace link twill.1 vxlan id 1 dstport 8472 local 192.168.77.11 dev eth0 mtu 1450 address 0e:74:c0:a8:4d:0b",
		"replace fdb 0e:74:c0:a8:4d:0c dev twill.1 dst 192.168.77.12 self permanent",
		"replace route 10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDiffRecreateLink(t *testing.T) {
	d := mustCompute(t, mkNode("vxlan", peer2))
	have := observed(d)
	for i := range have.Links {
		if have.Links[i].Name == "twill.1" {
			have.Links[i].Vxlan.Port = 4789
		}
	}
	cs := Diff(d, have)
	got := changeStrings(cs)
	// Recreating drops everything on the device: all of it is re-added, nothing deleted.
	want := []string{
		"replace link twill.1 vxlan id 1 dstport 8472 local 192.168.77.11 dev eth0 mtu 1450 address 0e:74:c0:a8:4d:0b",
		"add addr 10.244.1.0/32 dev twill.1",
		"add fdb 0e:74:c0:a8:4d:0c dev twill.1 dst 192.168.77.12 self permanent",
		"add neighbor 10.244.2.0 lladdr 0e:74:c0:a8:4d:0c dev twill.1 permanent",
		"add route 10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink",
	}
	if !slices.Equal(got, want) || !cs[0].Recreate || !strings.Contains(cs[0].Reason, "port 4789 != 8472") {
		t.Errorf("got\n%s\n(reason %q)\nwant\n%s", strings.Join(got, "\n"), cs[0].Reason, strings.Join(want, "\n"))
	}
}

func TestDiffBackendSwitch(t *testing.T) {
	vx := mustCompute(t, mkNode("vxlan", peer2))
	hg := mustCompute(t, mkNode("host-gw", peer2))
	got := changeStrings(Diff(hg, observed(vx)))
	want := []string{
		"delete link twill.1",
		"add route 10.244.2.0/24 via 192.168.77.12 dev eth0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("vxlan -> host-gw: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Teardown: nothing desired, ownership kept: every owned object goes, nothing else.
	got = changeStrings(Diff(Desired{Own: hg.Own}, observed(hg)))
	want = []string{"delete route 10.244.2.0/24 via 192.168.77.12 dev eth0"}
	if !slices.Equal(got, want) {
		t.Errorf("host-gw teardown: got %v want %v", got, want)
	}
}

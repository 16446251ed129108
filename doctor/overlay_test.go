package doctor

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// The snapshots in testdata/agent-*-node1.json were captured with `twill
// snapshot` on node1 of a 2-node lab whose real agents programmed each
// backend variant, after a third lease (remote1, 10.244.200.0/24 at
// 172.16.9.9, off the lab's 192.168.77.0/24 segment) was added to etcd
// (lab.TestDoctorAgreesWithTheAgentOnEveryBackend, TWILL_RECORD_FIXTURES):
//
//	vxlan:               both peers via twill.1 (route, neighbour, FDB)
//	vxlan-directrouting: node2 via 192.168.77.12 dev eth0, remote1 via twill.1
//	host-gw:             node2 via 192.168.77.12 dev eth0, remote1 refused

func loadAgentState(t *testing.T, variant string) *nodestate.Snapshot {
	t.Helper()
	s, err := nodestate.LoadFile("testdata/agent-" + variant + "-node1.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// overlayFindings returns "ID SEVERITY" of the overlay checks' findings.
func overlayFindings(r Report) []string {
	var out []string
	for _, f := range r.Findings {
		if strings.HasPrefix(f.ID, "TW04") {
			out = append(out, f.ID+" "+string(f.Severity))
		}
	}
	return out
}

func logFindings(t *testing.T, r Report) {
	t.Helper()
	for _, f := range r.Findings {
		t.Logf("%s", f.Headline())
		for _, e := range f.Evidence {
			t.Logf("    %s", e)
		}
	}
}

// TestOverlayOnStatesTheAgentProduced: on every backend variant the agent
// programs, doctor expects what the agent did.
func TestOverlayOnStatesTheAgentProduced(t *testing.T) {
	for variant, want := range map[string][]string{
		"vxlan":               nil,
		"vxlan-directrouting": nil,
		"host-gw":             {"TW045 ERROR"}, // remote1 is off the segment: the agent refuses it
	} {
		t.Run(variant, func(t *testing.T) {
			r := Run(loadAgentState(t, variant), Config{})
			if got := overlayFindings(r); !slices.Equal(got, want) || len(r.NotChecked) != 0 {
				logFindings(t, r)
				t.Fatalf("overlay findings %v (not checked %+v), want %v", got, r.NotChecked, want)
			}
			if variant == "host-gw" && !strings.Contains(r.Findings[0].Title, "remote1") {
				t.Fatalf("TW045 does not name the peer: %s", r.Findings[0].Title)
			}
		})
	}
}

func routeIndex(t *testing.T, s *nodestate.Snapshot, dst string) int {
	t.Helper()
	i := slices.IndexFunc(s.Routes, func(r nodestate.Route) bool {
		return r.Table == nodestate.TableMain && r.Dst == netip.MustParsePrefix(dst)
	})
	if i < 0 {
		t.Fatalf("no route to %s in the fixture", dst)
	}
	return i
}

// TestOverlayDirectRoutingDrift: the same node with what goes wrong in the
// field; each difference is reported by exactly the check that owns it.
func TestOverlayDirectRoutingDrift(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name   string
		mutate func(t *testing.T, s *nodestate.Snapshot)
		want   []string
	}{
		{"healthy", func(*testing.T, *nodestate.Snapshot) {}, nil},
		{"same-segment peer routed through vxlan instead of directly", func(t *testing.T, s *nodestate.Snapshot) {
			r := &s.Routes[routeIndex(t, s, "10.244.2.0/24")]
			r.Gateway, r.Dev, r.Onlink = a("10.244.2.0"), "twill.1", true
		}, []string{"TW040 ERROR"}},
		{"direct route missing", func(t *testing.T, s *nodestate.Snapshot) {
			s.Routes = slices.Delete(s.Routes, routeIndex(t, s, "10.244.2.0/24"), routeIndex(t, s, "10.244.2.0/24")+1)
		}, []string{"TW040 ERROR"}},
		{"direct route via the wrong node", func(t *testing.T, s *nodestate.Snapshot) {
			s.Routes[routeIndex(t, s, "10.244.2.0/24")].Gateway = a("192.168.77.99")
		}, []string{"TW040 ERROR"}},
		{"off-segment peer's FDB entry missing", func(t *testing.T, s *nodestate.Snapshot) {
			s.FDB = slices.DeleteFunc(s.FDB, func(f nodestate.FDBEntry) bool { return f.Dst == a("172.16.9.9") })
		}, []string{"TW042 ERROR"}},
		{"off-segment peer's neighbour stale", func(t *testing.T, s *nodestate.Snapshot) {
			for i := range s.Neighbors {
				if s.Neighbors[i].IP == a("10.244.200.0") {
					s.Neighbors[i].MAC = "0e:74:ac:10:09:99"
				}
			}
		}, []string{"TW041 ERROR"}},
		{"departed peer's entries left behind", func(t *testing.T, s *nodestate.Snapshot) {
			s.Leases = slices.DeleteFunc(s.Leases, func(l nodestate.Lease) bool { return l.Node == "remote1" })
		}, []string{"TW040 WARNING", "TW041 WARNING", "TW042 WARNING"}},
		{"Flannel's subnet file: DirectRouting inferred from the routes", func(t *testing.T, s *nodestate.Snapshot) {
			s.Files.SubnetFiles[0].Content = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := loadAgentState(t, "vxlan-directrouting")
			c.mutate(t, s)
			r := Run(s, Config{})
			if got := overlayFindings(r); !slices.Equal(got, c.want) || len(r.NotChecked) != 0 {
				logFindings(t, r)
				t.Fatalf("overlay findings %v (not checked %+v), want %v", got, r.NotChecked, c.want)
			}
			for _, f := range r.Findings {
				if f.Title == "" || f.Explanation == "" || f.Fix == "" || len(f.Evidence) == 0 {
					t.Errorf("%s: incomplete finding: %+v", f.ID, f)
				}
			}
		})
	}
}

// TestOverlayWrongRouteNamesTheFix: the finding of the reported false
// positive's opposite (a vxlan route where the agent routes directly)
// wants the direct route, as the agent would program it.
func TestOverlayWrongRouteNamesTheFix(t *testing.T) {
	s := loadAgentState(t, "vxlan-directrouting")
	r := &s.Routes[routeIndex(t, s, "10.244.2.0/24")]
	r.Gateway, r.Dev, r.Onlink = netip.MustParseAddr("10.244.2.0"), "twill.1", true
	rep := Run(s, Config{})
	if len(rep.Findings) != 1 || !strings.HasPrefix(rep.Findings[0].Fix, "ip route replace 10.244.2.0/24 via 192.168.77.12 dev eth0;") || !strings.Contains(rep.Findings[0].Title, "node node2") {
		logFindings(t, rep)
		t.Fatalf("findings %+v", rep.Findings)
	}
}

// TestOverlayOnFlannelsDevice: a node whose vxlan device is Flannel's
// flannel.1 (same VNI, same entries) is checked on that device.
func TestOverlayOnFlannelsDevice(t *testing.T) {
	s := loadAgentState(t, "vxlan")
	rename := func(dev *string) {
		if *dev == "twill.1" {
			*dev = "flannel.1"
		}
	}
	for i := range s.Links {
		rename(&s.Links[i].Name)
	}
	for i := range s.Addrs {
		rename(&s.Addrs[i].Link)
	}
	for i := range s.Routes {
		rename(&s.Routes[i].Dev)
	}
	for i := range s.Neighbors {
		rename(&s.Neighbors[i].Dev)
	}
	for i := range s.FDB {
		rename(&s.FDB[i].Dev)
	}
	r := Run(s, Config{})
	if got := overlayFindings(r); len(got) != 0 {
		logFindings(t, r)
		t.Fatalf("overlay findings on flannel.1: %v", got)
	}
	// And drift on it is still seen.
	s.Neighbors = slices.DeleteFunc(s.Neighbors, func(n nodestate.Neighbor) bool {
		return n.Dev == "flannel.1" && n.IP == netip.MustParseAddr("10.244.2.0")
	})
	if got := overlayFindings(Run(s, Config{})); !slices.Equal(got, []string{"TW041 ERROR"}) {
		t.Fatalf("missing neighbour on flannel.1: %v", got)
	}
}

package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/nodestate"
)

// offSegmentPeer is a lease of a node that is not on the lab's underlay
// segment (192.168.77.0/24): the agents program it through vxlan (also
// with DirectRouting), and host-gw cannot reach it. No packet is sent to it.
var offSegmentPeer = lease.Lease{
	Subnet: netip.MustParsePrefix("10.244.200.0/24"),
	Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr("172.16.9.9"), BackendType: BackendVXLAN, Node: "remote1",
		BackendData: &lease.BackendData{VtepMAC: backend.VtepMAC(netip.MustParseAddr("172.16.9.9"))},
	},
}

// TestDoctorAgreesWithTheAgentOnEveryBackend: for every backend variant
// the agent can program (vxlan, vxlan with DirectRouting, host-gw), with
// peers on the segment and one off it, real agents program the nodes; each
// node is captured with `twill snapshot` (leases included) and doctor on the
// snapshot finds nothing wrong with the overlay, except, on host-gw, the
// off-segment peer the agent refuses (TW045). TWILL_RECORD_FIXTURES=<dir>
// saves the snapshots (doctor/testdata holds a recorded set).
func TestDoctorAgreesWithTheAgentOnEveryBackend(t *testing.T) {
	needRoot(t)
	cases := []struct {
		name          string
		backend       string
		directRouting bool
		// wantOnPeer is the route node1 must have to its peer node2.
		wantOnPeer string
		// wantOff is the route to the off-segment peer ("" none), and the
		// findings doctor must report because of it.
		wantOff   string
		offErrors []string
	}{
		{"vxlan", BackendVXLAN, false, "10.244.2.0/24 via 10.244.2.0 dev twill.1 onlink", "10.244.200.0/24 via 10.244.200.0 dev twill.1 onlink", nil},
		{"vxlan-directrouting", BackendVXLAN, true, "10.244.2.0/24 via 192.168.77.12 dev eth0", "10.244.200.0/24 via 10.244.200.0 dev twill.1 onlink", nil},
		{"host-gw", BackendHostGW, false, "10.244.2.0/24 via 192.168.77.12 dev eth0", "", []string{"TW045"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := agentConfig(t, tc.backend, 2, 1)
			c.DirectRouting = tc.directRouting
			st := upLab(t, c)
			twill := c.Self

			clean := snapshots(t, st, twill, tc.name)
			for name, s := range clean {
				r := doctor.Run(s, doctor.Config{})
				if r.Errors() != 0 || len(overlayIDs(r)) != 0 || len(r.NotChecked) != 0 {
					t.Errorf("%s: doctor on the agent's node: findings %v, not checked %+v\n%s", name, r.IDs(), r.NotChecked, headlines(r))
				}
				if !hasRoute(s, tc.wantOnPeer) && name == "node1" {
					t.Errorf("node1 has no route %q: %v", tc.wantOnPeer, routeStrings(s))
				}
			}

			off := offSegmentPeer
			off.Attrs.BackendType = tc.backend
			putLease(t, st, off)
			if tc.wantOff != "" {
				waitFor(t, 20*time.Second, "node1 programs the off-segment peer", func() bool {
					out, _ := runIn(context.Background(), st.Nodes[0].Namespace, "", "ip", "route")
					return strings.Contains(out, tc.wantOff)
				})
			} else {
				// host-gw: the agent refuses the peer and says so in its log.
				waitFor(t, 20*time.Second, "node1's agent reports the off-segment peer", func() bool {
					b, _ := os.ReadFile(st.Nodes[0].Agent.Log)
					return strings.Contains(string(b), "peer not programmed") && strings.Contains(string(b), "remote1")
				})
			}
			for name, s := range snapshots(t, st, twill, tc.name+"-offsegment") {
				r := doctor.Run(s, doctor.Config{})
				var errs []string
				for _, f := range r.Findings {
					if f.Severity == doctor.Error {
						errs = append(errs, f.ID)
					}
				}
				if !slices.Equal(errs, tc.offErrors) || !slices.Equal(overlayIDs(r), tc.offErrors) || len(r.NotChecked) != 0 {
					t.Errorf("%s with an off-segment peer: errors %v (findings %v, not checked %+v), want %v\n%s", name, errs, r.IDs(), r.NotChecked, tc.offErrors, headlines(r))
				}
				if tc.wantOff != "" && !hasRoute(s, tc.wantOff) {
					t.Errorf("%s has no route %q: %v", name, tc.wantOff, routeStrings(s))
				}
			}
		})
	}
}

// snapshots captures every node of the lab with the real `twill snapshot`
// run inside it (its namespace, its files, the lab's etcd for the leases).
func snapshots(t *testing.T, st *State, twill, label string) map[string]*nodestate.Snapshot {
	t.Helper()
	out := map[string]*nodestate.Snapshot{}
	dir := t.TempDir()
	record := os.Getenv("TWILL_RECORD_FIXTURES")
	for _, n := range st.Nodes {
		p := filepath.Join(dir, n.Name+".json")
		if o, err := labExec(t, st, n.Name, twill, "snapshot", "--node", n.Name, "-o", p); err != nil {
			t.Fatalf("twill snapshot on %s: %v\n%s", n.Name, err, o)
		}
		s, err := nodestate.LoadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Leases) == 0 {
			t.Fatalf("snapshot of %s has no leases: %+v", n.Name, s.Errors)
		}
		if record != "" {
			b, err := os.ReadFile(p)
			if err == nil {
				err = os.WriteFile(filepath.Join(record, fmt.Sprintf("agent-%s-%s.json", label, n.Name)), b, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		out[n.Name] = s
	}
	return out
}

// putLease writes a lease without TTL into the lab's etcd.
func putLease(t *testing.T, st *State, l lease.Lease) {
	t.Helper()
	withEtcd(t, st, func(ctx context.Context, c *clientv3.Client) error {
		return leaseetcd.Put(ctx, c, lease.DefaultPrefix, l, 0)
	})
}

// withEtcd calls f with a client of the lab's etcd, bounded to 5 seconds,
// and fails the test on any error.
func withEtcd(t *testing.T, st *State, f func(context.Context, *clientv3.Client) error) {
	t.Helper()
	c, err := etcdClient(st)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f(ctx, c); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// overlayIDs lists the IDs of findings of the overlay checks (TW04x).
func overlayIDs(r doctor.Report) []string {
	var out []string
	for _, f := range r.Findings {
		if strings.HasPrefix(f.ID, "TW04") {
			out = append(out, f.ID)
		}
	}
	return out
}

func headlines(r doctor.Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %s\n", f.Headline())
		for _, e := range f.Evidence {
			fmt.Fprintf(&b, "      %s\n", e)
		}
	}
	return b.String()
}

func routeStrings(s *nodestate.Snapshot) []string {
	var out []string
	for _, r := range s.Routes {
		if r.Table == nodestate.TableMain {
			out = append(out, backend.RouteString(r))
		}
	}
	return out
}

func hasRoute(s *nodestate.Snapshot, want string) bool {
	return slices.Contains(routeStrings(s), want)
}

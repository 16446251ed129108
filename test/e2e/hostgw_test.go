package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHostGW runs the pod-network checks on a second lab that uses the
// host-gw backend: routes via the peers' underlay addresses, no vxlan.
func TestHostGW(t *testing.T) {
	name := labName + "g"
	tw(t, "lab", "down", "--name", name)
	if r := tw(t, "lab", "up", "--backend", "host-gw", "--nodes", "3", "--pods", "2", "--name", name); r.code != 0 {
		t.Fatalf("lab up --backend host-gw: exit %d\n%s", r.code, r.out)
	}
	defer tw(t, "lab", "down", "--name", name)

	everyPairTalks(t, name)
	checkMasquerade(t, name)
	for _, node := range []string{"node1", "node2", "node3"} {
		r := tw(t, "lab", "exec", node, "--name", name, "--", twill, "doctor", "-o", "json")
		if r.code != 0 {
			t.Errorf("doctor on host-gw %s: exit %d\n%s", node, r.code, r.out)
		}
	}
	st := status(t, name)
	routes := tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route").out
	for _, n := range st.Nodes[1:] {
		want := fmt.Sprintf("%s via %s dev eth0", n.Subnet, n.IP)
		if !strings.Contains(routes, want) {
			t.Errorf("node1 lacks host-gw route %q:\n%s", want, routes)
		}
	}
	if strings.Contains(routes, "twill.1") {
		t.Errorf("host-gw node has vxlan routes:\n%s", routes)
	}
	// Drift: a deleted peer route comes back.
	tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route", "del", st.Nodes[2].Subnet)
	end := time.Now().Add(10 * time.Second)
	for {
		if strings.Contains(tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route").out, st.Nodes[2].Subnet) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("host-gw route to %s not repaired within 10s", st.Nodes[2].Subnet)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

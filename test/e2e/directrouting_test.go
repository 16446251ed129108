package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDirectRouting runs the pod-network checks on a lab whose vxlan backend
// has DirectRouting: every lab node shares the underlay segment, so the
// agents route every peer via its underlay address on eth0 (the vxlan device
// stays up for peers off the segment), and doctor agrees on every node.
func TestDirectRouting(t *testing.T) {
	name := labName + "d"
	tw(t, "lab", "down", "--name", name)
	if r := tw(t, "lab", "up", "--direct-routing", "--nodes", "3", "--pods", "1", "--name", name); r.code != 0 {
		t.Fatalf("lab up --direct-routing: exit %d\n%s", r.code, r.out)
	}
	defer tw(t, "lab", "down", "--name", name)

	everyPairTalks(t, name)
	st := status(t, name)
	for _, node := range []string{"node1", "node2", "node3"} {
		r := tw(t, "lab", "exec", node, "--name", name, "--", twill, "doctor")
		if r.code != 0 || !strings.Contains(r.out, "no problems found") {
			t.Errorf("doctor on DirectRouting %s: exit %d\n%s", node, r.code, r.out)
		}
	}
	routes := tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route").out
	for _, n := range st.Nodes[1:] {
		want := fmt.Sprintf("%s via %s dev eth0", n.Subnet, n.IP)
		if !strings.Contains(routes, want) {
			t.Errorf("node1 lacks the direct route %q:\n%s", want, routes)
		}
	}
	if strings.Contains(routes, "dev twill.1") {
		t.Errorf("DirectRouting node routes same-segment peers through vxlan:\n%s", routes)
	}
	if link := tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "-d", "link", "show", "twill.1"); link.code != 0 || !strings.Contains(link.out, "vxlan id 1") {
		t.Errorf("DirectRouting node has no vxlan device for off-segment peers: %s", link.out)
	}
	// Drift: a direct route replaced by a vxlan one is found by doctor and
	// repaired by the agent.
	peer := st.Nodes[2]
	tw(t, "lab", "agent", "node1", "pause", "--name", name)
	tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route", "replace", peer.Subnet, "via", strings.TrimSuffix(peer.Subnet, "/24"), "dev", "twill.1", "onlink")
	rep, code := doctorOn(t, name, "node1")
	if ids := rep.errorIDs(); code != 1 || len(ids) != 1 || ids[0] != "TW040" {
		t.Errorf("after routing %s through vxlan: error findings %v (exit %d), want [TW040]", peer.Subnet, ids, code)
	}
	tw(t, "lab", "agent", "node1", "resume", "--name", name)
	want := fmt.Sprintf("%s via %s dev eth0", peer.Subnet, peer.IP)
	end := time.Now().Add(15 * time.Second)
	for !strings.Contains(tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route").out, want) {
		if time.Now().After(end) {
			t.Fatalf("direct route %q not repaired within 15s", want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

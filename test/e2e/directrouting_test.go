package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestDirectRouting runs the pod-network checks on a lab whose vxlan backend
// has DirectRouting: every lab node shares the underlay segment, so the
// agents route every peer via its underlay address on eth0 (the vxlan device
// stays up for peers off the segment), and doctor agrees on every node.
func TestDirectRouting(t *testing.T) {
	name := otherLab(t, "d", "--direct-routing", "--nodes", "3", "--pods", "1")

	everyPairTalks(t, name)
	doctorCleanEverywhere(t, name)
	st := status(t, name)
	routes := peersRoutedDirectly(t, name, st)
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
	waitForRoute(t, name, peer.Subnet+" via "+peer.IP+" dev eth0", 15*time.Second)
}

package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestHostGW runs the pod-network checks on a second lab that uses the
// host-gw backend: routes via the peers' underlay addresses, no vxlan.
func TestHostGW(t *testing.T) {
	name := otherLab(t, "g", "--backend", "host-gw", "--nodes", "3", "--pods", "2")

	everyPairTalks(t, name)
	checkMasquerade(t, name)
	doctorCleanEverywhere(t, name)
	st := status(t, name)
	routes := peersRoutedDirectly(t, name, st)
	if strings.Contains(routes, "twill.1") {
		t.Errorf("host-gw node has vxlan routes:\n%s", routes)
	}
	// Drift: a deleted peer route comes back.
	tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route", "del", st.Nodes[2].Subnet)
	waitForRoute(t, name, st.Nodes[2].Subnet+" via "+st.Nodes[2].IP+" dev eth0", 10*time.Second)
}

// waitForRoute waits until node1 of lab name has a route containing want
// (the agent repaired it), failing after limit.
func waitForRoute(t *testing.T, name, want string, limit time.Duration) {
	t.Helper()
	end := time.Now().Add(limit)
	for !strings.Contains(tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route").out, want) {
		if time.Now().After(end) {
			t.Fatalf("route %q not repaired within %s", want, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// otherLab builds a second lab beside the suite's (name labName+suffix) with
// the extra `lab up` arguments, removed when the test ends.
func otherLab(t *testing.T, suffix string, args ...string) string {
	t.Helper()
	name := labName + suffix
	tw(t, "lab", "down", "--name", name)
	t.Cleanup(func() { tw(t, "lab", "down", "--name", name) })
	if r := tw(t, append([]string{"lab", "up", "--name", name}, args...)...); r.code != 0 {
		t.Fatalf("lab up %s: exit %d\n%s", strings.Join(args, " "), r.code, r.out)
	}
	return name
}

// doctorCleanEverywhere requires doctor to find nothing wrong on every node.
func doctorCleanEverywhere(t *testing.T, name string) {
	t.Helper()
	for _, n := range status(t, name).Nodes {
		rep, code := doctorOn(t, name, n.Name)
		if code != 0 || len(rep.Findings) != 0 {
			t.Errorf("doctor on %s of lab %s: exit %d, findings %+v", n.Name, name, code, rep.Findings)
		}
	}
}

// peersRoutedDirectly requires node1 to route every peer's pod subnet via the
// peer's underlay address on eth0 (host-gw, vxlan DirectRouting) and returns
// node1's routes.
func peersRoutedDirectly(t *testing.T, name string, st labStatus) string {
	t.Helper()
	routes := tw(t, "lab", "exec", "node1", "--name", name, "--", "ip", "route").out
	for _, n := range st.Nodes[1:] {
		want := n.Subnet + " via " + n.IP + " dev eth0"
		if !strings.Contains(routes, want) {
			t.Errorf("node1 lacks the direct route %q:\n%s", want, routes)
		}
	}
	return routes
}

package e2e

import (
	"slices"
	"strings"
	"testing"
)

// TestHealthyLabHasNoErrorFindings: no false positives on a working cluster.
func TestHealthyLabHasNoErrorFindings(t *testing.T) {
	for _, node := range []string{"node1", "node2", "node3"} {
		rep, code := doctor(t, node)
		if ids := rep.errorIDs(); len(ids) != 0 || code != 0 {
			t.Errorf("%s: healthy node gave error findings %v (exit %d): %+v", node, ids, code, rep.Findings)
		}
		for _, n := range rep.NotChecked {
			// Everything the lab has must be checkable: tools, leases, pod network.
			t.Errorf("%s: %s not checked: %s", node, n.ID, n.Reason)
		}
	}
}

// scenarios are the lab's failures with the node they are applied to and
// the one check that must name them.
var scenarios = []struct{ id, node, check string }{
	{"F1", "node1", "TW002"},
	{"F2", "node1", "TW001"},
	{"F3", "node2", "TW010"},
	{"F4-split", "node1", "TW020"},
	{"F4-corrupt", "node3", "TW021"},
	{"F5a", "node1", "TW030"},
	{"F6-fdb", "node1", "TW042"},
	{"F6-neigh", "node2", "TW041"},
	{"F6-route", "node3", "TW040"},
	{"F6-mtu", "node1", "TW043"},
}

// TestEachScenarioGivesExactlyItsCheck breaks a node each way FAILURES.md
// describes and requires doctor to name exactly that failure, then repairs
// the node and requires it clean again.
func TestEachScenarioGivesExactlyItsCheck(t *testing.T) {
	listed := lab(t, "scenarios")
	for _, sc := range scenarios {
		if !strings.Contains(listed, sc.id) {
			t.Errorf("lab scenarios does not list %s", sc.id)
		}
		t.Run(sc.id, func(t *testing.T) {
			lab(t, "break", sc.id, sc.node)
			fixed := false
			defer func() {
				if !fixed {
					lab(t, "fix", sc.id, sc.node)
				}
			}()
			rep, code := doctor(t, sc.node)
			if ids := rep.errorIDs(); !slices.Equal(ids, []string{sc.check}) || code != 1 {
				t.Errorf("after break %s on %s: error findings %v (exit %d), want exactly [%s] (exit 1)\n%+v", sc.id, sc.node, ids, code, sc.check, rep.Findings)
			}
			lab(t, "fix", sc.id, sc.node)
			fixed = true
			rep, code = doctor(t, sc.node)
			if ids := rep.errorIDs(); len(ids) != 0 || code != 0 {
				t.Errorf("after fix %s on %s: error findings %v (exit %d)", sc.id, sc.node, ids, code)
			}
		})
	}
}

// TestDoctorFixRestoresTraffic: for each scenario doctor can fix, real
// traffic fails before `doctor --fix` and succeeds after it.
func TestDoctorFixRestoresTraffic(t *testing.T) {
	cases := []struct {
		id, node    string
		from, to    string
		description string
	}{
		// F1: a pod calls a Service whose only endpoint is a pod on the same
		// node and bridge (lab/local-node1 -> node1-b).
		{"F1", "node1", "node1-a", "10.96.1.1:80", "same-node Service call"},
		// F2: node1 no longer routes: its pod cannot reach a pod on node2.
		{"F2", "node1", "node1-a", "node2-a:8080", "cross-node pod call"},
		// F3: Docker's FORWARD DROP on node2 drops new flows into its pods.
		{"F3", "node2", "node1-a", "node2-a:8080", "cross-node pod call"},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			c.to = resolve(t, c.to)
			if ok, out := call(t, c.from, c.to); !ok {
				t.Fatalf("%s from %s to %s fails on the healthy lab: %s", c.description, c.from, c.to, out)
			}
			lab(t, "break", c.id, c.node)
			defer lab(t, "fix", c.id, c.node)
			if ok, out := call(t, c.from, c.to); ok {
				t.Fatalf("after break %s: %s still works: %s", c.id, c.description, out)
			}
			rep, code := doctor(t, c.node, "--fix")
			if code != 0 || len(rep.Applied) == 0 {
				t.Fatalf("doctor --fix on %s: exit %d, applied %d fixes, remaining %v", c.node, code, len(rep.Applied), rep.errorIDs())
			}
			if ok, out := call(t, c.from, c.to); !ok {
				t.Fatalf("after doctor --fix: %s from %s to %s still fails: %s", c.description, c.from, c.to, out)
			}
		})
	}
}

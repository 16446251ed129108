package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// ipv6Twins are the scenarios that break their IPv6 twin on a lab with
// IPv6, with the doctor errors the twin gives on an IPv6-only node.
var ipv6Twins = []struct {
	id        string
	want      []string
	vxlanOnly bool
}{
	{id: "F2", want: []string{"TW004"}},
	{id: "F3", want: []string{"TW010"}},
	{id: "F6-route", want: []string{"TW040"}},
	{id: "F6-neigh", want: []string{"TW041"}, vxlanOnly: true},
	{id: "F6-fdb", want: []string{"TW042"}, vxlanOnly: true},
}

// ipv6ScenariosNamed breaks each IPv6 twin on node1 of an IPv6-only lab
// (the peer scenarios against node2): IPv6 pod traffic from node1 to node2
// stops, doctor on node1 names the twin, and after `lab fix` the traffic
// flows again; at the end doctor is clean on every node.
func ipv6ScenariosNamed(t *testing.T, name string, st labStatus, backend string) {
	t.Helper()
	from, to := st.Nodes[0].Pods[0], st.Nodes[1].Pods[0]
	call := func() result {
		return tw(t, "lab", "call", from.Name, to.Name, "--family", "ipv6", "--timeout", "2s", "--name", name)
	}
	for _, s := range ipv6Twins {
		if s.vxlanOnly && backend != "vxlan" {
			continue
		}
		t.Run(s.id, func(t *testing.T) {
			if r := tw(t, "lab", "break", s.id, "node1", "--name", name); r.code != 0 {
				t.Fatalf("lab break %s node1: exit %d\n%s", s.id, r.code, r.out)
			}
			fixed := false
			defer func() {
				if !fixed {
					tw(t, "lab", "fix", s.id, "node1", "--name", name)
				}
			}()
			if r := call(); r.code == 0 {
				t.Errorf("%s broken on node1: %s -> %s over IPv6 still works:\n%s", s.id, from.Name, to.Name, r.out)
			}
			rep, code := doctorOn(t, name, "node1")
			if ids := rep.errorIDs(); code != 1 || !slices.Equal(ids, s.want) {
				t.Errorf("doctor on node1 with %s broken (IPv6 only): exit %d, errors %v, want %v", s.id, code, ids, s.want)
			}
			r := tw(t, "lab", "fix", s.id, "node1", "--name", name)
			fixed = r.code == 0
			if !fixed {
				t.Fatalf("lab fix %s node1: exit %d\n%s", s.id, r.code, r.out)
			}
			within(t, 10*time.Second, fmt.Sprintf("%s -> %s over IPv6 after lab fix %s", from.Name, to.Name, s.id), func() error {
				if r := call(); r.code != 0 {
					return fmt.Errorf("%s", strings.TrimSpace(r.out))
				}
				return nil
			})
		})
	}
	doctorCleanOnIPv6(t, name, st, "ipv6")
}

package realnodes

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// nodeDeletedPeersForget deletes node2's Node object from the API, as an
// operator removing a node does (kubectl delete node), and waits (bounded)
// until node1's twill has dropped what reached node2's pods: the route to
// node2's pod subnet and, with vxlan, the FDB entry toward node2's address.
func nodeDeletedPeersForget(t *testing.T, labName string, st labState) error {
	t.Helper()
	n1, n2 := st.Nodes[0], st.Nodes[1]
	if n2.Subnet == "" {
		return fmt.Errorf("lab state names no pod subnet for %s", n2.Name)
	}
	in1 := func(argv ...string) (string, error) {
		r := tw(t, 30*time.Second, append([]string{"lab", "exec", "--name", labName, n1.Name, "--"}, argv...)...)
		if r.code != 0 {
			return "", fmt.Errorf("%s on %s: exit %d: %s", strings.Join(argv, " "), n1.Name, r.code, r.out)
		}
		return r.out, nil
	}
	if out, err := in1("ip", "route", "show", n2.Subnet); err != nil || strings.TrimSpace(out) == "" {
		return fmt.Errorf("before the delete, %s has no route to %s's pods %s (%v): the check would prove nothing", n1.Name, n2.Name, n2.Subnet, err)
	}
	if r := kubectl(t, labName, "delete", "node", n2.Name, "--wait=true", "--timeout=1m"); r.code != 0 {
		return fmt.Errorf("kubectl delete node %s: exit %d: %s", n2.Name, r.code, r.out)
	}
	deadline := time.Now().Add(time.Minute)
	var left string
	for time.Now().Before(deadline) {
		route, err := in1("ip", "route", "show", n2.Subnet)
		if err != nil {
			return err
		}
		fdb, err := in1("bridge", "fdb", "show")
		if err != nil {
			return err
		}
		left = ""
		if strings.TrimSpace(route) != "" {
			left += "route " + strings.TrimSpace(route) + "; "
		}
		for _, l := range strings.Split(fdb, "\n") {
			if strings.Contains(l, "dst "+n2.IP+" ") {
				left += "fdb " + strings.TrimSpace(l) + "; "
			}
		}
		if left == "" {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("a minute after Node %s was deleted, %s still has: %s", n2.Name, n1.Name, left)
}

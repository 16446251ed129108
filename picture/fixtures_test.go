package picture

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/trace"
)

// The traces drawn in the tests come from trace's own recorded snapshots of
// a 2-node vxlan lab (trace/testdata/README.md), with the lab's pods named.
const traceData = "../trace/testdata/"

// traceCase is one recorded trace the pictures are tested (and shown) with.
type traceCase struct {
	name, about string
	snaps       []string
	from, to    string
}

var traceCases = []traceCase{
	{"f1-same-node-service", "F1: same-node ClusterIP call; the reply is bridged past conntrack",
		[]string{"f1-node1", "healthy-node2"}, "node1-a", "10.96.1.1:80"},
	{"vxlan-statistic-split", "cross-node vxlan; kube-proxy's statistic rules split the Service four ways",
		[]string{"healthy-node1", "healthy-node2"}, "node2-a", "10.96.0.10:80"},
	{"forward-drop", "F3: node2's FORWARD policy DROP drops the cross-node call",
		[]string{"healthy-node1", "f3-node2"}, "node1-a", "10.244.2.10:8080"},
}

// labPods are the pods of the recorded lab: node1-a, node1-b, node2-a, node2-b.
func labPods(nodes map[string]bool) []trace.Pod {
	var out []trace.Pod
	for n := byte(1); n <= 2; n++ {
		node := fmt.Sprintf("node%d", n)
		if !nodes[node] {
			continue
		}
		for k, c := range []string{"a", "b"} {
			out = append(out, trace.Pod{
				Name: node + "-" + c, Node: node, IP: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, n, byte(10 + k)}), 24),
				Gateway: netip.AddrFrom4([4]byte{10, 244, n, 1}), HostVeth: fmt.Sprintf("veth%d%s", n, c), Bridge: "cni0",
			})
		}
	}
	return out
}

func (c traceCase) result(t testing.TB) *trace.Result {
	t.Helper()
	var snaps []*nodestate.Snapshot
	nodes := map[string]bool{}
	for _, f := range c.snaps {
		s, err := nodestate.LoadFile(traceData + f + ".json")
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
		nodes[s.Node] = true
	}
	w, err := trace.NewWorld(snaps, labPods(nodes))
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(c.to)
	r, err := w.Trace(trace.Request{From: c.from, To: ap.Addr(), Port: ap.Port()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func caseNamed(t testing.TB, name string) traceCase {
	for _, c := range traceCases {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no trace case %q", name)
	return traceCase{}
}

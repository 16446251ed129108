package firewall

import (
	"context"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/nodestate"
)

// A native nftables table of another tool with a forward base chain whose
// policy is drop: the accept must go into that chain (an accept in table
// inet twill does not override it).
func TestNativeNftForwardDrop(t *testing.T) {
	c := overlay(t, "fwx")
	for _, n := range c.Nodes {
		testbed.In(t, n.NS, "nft", "add table inet hostfw")
		testbed.In(t, n.NS, "nft", "add chain inet hostfw hostforward { type filter hook forward priority 0 ; policy drop ; }")
	}
	var backends []Backend
	for i, n := range c.Nodes {
		b, _ := New(BackendNft, n.NS)
		ensure(t, b, specFor(c, i)) // twill's own table alone does not help
		backends = append(backends, b)
	}
	if _, err := testbed.Call(c.Nodes[0].Pod, c.Nodes[1].PodIP, port); err == nil {
		t.Fatal("pod traffic flows through a native nft forward drop: the test proves nothing")
	}
	for i, n := range c.Nodes {
		snap, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: n.NS, Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		pl, err := Placements(snap, testbed.Network, n.Subnet)
		want := Placement{Backend: BackendNft, Family: "inet", Table: "hostfw", Chain: "hostforward"}
		if err != nil || len(pl) != 1 || pl[0] != want {
			t.Fatalf("%s: placements %v, %v; want [%v]", n.Name, pl, err, want)
		}
		s := specFor(c, i)
		s.ForwardAccept = pl
		if k := kinds(ensure(t, backends[i], s)); k[KindForwardAccept] != 2 {
			t.Errorf("%s: repairs %v, want 2 forward-accept", n.Name, k)
		}
		if rs := ensure(t, backends[i], s); len(rs) != 0 {
			t.Errorf("%s: second Ensure repaired %v", n.Name, rs)
		}
	}
	seen(t, c.Nodes[0].Pod, c.Nodes[1].PodIP)
	for i, b := range backends {
		if err := b.Remove(context.Background()); err != nil {
			t.Fatal(err)
		}
		out := testbed.In(t, c.Nodes[i].NS, "nft", "list", "ruleset")
		if strings.Contains(out, "twill") || !strings.Contains(out, "policy drop") {
			t.Errorf("after Remove want the host's chain intact and nothing of twill:\n%s", out)
		}
	}
}

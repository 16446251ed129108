package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/subnetfile"
)

// Real agents on a dual-stack testbed (IPv4 and IPv6 underlay) with a
// dual-stack net-conf: they set IPv6 forwarding, lease both families, build
// both overlays (twill.1, twill-v6.1) and both families' firewall rules, and
// write the IPv6 lines of the subnet file; pods talk over both families
// with their own addresses, leave masqueraded over IPv6 too, and IPv6
// drift is repaired.
func TestAgentsDualStack(t *testing.T) {
	c := testbed.New(t, "agent6", 2)
	c.AddIPv6(t)
	endpoint, _ := etcdtest.Start(t)
	cfg, err := netconf.Parse("test", []byte(fmt.Sprintf(`{"Network": %q, "EnableIPv6": true, "IPv6Network": %q, "Backend": {"Type": "vxlan"}}`, testbed.Network, testbed.Network6)))
	if err != nil {
		t.Fatal(err)
	}
	var agents []*running
	for _, nd := range c.Nodes {
		testbed.In(t, nd.NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0") // the agent must set it
		root := t.TempDir()
		info := subnetfile.Info{Network: testbed.Network, Subnet: subnetfile.Gateway(nd.Subnet), IPv6Network: testbed.Network6, IPv6Subnet: subnetfile.Gateway(nd.Subnet6), MTU: 1430, IPMasq: true}
		if err := subnetfile.Write(filepath.Join(root, subnetfile.TwillPath), info); err != nil {
			t.Fatal(err)
		}
		testbed.Serve(t, nd.Pod, 8080)
		agents = append(agents, startAgent(t, endpoint, nd, root, &cfg))
	}
	testbed.Serve(t, c.Outside, 8080)
	for i, a := range agents {
		eventually(t, 20*time.Second, c.Nodes[i].Name+" ready", func() error {
			if code, body := a.get(t, "/readyz"); code != 200 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	reachAll := func() error {
		for _, from := range c.Nodes {
			for _, to := range c.Nodes {
				for _, dst := range []struct{ to, src netip.Addr }{{to.PodIP, from.PodIP}, {to.PodIP6, from.PodIP6}} {
					got, err := testbed.Call(from.Pod, dst.to, 8080)
					if err != nil {
						return err
					}
					if got != dst.src.String() {
						return fmt.Errorf("%s seen by %s as %s", dst.src, dst.to, got)
					}
				}
			}
		}
		return nil
	}
	eventually(t, 15*time.Second, "all pods reach each other over IPv4 and IPv6", reachAll)

	n1 := c.Nodes[0]
	if got := strings.TrimSpace(testbed.In(t, n1.NS, "sysctl", "-n", "net.ipv6.conf.all.forwarding")); got != "1" {
		t.Errorf("IPv6 forwarding %s: the agent must set it", got)
	}
	if got, err := testbed.Call(n1.Pod, netip.MustParseAddr("fd00:77::200"), 8080); err != nil || got != n1.IPv6.String() {
		t.Errorf("outside saw the pod over IPv6 as %q (%v), want the node's IPv6 address %s (masquerade)", got, err, n1.IPv6)
	}
	b, err := os.ReadFile(filepath.Join(agents[0].root, subnetfile.TwillPath))
	if err != nil || !strings.Contains(string(b), "TWILL_IPV6_SUBNET="+subnetfile.Gateway(n1.Subnet6).String()) || !strings.Contains(string(b), "TWILL_MTU=1430") {
		t.Errorf("subnet file:\n%s (%v): want the IPv6 lines and MTU 1500-70", b, err)
	}
	if l, ok := agents[0].store.Lease(); !ok || l.IPv6Subnet != n1.Subnet6 || l.Subnet != n1.Subnet || l.Attrs.PublicIPv6 != n1.IPv6 {
		t.Errorf("node1's lease %+v: want its subnets of both families back (from the subnet file) and its IPv6 address", l)
	}

	// IPv6 drift: the route to node2's IPv6 pods is deleted; the agent puts it back.
	testbed.In(t, n1.NS, "ip", "-6", "route", "del", c.Nodes[1].Subnet6.String())
	eventually(t, 10*time.Second, "the IPv6 route is repaired", reachAll)
	// Traffic flows as soon as the route is back; the reconcile counts the
	// repair a moment later (after the firewall and the subnet file).
	eventually(t, 5*time.Second, "the repair is counted", func() error {
		if n := agents[0].repairs(t, "route"); n < 1 {
			return fmt.Errorf("twill_repairs_total{kind=route} = %d", n)
		}
		return nil
	})

	// Uninstall: both devices and both families' routes and rules go.
	agents[0].stop()
	done, err := Uninstall(context.Background(), UninstallOptions{Netns: n1.NS, Root: agents[0].root, Iface: "eth0"})
	if err != nil {
		t.Fatalf("uninstall: %v (did: %v)", err, done)
	}
	if out := testbed.In(t, n1.NS, "ip", "-o", "link"); strings.Contains(out, ": twill") {
		t.Errorf("uninstall left a twill link:\n%s", out)
	}
	if out := testbed.In(t, n1.NS, "ip", "-6", "route"); strings.Contains(out, "fd00:10:244:2::") {
		t.Errorf("uninstall left IPv6 routes:\n%s", out)
	}
	if out := testbed.In(t, n1.NS, "nft", "list", "ruleset"); strings.Contains(out, "twill") {
		t.Errorf("uninstall left nft rules:\n%s", out)
	}
}

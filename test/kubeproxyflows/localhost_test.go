package kubeproxyflows

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/trace"
)

// TestIPv6LocalhostNodePortAgrees: why kube-proxy offers localhost
// NodePorts on IPv4 only ("localhost to nodePort is ignored" for IPv6 in
// TestNodePorts). With net.ipv4.conf.all.route_localnet=1, as kube-proxy
// sets it, a call to 127.0.0.1:NODEPORT DNATed to a pod and masqueraded
// reaches the pod; the same rules for [::1] do not, because IPv6 never lets
// ::1 leave the loopback device. The kernel (a real call from the node
// namespace built here) and the trace of the captured namespace must say
// the same for both families.
func TestIPv6LocalhostNodePortAgrees(t *testing.T) {
	testbed.RequireRoot(t)
	node, pod := testbed.Netns(t, "kpfl-n"), testbed.Netns(t, "kpfl-p")
	for _, argv := range [][]string{
		{"ip", "link", "add", "cni0", "type", "bridge"},
		{"ip", "addr", "add", "10.244.1.1/24", "dev", "cni0"},
		{"ip", "addr", "add", "fd00:10:244:1::1/64", "dev", "cni0", "nodad"},
		{"ip", "link", "set", "cni0", "up"},
		{"ip", "link", "add", "veth1", "type", "veth", "peer", "name", "eth0", "netns", pod},
		{"ip", "link", "set", "veth1", "master", "cni0", "up"},
		{"sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"},
		{"iptables-nft", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1/32", "-p", "tcp", "--dport", "30080", "-j", "DNAT", "--to-destination", "10.244.1.2:8080"},
		{"iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "127.0.0.0/8", "-j", "MASQUERADE"},
		{"ip6tables-nft", "-t", "nat", "-A", "OUTPUT", "-d", "::1/128", "-p", "tcp", "--dport", "30080", "-j", "DNAT", "--to-destination", "[fd00:10:244:1::2]:8080"},
		{"ip6tables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "::1/128", "-j", "MASQUERADE"},
	} {
		testbed.In(t, node, argv...)
	}
	for _, argv := range [][]string{
		{"ip", "addr", "add", "10.244.1.2/24", "dev", "eth0"},
		{"ip", "addr", "add", "fd00:10:244:1::2/64", "dev", "eth0", "nodad"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "default", "via", "10.244.1.1"},
		{"ip", "-6", "route", "add", "default", "via", "fd00:10:244:1::1"},
	} {
		testbed.In(t, pod, argv...)
	}
	testbed.Serve(t, pod, 8080)
	pods := []trace.Pod{{Name: "pod", Node: "node1", HostVeth: "veth1", Bridge: "cni0", Ports: []uint16{8080},
		IP: netip.MustParsePrefix("10.244.1.2/24"), Gateway: netip.MustParseAddr("10.244.1.1"),
		IPv6: netip.MustParsePrefix("fd00:10:244:1::2/64"), Gateway6: netip.MustParseAddr("fd00:10:244:1::1")}}
	snap, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: node, Node: "node1", Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := trace.NewWorld([]*nodestate.Snapshot{snap}, pods)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		to, bridge string
		works      bool
	}{{"127.0.0.1", "10.244.1.1", true}, {"::1", "fd00:10:244:1::1", false}} {
		to := netip.MustParseAddr(c.to)
		// The pod answers the node directly: a failure below is the loopback address.
		if line, err := testbed.Call(node, pods[0].IP.Addr(), 8080); err != nil || line != "10.244.1.1" {
			t.Fatalf("setup: node -> pod over IPv4: %q %v", line, err)
		}
		if line, err := testbed.Call(node, pods[0].IPv6.Addr(), 8080); err != nil || line != "fd00:10:244:1::1" {
			t.Fatalf("setup: node -> pod over IPv6: %q %v", line, err)
		}
		line, kerr := testbed.Call(node, to, 30080)
		res, err := w.Trace(trace.Request{From: "node1", To: to, Port: 30080})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		res.WriteText(&b)
		sums := res.Summaries()
		if len(sums) != 1 {
			t.Fatalf("%s: want one outcome:\n%s", c.to, b.String())
		}
		s := sums[0]
		if c.works {
			if kerr != nil || line != c.bridge {
				t.Errorf("kernel: %s:30080: %q %v; want the pod to see %s", c.to, line, kerr, c.bridge)
			}
			if s.Kind != trace.Established || s.SeenSrc.Addr().String() != c.bridge {
				t.Errorf("trace of %s:30080 (kernel: %q %v): %+v\n%s", c.to, line, kerr, s, b.String())
			}
			continue
		}
		if kerr == nil {
			t.Errorf("kernel: [%s]:30080 answered %q; IPv6 should drop ::1 leaving lo", c.to, line)
		}
		if s.Kind != trace.Dropped || s.Cause != trace.CauseLoopbackV6 {
			t.Errorf("trace of [%s]:30080 (kernel: %v): %+v\n%s", c.to, kerr, s, b.String())
		}
	}
}

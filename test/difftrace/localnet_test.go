package difftrace

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/trace"
)

// TestRouteLocalnetAgrees calls a localhost NodePort (127.0.0.1:30080,
// DNATed to a pod and masqueraded, as kube-proxy does) from a node namespace
// built here, with net.ipv4.conf.all.route_localnet 0 and 1, and checks
// that the kernel and the simulation (of the same namespace, captured) agree:
// with 0 the call fails and the trace says dropped because of
// route_localnet; with 1 the pod answers and sees the bridge address.
// The same rules for [::1] (ip6tables, the node and pod dual-stack) fail
// whatever route_localnet says, because IPv6 never lets ::1 leave the
// loopback device (why kube-proxy offers localhost NodePorts on IPv4 only):
// the kernel drops the call and the trace says dropped, cause ipv6-loopback.
func TestRouteLocalnetAgrees(t *testing.T) {
	testbed.RequireRoot(t)
	node, pod := testbed.Netns(t, "dtln-n"), testbed.Netns(t, "dtln-p")
	for _, argv := range [][]string{
		{"ip", "link", "add", "cni0", "type", "bridge"},
		{"ip", "addr", "add", "10.244.1.1/24", "dev", "cni0"},
		{"ip", "addr", "add", "fd00:10:244:1::1/64", "dev", "cni0", "nodad"},
		{"ip", "link", "set", "cni0", "up"},
		{"ip", "link", "add", "veth1", "type", "veth", "peer", "name", "eth0", "netns", pod},
		{"ip", "link", "set", "veth1", "master", "cni0", "up"},
		{"iptables-nft", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1/32", "-p", "tcp", "--dport", "30080", "-j", "DNAT", "--to-destination", "10.244.1.2:8080"},
		{"iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "127.0.0.0/8", "-j", "MASQUERADE"},
		{"ip6tables-nft", "-t", "nat", "-A", "OUTPUT", "-d", "::1/128", "-p", "tcp", "--dport", "30080", "-j", "DNAT", "--to-destination", "[fd00:10:244:1::2]:8080"},
		{"ip6tables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "::1/128", "-j", "MASQUERADE"},
	} {
		testbed.In(t, node, argv...)
	}
	testbed.In(t, pod, "ip", "addr", "add", "10.244.1.2/24", "dev", "eth0")
	testbed.In(t, pod, "ip", "addr", "add", "fd00:10:244:1::2/64", "dev", "eth0", "nodad")
	testbed.In(t, pod, "ip", "link", "set", "eth0", "up")
	testbed.In(t, pod, "ip", "route", "add", "default", "via", "10.244.1.1")
	testbed.In(t, pod, "ip", "-6", "route", "add", "default", "via", "fd00:10:244:1::1")
	testbed.Serve(t, pod, 8080)
	pods := []trace.Pod{{Name: "pod", Node: "node1", IP: netip.MustParsePrefix("10.244.1.2/24"), Gateway: netip.MustParseAddr("10.244.1.1"),
		IPv6: netip.MustParsePrefix("fd00:10:244:1::2/64"), Gateway6: netip.MustParseAddr("fd00:10:244:1::1"),
		HostVeth: "veth1", Bridge: "cni0", Ports: []uint16{8080}}}
	// The pod answers the node directly over IPv6: a failure of [::1]
	// below is the loopback address, not the setup.
	if line, err := testbed.Call(node, pods[0].IPv6.Addr(), 8080); err != nil || line != "fd00:10:244:1::1" {
		t.Fatalf("setup: node -> pod over IPv6: %q %v", line, err)
	}
	for _, v := range []string{"0", "1"} {
		testbed.In(t, node, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet="+v)
		_, _ = testbed.Try(node, "conntrack", "-F")
		line, kerr := testbed.Call(node, netip.MustParseAddr("127.0.0.1"), 30080)
		snap, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: node, Node: "node1", Root: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		w, err := trace.NewWorld([]*nodestate.Snapshot{snap}, pods)
		if err != nil {
			t.Fatal(err)
		}
		res, err := w.Trace(trace.Request{From: "node1", To: netip.MustParseAddr("127.0.0.1"), Port: 30080})
		if err != nil {
			t.Fatal(err)
		}
		sums := res.Summaries()
		var b strings.Builder
		res.WriteText(&b)
		if len(sums) != 1 {
			t.Fatalf("route_localnet=%s: want one outcome:\n%s", v, b.String())
		}
		s := sums[0]
		// [::1] is dropped whatever route_localnet says.
		line6, kerr6 := testbed.Call(node, netip.MustParseAddr("::1"), 30080)
		if kerr6 == nil {
			t.Errorf("route_localnet=%s: kernel: [::1]:30080 answered %q; IPv6 should drop ::1 leaving lo", v, line6)
		}
		res6, err := w.Trace(trace.Request{From: "node1", To: netip.MustParseAddr("::1"), Port: 30080})
		if err != nil {
			t.Fatal(err)
		}
		var b6 strings.Builder
		res6.WriteText(&b6)
		if sums6 := res6.Summaries(); len(sums6) != 1 || sums6[0].Kind != trace.Dropped || sums6[0].Cause != trace.CauseLoopbackV6 {
			t.Errorf("route_localnet=%s: trace of [::1]:30080 (kernel: %v): %+v\n%s", v, kerr6, sums6, b6.String())
		}
		switch v {
		case "0":
			if kerr == nil {
				t.Errorf("route_localnet=0: the kernel answered %q; it should drop the loopback source routed out of cni0", line)
			}
			if s.Kind != trace.Dropped || s.Cause != trace.CauseRouteLocalnet || !strings.Contains(s.Where, "route_localnet=0") {
				t.Errorf("route_localnet=0: kernel failed (%v), simulation: %+v\n%s", kerr, s, b.String())
			}
		case "1":
			if kerr != nil || line != "10.244.1.1" {
				t.Errorf("route_localnet=1: kernel: %q %v; want the pod to see 10.244.1.1", line, kerr)
			}
			if s.Kind != trace.Established || s.SeenSrc.Addr().String() != "10.244.1.1" {
				t.Errorf("route_localnet=1: kernel %q, simulation: %+v\n%s", line, s, b.String())
			}
		}
	}
}

package doctor

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/twillnet/twill/kubeproxy"
)

// services returns n ClusterIP Services with two endpoints each, plus
// default/kubernetes, shaped like a large cluster.
func services(n int) []kubeproxy.Service {
	out := []kubeproxy.Service{{
		Namespace: "default", Name: "kubernetes", PortName: "https", Protocol: "tcp", Port: 443,
		ClusterIP: netip.MustParseAddr("10.96.0.1"),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.168.77.11:6443")},
	}}
	for i := range n {
		vip := netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})
		ep := func(k int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(1 + (i+k)%200), byte(10 + (i+k)%200)}), 8080)
		}
		out = append(out, kubeproxy.Service{
			Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("svc%d", i), PortName: "http", Protocol: "tcp", Port: 80,
			ClusterIP: vip, Endpoints: []netip.AddrPort{ep(0), ep(1)},
		})
	}
	return out
}

func benchmarkRun(b *testing.B, n int) {
	t := &testing.T{}
	s := healthyNode(t)
	if n > 0 {
		s.Iptables.NFT.Save = kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}, services(n))
	}
	r := Run(s, Config{})
	if r.Errors() != 0 || len(r.NotChecked) != 0 {
		b.Fatalf("benchmark input is not a healthy node: %v %+v", r.IDs(), r.NotChecked)
	}
	b.ReportAllocs()
	for b.Loop() {
		Run(s, Config{})
	}
}

// BenchmarkRunHealthyNode is the baseline: the small recorded lab node.
func BenchmarkRunHealthyNode(b *testing.B) { benchmarkRun(b, 0) }

// BenchmarkRun10kServices runs every check, parse included, on a node whose
// iptables hold kube-proxy's rules for 10,000 Services (about 60,000 rules).
func BenchmarkRun10kServices(b *testing.B) { benchmarkRun(b, 10000) }

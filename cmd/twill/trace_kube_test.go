package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/kubeview"
)

func TestResolveTraceRefs(t *testing.T) {
	a := netip.MustParseAddr
	v := &kubeview.View{
		Services: []kubeview.Service{
			{Namespace: "lab", Name: "web", ClusterIP: a("10.96.0.10"), Ports: []kubeview.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}},
			{Namespace: "kube-system", Name: "kube-dns", ClusterIP: a("10.96.0.53"), Ports: []kubeview.ServicePort{{Name: "dns", Protocol: "UDP", Port: 53}, {Name: "dns-tcp", Protocol: "TCP", Port: 53}}},
		},
		Pods: []kubeview.Pod{
			{Namespace: "lab", Name: "node1-a", Node: "node1", IP: a("10.244.1.10")},
			{Namespace: "lab", Name: "node2-a", Node: "node2", IP: a("10.244.2.10")},
		},
	}
	for _, c := range []struct {
		from, to, proto string
		protoSet        bool
		want            traceRefs
	}{
		{"lab/node1-a", "lab/web", "tcp", false, traceRefs{from: "10.244.1.10", to: "10.96.0.10:80", proto: "tcp"}},
		{"lab/node1-a", "lab/node2-a:8080", "tcp", false, traceRefs{from: "10.244.1.10", to: "10.244.2.10:8080", proto: "tcp"}},
		{"lab/node1-a", "kube-system/kube-dns:dns", "tcp", false, traceRefs{from: "10.244.1.10", to: "10.96.0.53:53", proto: "udp"}},
		{"lab/node1-a", "kube-system/kube-dns:dns", "tcp", true, traceRefs{from: "10.244.1.10", to: "10.96.0.53:53", proto: "tcp"}},
		{"node1-a", "10.96.0.10:80", "tcp", false, traceRefs{from: "node1-a", to: "10.96.0.10:80", proto: "tcp"}},
	} {
		got, err := resolveTraceRefs(v, c.from, c.to, c.proto, c.protoSet)
		if err != nil || got.from != c.want.from || got.to != c.want.to || got.proto != c.want.proto {
			t.Errorf("resolve(%s -> %s) = %+v, %v; want %+v", c.from, c.to, got, err, c.want)
		}
	}
	for _, c := range []struct{ from, to, err string }{
		{"lab/web", "lab/web", "no pod lab/web"},
		{"lab/node1-a", "lab/nope:80", "no Service or pod lab/nope"},
		{"lab/node1-a", "kube-system/kube-dns", "has 2 ports"},
	} {
		if _, err := resolveTraceRefs(v, c.from, c.to, "tcp", false); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("resolve(%s -> %s) error %v, want %q", c.from, c.to, err, c.err)
		}
	}
	if _, err := resolveTraceRefs(nil, "lab/node1-a", "10.96.0.10:80", "tcp", false); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("a name without --kubeconfig: %v", err)
	}
}

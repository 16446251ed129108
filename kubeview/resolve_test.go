package kubeview

import (
	"net/netip"
	"strings"
	"testing"
)

// lab is the lab's cluster as the API would show it.
func lab() *View {
	a := netip.MustParseAddr
	return &View{
		Services: []Service{
			{Namespace: "lab", Name: "web", ClusterIP: a("10.96.0.10"), Ports: []ServicePort{{Protocol: "TCP", Port: 80}}},
			{Namespace: "lab", Name: "dns", ClusterIP: a("10.96.0.53"), Ports: []ServicePort{{Name: "dns", Protocol: "UDP", Port: 53}, {Name: "metrics", Protocol: "TCP", Port: 9153}}},
			{Namespace: "lab", Name: "headless", Ports: []ServicePort{{Protocol: "TCP", Port: 80}}},
		},
		Pods: []Pod{
			{Namespace: "lab", Name: "node1-a", Node: "node1", IP: a("10.244.1.10")},
			{Namespace: "lab", Name: "pending"},
		},
	}
}

func TestResolveTarget(t *testing.T) {
	v := lab()
	for ref, want := range map[string]Target{
		"lab/web":          {Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: "tcp", Kind: "service", Key: "lab/web"},
		"lab/web:80":       {Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: "tcp", Kind: "service", Key: "lab/web"},
		"lab/dns:dns":      {Addr: netip.MustParseAddr("10.96.0.53"), Port: 53, Protocol: "udp", Kind: "service", Key: "lab/dns"},
		"lab/dns:9153":     {Addr: netip.MustParseAddr("10.96.0.53"), Port: 9153, Protocol: "tcp", Kind: "service", Key: "lab/dns"},
		"lab/node1-a:8080": {Addr: netip.MustParseAddr("10.244.1.10"), Port: 8080, Kind: "pod", Key: "lab/node1-a"},
		"lab/node1-a":      {Addr: netip.MustParseAddr("10.244.1.10"), Kind: "pod", Key: "lab/node1-a"},
	} {
		got, err := v.ResolveTarget(ref)
		if err != nil || got != want {
			t.Errorf("ResolveTarget(%q) = %+v, %v; want %+v", ref, got, err, want)
		}
	}
	for ref, wantErr := range map[string]string{
		"lab/dns":         "has 2 ports",
		"lab/web:443":     "no port 443",
		"lab/headless":    "no ClusterIP",
		"lab/nope:80":     "no Service or pod lab/nope",
		"lab/pending:80":  "has no IP yet",
		"lab/node1-a:x":   "must be a number",
		"web":             "want namespace/name",
		"lab/":            "want namespace/name",
		"lab/node1-a/x:1": "want namespace/name",
	} {
		if _, err := v.ResolveTarget(ref); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ResolveTarget(%q) error %v, want one containing %q", ref, err, wantErr)
		}
	}
}

func TestResolvePod(t *testing.T) {
	v := lab()
	got, err := v.ResolvePod("lab/node1-a")
	if err != nil || got.Addr != netip.MustParseAddr("10.244.1.10") {
		t.Fatalf("ResolvePod = %+v, %v", got, err)
	}
	if _, err := v.ResolvePod("lab/node1-a:80"); err == nil {
		t.Error("a sender with a port was accepted")
	}
	if _, err := v.ResolvePod("lab/web"); err == nil || !strings.Contains(err.Error(), "no pod lab/web") {
		t.Errorf("a Service as sender: %v", err)
	}
}

func TestIsRef(t *testing.T) {
	for s, want := range map[string]bool{"lab/web": true, "lab/web:80": true, "10.96.0.10:80": false, "10.244.0.0/16": false, "node1-a": false} {
		if IsRef(s) != want {
			t.Errorf("IsRef(%q) = %v", s, !want)
		}
	}
}

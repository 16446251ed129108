package kubeproxy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/twillnet/twill/netfilter"
)

// sampleServices is a small cluster: the API server, CoreDNS (udp and
// tcp, two endpoints), a web service with three endpoints and one with none.
func sampleServices() []Service {
	ap := netip.MustParseAddrPort
	return []Service{
		{Namespace: "default", Name: "kubernetes", PortName: "https", ClusterIP: netip.MustParseAddr("10.96.0.1"), Port: 443, Protocol: "TCP",
			Endpoints: []netip.AddrPort{ap("192.168.77.10:6443")}},
		{Namespace: "kube-system", Name: "kube-dns", PortName: "dns", ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, Protocol: "UDP",
			Endpoints: []netip.AddrPort{ap("10.244.1.3:53"), ap("10.244.0.2:53")}},
		{Namespace: "kube-system", Name: "kube-dns", PortName: "dns-tcp", ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, Protocol: "TCP",
			Endpoints: []netip.AddrPort{ap("10.244.0.2:53"), ap("10.244.1.3:53")}},
		{Namespace: "shop", Name: "web", ClusterIP: netip.MustParseAddr("10.96.12.34"), Port: 80, Protocol: "tcp",
			Endpoints: []netip.AddrPort{ap("10.244.1.5:8080"), ap("10.244.2.7:8080"), ap("10.244.0.9:8080")}},
		{Namespace: "shop", Name: "cart", PortName: "http", ClusterIP: netip.MustParseAddr("10.96.45.7"), Port: 8080, Protocol: "tcp"},
	}
}

var sampleConfig = Config{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}

func TestChainNamesMatchKubeProxy(t *testing.T) {
	// Chain names as they appear on every kubeadm cluster.
	for _, c := range []struct{ spn, proto, want string }{
		{"default/kubernetes:https", "tcp", "KUBE-SVC-NPX46M4PTMTKRN6Y"},
		{"kube-system/kube-dns:dns", "udp", "KUBE-SVC-TCOU7JCQXEZGVUNU"},
		{"kube-system/kube-dns:dns-tcp", "tcp", "KUBE-SVC-ERIFXISQEP7F7OF4"},
		{"kube-system/kube-dns:metrics", "tcp", "KUBE-SVC-JD5MR3NA4I4DYORP"},
	} {
		if got := ServiceChain(c.spn, c.proto); got != c.want {
			t.Errorf("ServiceChain(%q, %q) = %s, want %s", c.spn, c.proto, got, c.want)
		}
	}
	if got := EndpointChain("default/kubernetes:https", "tcp", "192.168.77.10:6443"); !strings.HasPrefix(got, "KUBE-SEP-") || len(got) != len("KUBE-SEP-")+16 {
		t.Errorf("EndpointChain = %q, want KUBE-SEP- and 16 characters", got)
	}
}

func TestProbabilityAsIptablesSavePrintsIt(t *testing.T) {
	for _, c := range []struct {
		i, n int
		want string
	}{
		{0, 2, "0.50000000000"},
		{0, 3, "0.33333333349"},
		{1, 3, "0.50000000000"},
		{0, 4, "0.25000000000"},
		{0, 7, "0.14285714272"},
	} {
		if got := Probability(c.i, c.n); got != c.want {
			t.Errorf("Probability(%d, %d) = %s, want %s", c.i, c.n, got, c.want)
		}
	}
}

func TestRenderShape(t *testing.T) {
	out := RenderIptables(sampleConfig, sampleServices())
	rs, err := netfilter.ParseIptablesSave("render", out)
	if err != nil {
		t.Fatalf("render output does not parse: %v\n%s", err, out)
	}
	for _, r := range allRules(rs) {
		if r.Unknown {
			t.Errorf("rule not fully understood by the parser: %s", r.Text)
		}
	}
	filter, nat := rs.Table("filter"), rs.Table("nat")
	if filter == nil || nat == nil || len(rs.Tables) != 2 {
		t.Fatalf("want exactly filter and nat tables, got %d tables", len(rs.Tables))
	}
	for _, c := range []string{"INPUT", "FORWARD", "OUTPUT"} {
		if ch := filter.Chain(c); ch == nil || ch.Policy != "ACCEPT" {
			t.Errorf("filter %s must be declared with policy ACCEPT", c)
		}
	}

	// The web service: three endpoints, probabilities 1/3, 1/2, then the rest.
	svc := nat.Chain(ServiceChain("shop/web", "tcp"))
	if svc == nil {
		t.Fatalf("no chain for shop/web in:\n%s", out)
	}
	if len(svc.Rules) != 4 || svc.Rules[0].Target != "KUBE-MARK-MASQ" || !svc.Rules[0].Source.Negated || svc.Rules[0].Source.Value != "10.244.0.0/16" {
		t.Fatalf("shop/web chain: want masquerade rule then 3 endpoint rules, got:\n%s", texts(svc))
	}
	wantProb := []string{"0.33333333349", "0.50000000000", ""}
	wantEP := []string{"10.244.0.9:8080", "10.244.1.5:8080", "10.244.2.7:8080"} // sorted
	for i, r := range svc.Rules[1:] {
		prob := ""
		if m := r.Match("statistic"); m != nil {
			prob = m.Option("--probability").Values[0]
		}
		if prob != wantProb[i] {
			t.Errorf("endpoint %d: probability %q, want %q", i, prob, wantProb[i])
		}
		sep := nat.Chain(r.Target)
		if sep == nil || len(sep.Rules) != 2 {
			t.Fatalf("endpoint %d: SEP chain %s missing or not 2 rules", i, r.Target)
		}
		if got := sep.Rules[1].TargetOptions; sep.Rules[1].Target != "DNAT" || len(got) != 1 || got[0].Values[0] != wantEP[i] {
			t.Errorf("endpoint %d: want DNAT to %s, got %s", i, wantEP[i], sep.Rules[1].Text)
		}
		if sep.Rules[0].Source.Value != strings.Split(wantEP[i], ":")[0]+"/32" || sep.Rules[0].Target != "KUBE-MARK-MASQ" {
			t.Errorf("endpoint %d: want hairpin masquerade first, got %s", i, sep.Rules[0].Text)
		}
	}

	// KUBE-SERVICES: one rule per service with endpoints, NODEPORTS last.
	svcs := nat.Chain("KUBE-SERVICES").Rules
	if len(svcs) != 5 || svcs[len(svcs)-1].Target != "KUBE-NODEPORTS" {
		t.Fatalf("nat KUBE-SERVICES: want 4 service rules and KUBE-NODEPORTS last, got:\n%s", texts(nat.Chain("KUBE-SERVICES")))
	}
	if got, want := svcs[0].Text, `-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y`; got != want {
		t.Errorf("first service rule:\n got %s\nwant %s", got, want)
	}
	// The service without endpoints is rejected in filter, absent from nat.
	rej := filter.Chain("KUBE-SERVICES").Rules
	if len(rej) != 1 || rej[0].Target != "REJECT" || !strings.Contains(rej[0].Text, `"shop/cart:http has no endpoints"`) {
		t.Errorf("filter KUBE-SERVICES: want one REJECT for shop/cart, got:\n%s", texts(filter.Chain("KUBE-SERVICES")))
	}
	if strings.Contains(out, ServiceChain("shop/cart:http", "tcp")) {
		t.Error("a service without endpoints must not get a KUBE-SVC chain")
	}
	fw := filter.Chain("KUBE-FIREWALL").Rules
	if len(fw) != 2 || fw[1].Match("mark").Option("--mark").Values[0] != "0x8000/0x8000" || fw[0].Destination.Value != "127.0.0.0/8" {
		t.Errorf("KUBE-FIREWALL: want localnet drop and mark-0x8000 drop, got:\n%s", texts(filter.Chain("KUBE-FIREWALL")))
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	svcs := sampleServices()
	want := RenderIptables(sampleConfig, svcs)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		rng.Shuffle(len(svcs), func(i, j int) { svcs[i], svcs[j] = svcs[j], svcs[i] })
		for i := range svcs {
			eps := svcs[i].Endpoints
			rng.Shuffle(len(eps), func(a, b int) { eps[a], eps[b] = eps[b], eps[a] })
		}
		if got := RenderIptables(sampleConfig, svcs); got != want {
			t.Fatal("same services in another order gave a different rendering")
		}
	}
}

func TestRenderIPv6(t *testing.T) {
	svcs := []Service{{Namespace: "a", Name: "b", ClusterIP: netip.MustParseAddr("fd00:96::10"), Port: 80, Protocol: "tcp",
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("[fd00:244::5]:8080")}}}
	svcs = append(svcs, sampleServices()...) // IPv4 ones must be left out
	out := RenderIptables(Config{ClusterCIDR: netip.MustParsePrefix("fd00:244::/56")}, svcs)
	if !strings.Contains(out, "-d fd00:96::10/128 -p tcp") || !strings.Contains(out, "--to-destination [fd00:244::5]:8080") {
		t.Errorf("IPv6 service not rendered as ip6tables expects:\n%s", out)
	}
	if strings.Contains(out, "10.96.") || strings.Contains(out, "127.0.0.0/8") {
		t.Errorf("IPv4 rules in an IPv6 rendering:\n%s", out)
	}
}

// TestRenderDualStack renders one dual-stack Service (ClusterIPs of both
// families, endpoints of both) for each family: each rendering holds that
// family's ClusterIP and endpoints only, with the other family's
// ClusterIP nowhere, and the chain names are the same in both (kube-proxy
// hashes the service port name, not the address).
func TestRenderDualStack(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:96::10")
	svc := Service{Namespace: "lab", Name: "web", PortName: "http", ClusterIP: v4, ClusterIPs: []netip.Addr{v4, v6}, Port: 80, Protocol: "tcp",
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("10.244.1.5:8080"), netip.MustParseAddrPort("[fd00:10:244:1::5]:8080")}}
	out4 := RenderIptables(Config{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}, []Service{svc})
	out6 := RenderIptables(Config{ClusterCIDR: netip.MustParsePrefix("fd00:10:244::/56")}, []Service{svc})
	chain := ServiceChain("lab/web:http", "tcp")
	for _, c := range []struct {
		out, want, dnat, other string
	}{
		{out4, "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp", "--to-destination 10.244.1.5:8080", "fd00:"},
		{out6, "-A KUBE-SERVICES -d fd00:96::10/128 -p tcp", "--to-destination [fd00:10:244:1::5]:8080", "10."},
	} {
		if !strings.Contains(c.out, c.want) || !strings.Contains(c.out, c.dnat) || !strings.Contains(c.out, "-j "+chain) {
			t.Errorf("want %q, %q and a jump to %s in:\n%s", c.want, c.dnat, chain, c.out)
		}
		if strings.Contains(c.out, c.other) {
			t.Errorf("the other family (%q) leaked into:\n%s", c.other, c.out)
		}
	}
	// A Service without an address of the family is left out.
	only4 := svc
	only4.ClusterIPs = nil
	if out := RenderIptables(Config{ClusterCIDR: netip.MustParsePrefix("fd00:10:244::/56")}, []Service{only4}); strings.Contains(out, chain) {
		t.Errorf("an IPv4-only Service rendered for IPv6:\n%s", out)
	}
}

// manyServices returns n services with two endpoints each, for scale tests.
func manyServices(n int) []Service {
	svcs := make([]Service, n)
	for i := range svcs {
		vip := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
		svcs[i] = Service{Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("svc%d", i), PortName: "http",
			ClusterIP: vip, Port: 80, Protocol: "tcp", Endpoints: []netip.AddrPort{
				netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), 8080),
				netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)}), 8080),
			}}
	}
	return svcs
}

func TestRenderTenThousandServices(t *testing.T) {
	out := RenderIptables(sampleConfig, manyServices(10000))
	if n := strings.Count(out, "\n-A KUBE-SEP-"); n != 40000 {
		t.Errorf("want 40000 KUBE-SEP rules (2 per endpoint), got %d", n)
	}
}

// BenchmarkRenderIptables10kServices renders kube-proxy's rules for 10,000
// Services with two endpoints each (speed is measured here, not asserted).
func BenchmarkRenderIptables10kServices(b *testing.B) {
	svcs := manyServices(10000)
	b.ReportAllocs()
	for b.Loop() {
		RenderIptables(sampleConfig, svcs)
	}
}

func allRules(rs *netfilter.Ruleset) []*netfilter.Rule {
	var out []*netfilter.Rule
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			out = append(out, c.Rules...)
		}
	}
	return out
}

func texts(c *netfilter.Chain) string {
	var b strings.Builder
	for _, r := range c.Rules {
		b.WriteString(r.Text + "\n")
	}
	return b.String()
}

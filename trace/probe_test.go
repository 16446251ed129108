package trace

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/nodestate"
)

// probeNode makes a namespace shaped like a pod node (bridge cni0 with
// 10.244.1.1/24 and two pod ports, a route to another node's pods),
// applies the rule commands with the real tools, and captures it.
func probeNode(t *testing.T, tag string, rules [][]string) *Host {
	t.Helper()
	ns := testbed.Netns(t, tag)
	for _, c := range [][]string{
		{"ip", "link", "add", "cni0", "type", "bridge"},
		{"ip", "addr", "add", "10.244.1.1/24", "dev", "cni0"},
		{"ip", "link", "add", "vetha", "type", "veth", "peer", "name", "vetha-pod"},
		{"ip", "link", "add", "vethb", "type", "veth", "peer", "name", "vethb-pod"},
		{"ip", "link", "set", "vetha", "master", "cni0"},
		{"ip", "link", "set", "vethb", "master", "cni0"},
		{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"},
		{"ip", "addr", "add", "192.168.77.11/24", "dev", "eth0"},
		{"ip", "link", "set", "cni0", "up"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "10.244.2.0/24", "via", "192.168.77.12", "dev", "eth0"},
		{"sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"},
	} {
		testbed.In(t, ns, c...)
	}
	for _, c := range rules {
		testbed.In(t, ns, c...)
	}
	s, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: ns, Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The probe API answers from rule sets the real tools wrote, for each
// backend: which base chain blocks which pod flow, by which rule, and via
// which jumps.
func TestProbeRealRuleSets(t *testing.T) {
	testbed.RequireRoot(t)
	cluster := netip.MustParsePrefix("10.244.0.0/16")
	for _, c := range []struct {
		name  string
		rules [][]string
		// chain is the base chain that must block every probe, where the
		// rule that decides (Where) and a jump it took (or "").
		chain, where, jump string
	}{
		{"iptables-legacy", [][]string{
			{"iptables-legacy", "-N", "DOCKER-USER"},
			{"iptables-legacy", "-A", "DOCKER-USER", "-j", "RETURN"},
			{"iptables-legacy", "-A", "FORWARD", "-j", "DOCKER-USER"},
			{"iptables-legacy", "-P", "FORWARD", "DROP"},
		}, "iptables-legacy filter/FORWARD", "filter/FORWARD policy DROP", "DOCKER-USER"},
		{"iptables-nft", [][]string{
			{"iptables-nft", "-N", "KUBE-FORWARD"},
			{"iptables-nft", "-A", "KUBE-FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
			{"iptables-nft", "-A", "KUBE-FORWARD", "-d", "10.244.0.0/16", "-j", "REJECT"},
			{"iptables-nft", "-A", "FORWARD", "-j", "KUBE-FORWARD"},
		}, "iptables-nft filter/FORWARD", "filter/KUBE-FORWARD rule 2: -A KUBE-FORWARD -d 10.244.0.0/16 -j REJECT --reject-with icmp-port-unreachable", "KUBE-FORWARD"},
		{"nft", [][]string{
			{"nft", "add table inet hostfw"},
			{"nft", "add chain inet hostfw forward { type filter hook forward priority 0; policy drop; }"},
			{"nft", "add rule inet hostfw forward ct state established,related accept"},
		}, "nft inet hostfw/forward", "inet hostfw chain forward policy drop", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := probeNode(t, "probe", c.rules)
			pp, err := h.PodProbes(PodNetwork{Cluster: cluster})
			if err != nil {
				t.Fatal(err)
			}
			if pp.Subnet != netip.MustParsePrefix("10.244.1.0/24") || pp.Bridge != "cni0" || len(pp.Probes) != 3 {
				t.Fatalf("pod probes %+v: want subnet 10.244.1.0/24 on cni0, 3 probes (in, out, bridged)", pp)
			}
			if want := "pod subnet 10.244.1.0/24 taken from cni0's address"; !slices.Contains(pp.Assumed, want) {
				t.Errorf("assumed %q, want %q", pp.Assumed, want)
			}
			for _, p := range pp.Probes {
				hp := h.ProbeHook("FORWARD", p)
				blocked := hp.Blocked()
				if len(blocked) != 1 || blocked[0].Name() != c.chain || blocked[0].Where() != c.where {
					t.Fatalf("%s: blocked %+v, want %s by %q", p, blocked, c.chain, c.where)
				}
				if c.jump != "" && !slices.ContainsFunc(blocked[0].Jumps, func(j Jump) bool { return j.From == "FORWARD" && j.To == c.jump }) {
					t.Errorf("%s: jumps %+v, want FORWARD -> %s", p, blocked[0].Jumps, c.jump)
				}
				if len(hp.Outcomes) != 1 || hp.Outcomes[0].By == nil || hp.Outcomes[0].By.Name() != c.chain || hp.Outcomes[0].Order != "" {
					t.Errorf("%s: outcomes %+v, want one, by %s, whatever the order", p, hp.Outcomes, c.chain)
				}
				// An established packet of the same flow passes (kube-proxy's
				// and nft's ct state rules; Docker's policy still drops).
				p.CtState = "ESTABLISHED"
				est := h.ProbeHook("FORWARD", p).Blocked()
				if (c.name == "iptables-legacy") != (len(est) == 1) {
					t.Errorf("%s: established packet blocked by %+v", p, est)
				}
			}
		})
	}
}

// The probe's outcomes come from the same walk a trace makes: tied
// chains that both stop the packet give one outcome per order, each with
// the order it assumes; one of two tied chains dropping gives that drop
// whatever the order; a random drop gives a drop and the later chain's
// verdict, each with its probability.
func TestProbeHookOutcomes(t *testing.T) {
	nftSave := func(rules ...string) string {
		return "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + strings.Join(rules, "\n") + "\nCOMMIT\n"
	}
	p := Probe{Src: netip.MustParseAddr("10.244.2.2"), Dst: netip.MustParseAddr("10.244.1.2"), Proto: "tcp", Sport: 40000, Dport: 8080, In: "eth0", Out: "cni0"}
	probe := func(legacy, nft string) HookProbe {
		t.Helper()
		s := &nodestate.Snapshot{Node: "n1"}
		s.Iptables.Legacy.Save, s.Iptables.NFT.Save = legacy, nft
		h, err := NewHost(s, "FORWARD")
		if err != nil {
			t.Fatal(err)
		}
		return h.ProbeHook("FORWARD", p)
	}
	hp := probe(legacyForward("-A FORWARD -j DROP"), nftSave("-A FORWARD -j REJECT --reject-with icmp-port-unreachable"))
	if len(hp.Outcomes) != 2 {
		t.Fatalf("tied chains that both stop: want 2 outcomes, got %+v", hp.Outcomes)
	}
	for _, o := range hp.Outcomes {
		if o.By == nil || o.Order == "" || !strings.HasPrefix(o.Order, o.By.Name()+" first") && !strings.Contains(o.Order, ": "+o.By.Name()+" first") {
			t.Errorf("outcome %+v should name its chain and the order where that chain runs first", o)
		}
	}
	hp = probe(legacyForward("-A FORWARD -j DROP"), nftSave())
	if len(hp.Outcomes) != 1 || hp.Outcomes[0].Verdict != "drop" || hp.Outcomes[0].Order != "" || hp.Outcomes[0].By == nil || hp.Outcomes[0].By.Backend != "iptables-legacy" {
		t.Fatalf("one of two tied chains drops: %+v", hp.Outcomes)
	}
	hp = probe("", nftSave("-A FORWARD -m statistic --mode random --probability 0.25 -j DROP", "-A FORWARD -j REJECT --reject-with icmp-port-unreachable"))
	if len(hp.Outcomes) != 2 || hp.Outcomes[0].Verdict != "drop" || hp.Outcomes[0].Prob != 0.25 || hp.Outcomes[1].Verdict != "reject" || hp.Outcomes[1].Prob != 0.75 {
		t.Fatalf("random drop: %+v", hp.Outcomes)
	}
}

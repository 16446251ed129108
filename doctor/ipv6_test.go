package doctor

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// The snapshots testdata/agent-{dual-vxlan,ipv6-vxlan,dual-host-gw}-node1.json
// were captured with `twill snapshot` (leases from the lab's etcd) on node1
// of 2-node labs (`twill lab up --ip-family dual|ipv6`, `--backend
// host-gw`) whose real agents programmed both families: node2's IPv6
// subnet fd00:10:244:2::/64 is reached through twill-v6.1 (vxlan, outer
// fd00:77::12) or via fd00:77::12 dev eth0 (host-gw).

// findingIDs returns "ID SEVERITY" of every finding.
func findingIDs(r Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.ID+" "+string(f.Severity))
	}
	return out
}

// TestIPv6LabsAreClean: what the agent programs on dual-stack and
// IPv6-only nodes is what doctor expects, every check runs, and no check
// finds anything (an IPv6-only lab has no Services: only TW031 warns).
func TestIPv6LabsAreClean(t *testing.T) {
	for variant, want := range map[string][]string{
		"dual-vxlan":   nil,
		"dual-host-gw": nil,
		"ipv6-vxlan":   {"TW031 WARNING"},
	} {
		t.Run(variant, func(t *testing.T) {
			r := Run(loadAgentState(t, variant), Config{})
			if got := findingIDs(r); !slices.Equal(got, want) || len(r.NotChecked) != 0 {
				logFindings(t, r)
				t.Fatalf("findings %v (not checked %+v), want %v", got, r.NotChecked, want)
			}
		})
	}
}

func v6Neighbour(s *nodestate.Snapshot, ip string) *nodestate.Neighbor {
	for i := range s.Neighbors {
		if s.Neighbors[i].IP == netip.MustParseAddr(ip) {
			return &s.Neighbors[i]
		}
	}
	return nil
}

func setLinkMTU(t *testing.T, s *nodestate.Snapshot, name string, mtu int) {
	t.Helper()
	for i := range s.Links {
		if s.Links[i].Name == name {
			s.Links[i].MTU = mtu
			return
		}
	}
	t.Fatalf("no link %s in the fixture", name)
}

// TestIPv6BreakageIsNamed: each broken IPv6 part of a node is reported by
// the check that owns it, and the finding names the IPv6 object.
func TestIPv6BreakageIsNamed(t *testing.T) {
	cases := []struct {
		name, variant string
		mutate        func(t *testing.T, s *nodestate.Snapshot)
		want          []string
		// mention must appear in the first finding's title or evidence.
		mention string
	}{
		{"IPv6 forwarding off", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Sysctls["net.ipv6.conf.all.forwarding"] = "0"
		}, []string{"TW004 ERROR"}, "/proc/sys/net/ipv6/conf/all/forwarding"},
		{"IPv6-only node: IPv6 forwarding off", "ipv6-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Sysctls["net.ipv6.conf.all.forwarding"] = "0"
		}, []string{"TW004 ERROR", "TW031 WARNING"}, "/proc/sys/net/ipv6/conf/all/forwarding"},
		{"bridge-nf-call-ip6tables off (F1's IPv6 twin)", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Sysctls["net.bridge.bridge-nf-call-ip6tables"] = "0"
		}, []string{"TW003 ERROR"}, "bridge-nf-call-ip6tables = 0"},
		{"IPv6 peer route missing", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Routes = slices.Delete(s.Routes, routeIndex(t, s, "fd00:10:244:2::/64"), routeIndex(t, s, "fd00:10:244:2::/64")+1)
		}, []string{"TW040 ERROR"}, "fd00:10:244:2::/64 (node node2 at fd00:77::12) is missing"},
		{"IPv6-only: peer route missing", "ipv6-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Routes = slices.Delete(s.Routes, routeIndex(t, s, "fd00:10:244:2::/64"), routeIndex(t, s, "fd00:10:244:2::/64")+1)
		}, []string{"TW031 WARNING", "TW040 ERROR"}, ""},
		{"host-gw IPv6 route via the wrong node", "dual-host-gw", func(t *testing.T, s *nodestate.Snapshot) {
			s.Routes[routeIndex(t, s, "fd00:10:244:2::/64")].Gateway = netip.MustParseAddr("fd00:77::99")
		}, []string{"TW040 ERROR"}, "want fd00:10:244:2::/64 via fd00:77::12 dev eth0"},
		{"IPv6 neighbour stale", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			v6Neighbour(s, "fd00:10:244:2::").MAC = "02:00:00:00:00:99"
		}, []string{"TW041 ERROR"}, "fd00:10:244:2:: on twill-v6.1"},
		{"IPv6 FDB entry missing", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.FDB = slices.DeleteFunc(s.FDB, func(f nodestate.FDBEntry) bool { return f.Dst == netip.MustParseAddr("fd00:77::12") })
		}, []string{"TW042 ERROR"}, "twill-v6.1 (want dst fd00:77::12)"},
		{"IPv6 vxlan device MTU too large for its IPv6 underlay", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			setLinkMTU(t, s, "twill-v6.1", 1450)
		}, []string{"TW044 ERROR"}, "twill-v6.1 MTU 1450 is larger than underlay eth0 MTU 1500 minus 70 bytes of encapsulation over IPv6"},
		{"pod MTU fits IPv4 vxlan but not IPv6", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			setLinkMTU(t, s, "cni0", 1450)
		}, []string{"TW043 ERROR"}, "cni0 (bridge) mtu 1450"},
		{"IPv6 Service chain reaches no DNAT", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Iptables.NFT.Save6 = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n" +
				"-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n" +
				"-A KUBE-SERVICES -d fd00:96::10/128 -p tcp -m tcp --dport 80 -j KUBE-SVC-X\nCOMMIT\n"
		}, []string{"TW030 ERROR"}, "ip6tables-nft nat/KUBE-SERVICES rule 1 sends fd00:96::10 to KUBE-SVC-X"},
		{"IPv6 Service rules not hooked", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Iptables.NFT.Save6 = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n:KUBE-SEP-X - [0:0]\n" +
				"-A OUTPUT -j KUBE-SERVICES\n" +
				"-A KUBE-SERVICES -d fd00:96::10/128 -p tcp -m tcp --dport 80 -j KUBE-SVC-X\n-A KUBE-SVC-X -j KUBE-SEP-X\n" +
				"-A KUBE-SEP-X -p tcp -m tcp -j DNAT --to-destination [fd00:10:244:2::5]:8080\nCOMMIT\n"
		}, []string{"TW030 ERROR"}, "ip6tables-nft nat/PREROUTING does not jump to KUBE-SERVICES"},
		{"ip6tables FORWARD policy DROP (F3's IPv6 twin)", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Iptables.NFT.Save6 = ip6ForwardDrop
		}, []string{"TW010 ERROR"}, "ip6tables-nft filter FORWARD drops IPv6 pod traffic (chain FORWARD policy DROP)"},
		{"IPv6-only: ip6tables FORWARD policy DROP", "ipv6-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Iptables.Legacy.Save6 = ip6ForwardDrop
		}, []string{"TW010 ERROR", "TW031 WARNING"}, "ip6tables-legacy filter FORWARD drops IPv6 pod traffic"},
		{"ip6tables rules split across backends (F4's IPv6 twin)", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Iptables.NFT.Save6 = ip6KubeFirewall("-m mark --mark 0x8000/0x8000 ")
			s.Iptables.Legacy.Save6 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -s fd00:10:244::/56 -j ACCEPT\nCOMMIT\n"
		}, []string{"TW020 ERROR"}, "ip6tables rules are split across the legacy and nf_tables backends"},
		{"ip6tables KUBE-FIREWALL lost its mark match (F4's IPv6 twin)", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Iptables.NFT.Save6 = ip6KubeFirewall("")
		}, []string{"TW021 ERROR"}, "ip6tables-nft filter/KUBE-FIREWALL rule 1 drops every packet: its match was lost"},
		{"IPv6-only: ip6tables KUBE-FORWARD lost its mark match", "ipv6-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			s.Iptables.NFT.Save6 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\n-A FORWARD -j KUBE-FORWARD\n" +
				"-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -j ACCEPT\nCOMMIT\n"
		}, []string{"TW021 ERROR", "TW031 WARNING"}, "ip6tables-nft filter/KUBE-FORWARD rule 1 accepts every packet"},
		{"nft ip6 table drops forwarded traffic", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			addNft(t, s, nftDropTable("ip6"))
		}, []string{"TW011 ERROR"}, "nftables chain ip6 other forward (hook forward) drops IPv6 pod traffic"},
		{"nft inet table drops both families", "dual-vxlan", func(t *testing.T, s *nodestate.Snapshot) {
			addNft(t, s, nftDropTable("inet"))
		}, []string{"TW011 ERROR", "TW011 ERROR"}, "nftables chain inet other forward (hook forward) drops pod traffic"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := loadAgentState(t, c.variant)
			c.mutate(t, s)
			r := Run(s, Config{})
			got := findingIDs(r)
			if !slices.Equal(got, c.want) {
				logFindings(t, r)
				t.Fatalf("findings %v, want %v", got, c.want)
			}
			for _, f := range r.Findings {
				if f.Title == "" || f.Explanation == "" || f.Fix == "" || len(f.Evidence) == 0 {
					t.Errorf("%s: incomplete finding: %+v", f.ID, f)
				}
			}
			if c.mention == "" {
				return
			}
			for _, f := range r.Findings {
				if f.ID == "TW031" {
					continue
				}
				if text := f.Title + "\n" + strings.Join(f.Evidence, "\n"); !strings.Contains(text, c.mention) {
					logFindings(t, r)
					t.Fatalf("%s does not say %q", f.ID, c.mention)
				}
				break
			}
		})
	}
}

// TestIPv6OnlyServiceProxyIsLookedForInIp6tables: on an IPv6-only node
// Service rules are looked for in ip6tables and kube-proxy's ip6 nft
// table, not in iptables.
func TestIPv6OnlyServiceProxyIsLookedForInIp6tables(t *testing.T) {
	s := loadAgentState(t, "ipv6-vxlan")
	r := Run(s, Config{})
	if got := findingIDs(r); !slices.Equal(got, []string{"TW031 WARNING"}) || !strings.Contains(r.Findings[0].Title, "ip6tables") {
		logFindings(t, r)
		t.Fatalf("findings %v", got)
	}
	s.Iptables.NFT.Save6 = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n" +
		"-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\nCOMMIT\n"
	if r := Run(s, Config{}); len(r.Findings) != 0 {
		logFindings(t, r)
		t.Fatalf("ip6tables KUBE-SERVICES present, still %v", findingIDs(r))
	}
}

// ip6KubeFirewall is kube-proxy's ip6tables KUBE-FIREWALL with match
// before its DROP ("" is the rule after an old iptables lost the match).
func ip6KubeFirewall(match string) string {
	return "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n-A INPUT -j KUBE-FIREWALL\n-A OUTPUT -j KUBE-FIREWALL\n" +
		"-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" " + match + "-j DROP\nCOMMIT\n"
}

// ip6ForwardDrop is Docker's FORWARD policy in ip6tables.
const ip6ForwardDrop = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"

// nftDropTable is a table "other" of family fam whose forward chain
// drops everything not established.
func nftDropTable(fam string) string {
	return `{"table":{"family":"` + fam + `","name":"other","handle":90}},` +
		`{"chain":{"family":"` + fam + `","table":"other","name":"forward","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},` +
		`{"rule":{"family":"` + fam + `","table":"other","chain":"forward","handle":2,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}}`
}

// addNft appends objects to the snapshot's `nft -j list ruleset`.
func addNft(t *testing.T, s *nodestate.Snapshot, objs string) {
	t.Helper()
	i := strings.LastIndex(s.Nftables.JSON, "]")
	if i < 0 {
		t.Fatal("fixture has no nft rule set")
	}
	s.Nftables.JSON = s.Nftables.JSON[:i] + "," + objs + s.Nftables.JSON[i:]
}

// TestIPv6ForwardDropFixNamesIp6tables: the fix of an IPv6 forward drop
// accepts the IPv6 pod network with ip6tables (or nft's ip6 matches), and
// its --fix action is an IPv6 placement for the IPv6 network.
func TestIPv6ForwardDropFixNamesIp6tables(t *testing.T) {
	s := loadAgentState(t, "dual-vxlan")
	s.Iptables.NFT.Save6 = ip6ForwardDrop
	addNft(t, s, nftDropTable("ip6"))
	r := Run(s, Config{})
	if len(r.Findings) != 2 {
		logFindings(t, r)
		t.Fatalf("findings %v", findingIDs(r))
	}
	for _, want := range []string{"ip6tables-nft -t filter -I FORWARD 1 -s fd00:10:244::/56", "nft insert rule ip6 other forward ip6 saddr fd00:10:244::/56 accept"} {
		if !slices.ContainsFunc(r.Findings, func(f Finding) bool {
			return strings.Contains(f.Fix, want) && len(f.Actions) == 1 && f.Actions[0].Placement != nil &&
				f.Actions[0].Placement.IPv6 && f.Actions[0].Network.String() == "fd00:10:244::/56"
		}) {
			logFindings(t, r)
			t.Fatalf("no finding's fix says %q with an IPv6 forward-accept action for fd00:10:244::/56", want)
		}
	}
}

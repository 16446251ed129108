package firewall

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

var testSpec = Spec{
	Network:   netip.MustParsePrefix("10.244.0.0/16"),
	Subnet:    netip.MustParsePrefix("10.244.1.0/24"),
	IPMasq:    true,
	VXLANPort: 8472,
	Peers:     []netip.Addr{netip.MustParseAddr("192.168.77.12")},
}

func loadSnap(t *testing.T, path string) *nodestate.Snapshot {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := nodestate.Load(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNftRules(t *testing.T) {
	var got []string
	for _, r := range NftRules(testSpec) {
		got = append(got, r.Chain+": "+r.Rule+" # "+r.Comment)
	}
	want := []string{
		"postrouting: ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade # twill: masquerade pods leaving 10.244.0.0/16",
		"forward: ip saddr 10.244.0.0/16 accept # twill: forward from pods 10.244.0.0/16",
		"forward: ip daddr 10.244.0.0/16 accept # twill: forward to pods 10.244.0.0/16",
		"input: udp dport 8472 ip saddr != @vxlan_peers counter drop # twill: vxlan guard udp/8472",
		"podguard: ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 udp dport 8472 counter drop # twill: pods 10.244.0.0/16 must not reach vxlan udp/8472",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	off := testSpec
	off.IPMasq, off.VXLANPort = false, 0
	for _, r := range NftRules(off) {
		if r.Chain != "forward" {
			t.Errorf("IPMasq off, no vxlan: unexpected rule %+v", r)
		}
	}
}

func TestIptablesRules(t *testing.T) {
	var got []string
	for _, r := range IptablesRules(testSpec) {
		got = append(got, r.Table+" "+r.Chain+" "+strings.Join(r.Args, " "))
	}
	want := []string{
		"nat TWILL-POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment twill: masquerade pods leaving 10.244.0.0/16 -j MASQUERADE",
		"filter TWILL-FORWARD -s 10.244.0.0/16 -m comment --comment twill: forward from pods 10.244.0.0/16 -j ACCEPT",
		"filter TWILL-FORWARD -d 10.244.0.0/16 -m comment --comment twill: forward to pods 10.244.0.0/16 -j ACCEPT",
		"filter TWILL-VXLAN-GUARD -p udp --dport 8472 -m set ! --match-set twill-vxlan-peers src -m comment --comment twill: vxlan guard udp/8472 -j DROP",
		"mangle TWILL-POD-GUARD -s 10.244.0.0/16 ! -d 10.244.0.0/16 -p udp --dport 8472 -m comment --comment twill: pods 10.244.0.0/16 must not reach vxlan udp/8472 -j DROP",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range IptablesRules(testSpec) {
		if !hasTwillComment(r.Args) {
			t.Errorf("rule %v has no twill: comment", r.Args)
		}
	}
}

func TestSplitWords(t *testing.T) {
	got := splitWords(`-A DOCKER-USER -s 10.244.0.0/16 -m comment --comment "twill: accept pods 10.244.0.0/16 (FAILURES.md F3)" -j ACCEPT`)
	want := []string{"-A", "DOCKER-USER", "-s", "10.244.0.0/16", "-m", "comment", "--comment", "twill: accept pods 10.244.0.0/16 (FAILURES.md F3)", "-j", "ACCEPT"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
}

func TestDetect(t *testing.T) {
	rec := loadSnap(t, "../doctor/testdata/lab-node2-f3.json")
	if got := Detect(rec); got != BackendNft {
		t.Errorf("recorded lab node (iptables-nft rules, nft available): %s, want nft", got)
	}
	hint := "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
	rules := func(n int) string {
		s := "*filter\n:INPUT ACCEPT [0:0]\n"
		for range n {
			s += "-A INPUT -j ACCEPT\n"
		}
		return s + "COMMIT\n"
	}
	ok := func(save string) nodestate.IptablesBackend {
		return nodestate.IptablesBackend{Available: true, Save: save}
	}
	nftOK := nodestate.Nftables{Available: true}
	for _, c := range []struct {
		name        string
		legacy, nft nodestate.IptablesBackend
		nftables    nodestate.Nftables
		want        string
	}{
		{"empty host", ok(""), ok(""), nftOK, BackendNft},
		{"legacy hint", ok(hint + rules(1)), ok(rules(5)), nftOK, BackendIptablesLegacy},
		{"nft hint wins over legacy hint", ok(hint), ok(hint), nftOK, BackendNft},
		{"more legacy rules", ok(rules(3)), ok(rules(2)), nftOK, BackendIptablesLegacy},
		{"equal counts: nft", ok(rules(2)), ok(rules(2)), nftOK, BackendNft},
		{"nft-based without the nft tool", ok(""), ok(rules(2)), nodestate.Nftables{Available: false, Err: "not found"}, BackendIptablesNft},
		{"only legacy installed", ok(""), nodestate.IptablesBackend{}, nodestate.Nftables{}, BackendIptablesLegacy},
	} {
		s := &nodestate.Snapshot{Iptables: nodestate.Iptables{Legacy: c.legacy, NFT: c.nft}, Nftables: c.nftables}
		if got := Detect(s); got != c.want {
			t.Errorf("%s: Detect = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestPlacementsRecorded(t *testing.T) {
	network := netip.MustParsePrefix("10.244.0.0/16")
	f3 := loadSnap(t, "../doctor/testdata/lab-node2-f3.json")
	got, err := Placements(f3, network, netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Placement{{Backend: BackendIptablesNft, Table: "filter", Chain: "DOCKER-USER"}}
	if !slices.Equal(got, want) {
		t.Fatalf("F3 node: placements %v, want %v", got, want)
	}
	// Once twill's accept is in DOCKER-USER the answer must not change
	// (otherwise the agent would remove and re-add it every resync).
	fixed := *f3
	fixed.Iptables.NFT.Save = strings.Replace(f3.Iptables.NFT.Save, "-A FORWARD -j DOCKER-USER\n",
		"-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -s 10.244.0.0/16 -m comment --comment \"twill: accept pods 10.244.0.0/16 (FAILURES.md F3)\" -j ACCEPT\n-A DOCKER-USER -d 10.244.0.0/16 -m comment --comment \"twill: accept pods 10.244.0.0/16 (FAILURES.md F3)\" -j ACCEPT\n", 1)
	if fixed.Iptables.NFT.Save == f3.Iptables.NFT.Save {
		t.Fatal("test did not insert the accept")
	}
	if again, err := Placements(&fixed, network, netip.Prefix{}); err != nil || !slices.Equal(again, want) {
		t.Errorf("with twill's accepts in place: %v, %v; want %v", again, err, want)
	}
	healthy := loadSnap(t, "../doctor/testdata/lab-node1.json")
	if got, err := Placements(healthy, network, netip.Prefix{}); err != nil || len(got) != 0 {
		t.Errorf("healthy node: placements %v, %v; want none", got, err)
	}
}

func TestSpecValidate(t *testing.T) {
	bad := testSpec
	bad.Network = netip.Prefix{}
	if bad.Validate() == nil {
		t.Error("spec without network accepted")
	}
	bad = testSpec
	bad.ForwardAccept = []Placement{{Backend: "iptables-foo", Table: "filter", Chain: "FORWARD"}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "iptables-foo") {
		t.Errorf("bad placement: %v", err)
	}
	if err := testSpec.Validate(); err != nil {
		t.Error(err)
	}
}

// IPv6 rules are the IPv4 ones' twins, ordered by chain with them; an
// IPv6-only spec has no IPv4 rule.
func TestIPv6Rules(t *testing.T) {
	dual := testSpec
	dual.IPv6Network = netip.MustParsePrefix("fd00:10:244::/56")
	var got []string
	for _, r := range NftRules(dual) {
		got = append(got, r.Chain+": "+r.Rule)
	}
	want := []string{
		"postrouting: ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade",
		"postrouting: ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 masquerade",
		"forward: ip saddr 10.244.0.0/16 accept",
		"forward: ip daddr 10.244.0.0/16 accept",
		"forward: ip6 saddr fd00:10:244::/56 accept",
		"forward: ip6 daddr fd00:10:244::/56 accept",
		"input: udp dport 8472 ip saddr != @vxlan_peers counter drop",
		"input: udp dport 8472 ip6 saddr != @vxlan_peers6 counter drop",
		"podguard: ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 udp dport 8472 counter drop",
		"podguard: ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 udp dport 8472 counter drop",
	}
	if !slices.Equal(got, want) {
		t.Errorf("nft got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	v6 := dual
	v6.Network = netip.Prefix{}
	if n := len(IptablesRules(v6)); n != 0 {
		t.Errorf("IPv6-only spec: %d IPv4 iptables rules", n)
	}
	r6 := Ip6tablesRules(v6)
	if len(r6) != 5 || strings.Join(r6[3].Args, " ") != "-p udp --dport 8472 -m set ! --match-set twill-vxlan-peers6 src -m comment --comment twill: vxlan guard udp/8472 -j DROP" {
		t.Errorf("ip6tables rules %v", r6)
	}
	if ip6Binary(BackendIptablesNft) != "ip6tables-nft" || ip6Binary(BackendIptablesLegacy) != "ip6tables-legacy" {
		t.Error("ip6tables binary of the same backend")
	}
	v6.Peers = []netip.Addr{netip.MustParseAddr("fd00:77::12")}
	if err := v6.Validate(); err != nil {
		t.Errorf("IPv6-only spec: %v", err)
	}
	v6.Peers = append(v6.Peers, netip.MustParseAddr("192.168.77.12"))
	if err := v6.Validate(); err == nil || !strings.Contains(err.Error(), "a family the cluster runs") {
		t.Errorf("IPv4 peer in an IPv6-only spec: %v", err)
	}
	bad := dual
	bad.IPv6Network = netip.MustParsePrefix("10.9.0.0/16")
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "want an IPv6 prefix") {
		t.Errorf("IPv4 prefix as IPv6Network: %v", err)
	}
}

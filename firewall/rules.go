package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Names of twill's objects.
const (
	// NftTable is twill's nftables table (family inet).
	NftTable = "twill"
	// NftPeerSet is the nftables set of peer underlay addresses.
	NftPeerSet = "vxlan_peers"
	// NftPeerSet6 is the set of peer IPv6 underlay addresses (with IPv6).
	NftPeerSet6 = "vxlan_peers6"
	// IpsetPeers is the ipset of peer underlay addresses (iptables backends).
	IpsetPeers = "twill-vxlan-peers"
	// IpsetPeers6 is the ipset (family inet6) of peer IPv6 underlay
	// addresses, for ip6tables.
	IpsetPeers6 = "twill-vxlan-peers6"

	ChainPostrouting = "TWILL-POSTROUTING"
	ChainForward     = "TWILL-FORWARD"
	ChainGuard       = "TWILL-VXLAN-GUARD"
	// ChainPodGuard (table mangle, from FORWARD) drops pod traffic to the
	// vxlan port of any address outside the pod network.
	ChainPodGuard = "TWILL-POD-GUARD"
)

// NftChain is one base chain of twill's nftables table.
type NftChain struct {
	Name, Type, Hook, Priority string
	// Kind is the repair kind of the chain's rules.
	Kind string
}

// NftChains are the base chains of table inet twill. The guard runs just
// before the filter priority so it sees vxlan packets before anything that
// might accept them. The pod guard runs in the forward hook at mangle
// priority, before every filter chain and before the masquerade in
// postrouting: a pod's packet to a node's vxlan port is dropped while it
// still carries the pod's address (once masqueraded it would carry its
// node's, which every peer's guard accepts).
var NftChains = []NftChain{
	{Name: "postrouting", Type: "nat", Hook: "postrouting", Priority: "srcnat", Kind: KindMasquerade},
	{Name: "forward", Type: "filter", Hook: "forward", Priority: "filter", Kind: KindForward},
	{Name: "input", Type: "filter", Hook: "input", Priority: "filter - 1", Kind: KindGuard},
	{Name: "podguard", Type: "filter", Hook: "forward", Priority: "mangle", Kind: KindGuard},
}

// NftRule is one rule of table inet twill. Rules are recognised by their
// comment, which names everything the rule depends on: a rule whose Spec
// changed gets a new comment and so is rewritten.
type NftRule struct {
	Chain   string
	Rule    string
	Comment string
}

// NftRules renders the rules of table inet twill for a Spec, per chain in
// order: the IPv4 rules, then their IPv6 twins (ip6 matches, set
// NftPeerSet6). The guard's peers are not in the rules but in the sets.
func NftRules(s Spec) []NftRule {
	var out []NftRule
	for _, f := range []struct {
		net     netip.Prefix
		ip, set string
		postfix string
	}{{s.Network, "ip", NftPeerSet, ""}, {s.IPv6Network, "ip6", NftPeerSet6, " (IPv6)"}} {
		if !f.net.IsValid() {
			continue
		}
		n := f.net.Masked().String()
		if s.IPMasq {
			out = append(out, NftRule{"postrouting", fmt.Sprintf("%s saddr %s %s daddr != %s masquerade", f.ip, n, f.ip, n), "twill: masquerade pods leaving " + n})
		}
		out = append(out,
			NftRule{"forward", fmt.Sprintf("%s saddr %s accept", f.ip, n), "twill: forward from pods " + n},
			NftRule{"forward", fmt.Sprintf("%s daddr %s accept", f.ip, n), "twill: forward to pods " + n},
		)
		if s.VXLANPort > 0 {
			out = append(out, NftRule{"input", fmt.Sprintf("udp dport %d %s saddr != @%s counter drop", s.VXLANPort, f.ip, f.set), fmt.Sprintf("twill: vxlan guard udp/%d%s", s.VXLANPort, f.postfix)})
			out = append(out, NftRule{"podguard", fmt.Sprintf("%s saddr %s %s daddr != %s udp dport %d counter drop", f.ip, n, f.ip, n, s.VXLANPort), fmt.Sprintf("twill: pods %s must not reach vxlan udp/%d", n, s.VXLANPort)})
		}
	}
	slices.SortStableFunc(out, func(a, b NftRule) int { return chainIndex(a.Chain) - chainIndex(b.Chain) })
	return out
}

// chainIndex is the position of a chain in NftChains.
func chainIndex(name string) int {
	return slices.IndexFunc(NftChains, func(c NftChain) bool { return c.Name == name })
}

// IptablesRule is one iptables rule: table, chain and the rule
// specification (what follows `-A CHAIN`), comment included.
type IptablesRule struct {
	Table, Chain string
	Args         []string
	// Kind is the repair kind.
	Kind string
}

func comment(text string) []string { return []string{"-m", "comment", "--comment", text} }

// IptablesRules renders the rules of twill's own chains for a Spec's
// IPv4 network, per chain in order. The guard matches the ipset
// IpsetPeers, so it is one rule whatever the number of peers.
func IptablesRules(s Spec) []IptablesRule { return iptablesRules(s, s.Network, IpsetPeers) }

// Ip6tablesRules are the same rules for the IPv6 network, for ip6tables
// (guard: ipset IpsetPeers6).
func Ip6tablesRules(s Spec) []IptablesRule { return iptablesRules(s, s.IPv6Network, IpsetPeers6) }

func iptablesRules(s Spec, network netip.Prefix, ipset string) []IptablesRule {
	if !network.IsValid() {
		return nil
	}
	n := network.Masked().String()
	var out []IptablesRule
	if s.IPMasq {
		out = append(out, IptablesRule{"nat", ChainPostrouting, append(append([]string{"-s", n, "!", "-d", n}, comment("twill: masquerade pods leaving "+n)...), "-j", "MASQUERADE"), KindMasquerade})
	}
	out = append(out,
		IptablesRule{"filter", ChainForward, append(append([]string{"-s", n}, comment("twill: forward from pods "+n)...), "-j", "ACCEPT"), KindForward},
		IptablesRule{"filter", ChainForward, append(append([]string{"-d", n}, comment("twill: forward to pods "+n)...), "-j", "ACCEPT"), KindForward},
	)
	if s.VXLANPort > 0 {
		port := strconv.Itoa(s.VXLANPort)
		out = append(out, IptablesRule{"filter", ChainGuard, append(append([]string{"-p", "udp", "--dport", port, "-m", "set", "!", "--match-set", ipset, "src"}, comment("twill: vxlan guard udp/"+port)...), "-j", "DROP"), KindGuard})
		out = append(out, IptablesRule{"mangle", ChainPodGuard, append(append([]string{"-s", n, "!", "-d", n, "-p", "udp", "--dport", port}, comment("twill: pods "+n+" must not reach vxlan udp/"+port)...), "-j", "DROP"), KindGuard})
	}
	return out
}

// IptablesChains are twill's chains, with the built-in chain that jumps to
// each (the jump is inserted first in the built-in chain, once). The pod
// guard lives in table mangle so that no accept placed in filter FORWARD
// (FAILURES.md F3) can come before it, and it runs before the masquerade.
var IptablesChains = []struct {
	Table, Chain, From, Kind string
}{
	{"nat", ChainPostrouting, "POSTROUTING", KindMasquerade},
	{"filter", ChainForward, "FORWARD", KindForward},
	{"filter", ChainGuard, "INPUT", KindGuard},
	{"mangle", ChainPodGuard, "FORWARD", KindGuard},
}

// IptablesJump is the rule in a built-in chain that jumps to twill's chain.
func IptablesJump(chain string) []string {
	return append(comment("twill: jump to "+chain), "-j", chain)
}

// ForwardAcceptIptables are the two rules placed where the host's forward
// path drops (iptables backends), inserted at the top of the chain.
func ForwardAcceptIptables(s Spec) [][]string {
	n := s.Network.Masked().String()
	return [][]string{
		append(append([]string{"-s", n}, comment("twill: accept pods "+n+" (FAILURES.md F3)")...), "-j", "ACCEPT"),
		append(append([]string{"-d", n}, comment("twill: accept pods "+n+" (FAILURES.md F3)")...), "-j", "ACCEPT"),
	}
}

// ForwardAcceptNft are the two rules placed in another table's nftables
// forward chain that drops.
func ForwardAcceptNft(s Spec) []NftRule {
	n := s.Network.Masked().String()
	ip := "ip"
	if s.Network.Addr().Is6() {
		ip = "ip6"
	}
	return []NftRule{
		{Rule: ip + " saddr " + n + " accept", Comment: "twill: accept from pods " + n + " (FAILURES.md F3)"},
		{Rule: ip + " daddr " + n + " accept", Comment: "twill: accept to pods " + n + " (FAILURES.md F3)"},
	}
}

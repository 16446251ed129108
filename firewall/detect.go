package firewall

import (
	"strings"

	"github.com/twillnet/twill/nodestate"
)

// Detect picks the firewall backend for a node from its snapshot, the way
// kubernetes-sigs/iptables-wrappers picks the iptables mode:
//
//  1. kubelet's KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY chain in the mangle
//     table of iptables-nft means nft; in iptables-legacy (and not nft),
//     legacy;
//  2. otherwise the backend with more rules wins (legacy only when it has
//     strictly more, IPv4 and IPv6 together);
//  3. otherwise nft.
//
// An nft-based host gets native nftables (BackendNft) when the nft tool
// works, else iptables-nft; a legacy host gets iptables-legacy. twill's own
// rules count like anyone's, so once written they keep the choice stable.
func Detect(s *nodestate.Snapshot) string {
	legacy, nft := s.Iptables.Legacy, s.Iptables.NFT
	mode := ""
	switch {
	case hasHint(nft):
		mode = "nft"
	case hasHint(legacy):
		mode = "legacy"
	case legacy.Available && countRules(legacy) > countRules(nft):
		mode = "legacy"
	case !nft.Available && legacy.Available && !s.Nftables.Available:
		mode = "legacy"
	default:
		mode = "nft"
	}
	if mode == "legacy" {
		return BackendIptablesLegacy
	}
	if s.Nftables.Available && s.Nftables.Err == "" {
		return BackendNft
	}
	if nft.Available {
		return BackendIptablesNft
	}
	return BackendNft
}

// hasHint reports whether kubelet's hint chains are in the dump's mangle table.
func hasHint(b nodestate.IptablesBackend) bool {
	for _, save := range []string{b.Save, b.Save6} {
		table := ""
		for _, line := range strings.Split(save, "\n") {
			if strings.HasPrefix(line, "*") {
				table = strings.TrimSpace(line[1:])
				continue
			}
			if table == "mangle" && (strings.HasPrefix(line, ":KUBE-IPTABLES-HINT ") || strings.HasPrefix(line, ":KUBE-KUBELET-CANARY ")) {
				return true
			}
		}
	}
	return false
}

// countRules counts "-A" lines, as iptables-wrappers does with grep '^-'.
func countRules(b nodestate.IptablesBackend) int {
	n := 0
	for _, save := range []string{b.Save, b.Save6} {
		for _, line := range strings.Split(save, "\n") {
			if strings.HasPrefix(line, "-") {
				n++
			}
		}
	}
	return n
}

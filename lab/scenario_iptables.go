package lab

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/twillnet/twill/kubeproxy"
)

// Scenario implementations that change iptables rules.

// dockerForward is what Docker adds to the filter table (iptables-nft here):
// its chains, FORWARD jumping to them first, and (separately) policy DROP.
const dockerForward = `*filter
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-I FORWARD 1 -j DOCKER-USER
-I FORWARD 2 -j DOCKER-ISOLATION-STAGE-1
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`

// breakForwardDrop adds Docker's chains and policy DROP to the filter
// FORWARD chain of each family the lab runs (iptables-nft; ip6tables-nft
// on a lab with IPv6, as Docker with IPv6 enabled does).
func breakForwardDrop(ctx context.Context, st *State, n, _ *Node) error {
	tools := [][2]string{}
	if st.HasIPv4() {
		tools = append(tools, [2]string{"iptables-nft", "iptables-nft-restore"})
	}
	if st.HasIPv6() {
		// Idempotent: a re-apply after another nft-layer fix must not
		// stack a second set of jumps.
		if err := fixForwardDrop6(ctx, n); err != nil {
			return err
		}
		tools = append(tools, [2]string{"ip6tables-nft", "ip6tables-nft-restore"})
	}
	for _, t := range tools {
		if _, err := runIn(ctx, n.Namespace, dockerForward, t[1], "--noflush"); err != nil {
			return err
		}
		if _, err := runIn(ctx, n.Namespace, "", t[0], "-t", "filter", "-P", "FORWARD", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// fixForwardDrop undoes breakForwardDrop: the IPv4 rules are loaded afresh
// (fixFirewall) and, on a lab with IPv6, Docker's chains leave the ip6tables
// filter table and FORWARD accepts again.
func fixForwardDrop(ctx context.Context, st *State, n, peer *Node) error {
	if st.HasIPv4() {
		if err := fixFirewall(ctx, st, n, peer); err != nil {
			return err
		}
	}
	if st.HasIPv6() {
		return fixForwardDrop6(ctx, n)
	}
	return nil
}

// fixForwardDrop6 rewrites node n's ip6tables-nft filter table without
// Docker's chains and jumps, with FORWARD policy ACCEPT; every other rule
// stays.
func fixForwardDrop6(ctx context.Context, n *Node) error {
	dump, err := runIn(ctx, n.Namespace, "", "ip6tables-nft-save", "-t", "filter")
	if err != nil {
		return err
	}
	if !strings.Contains(dump, "*filter") {
		return nil // no ip6tables filter table: nothing to undo
	}
	_, err = runIn(ctx, n.Namespace, withoutDocker(dump), "ip6tables-nft-restore")
	return err
}

// withoutDocker is an iptables-save dump of the filter table without
// Docker's chains, rules and jumps (FORWARD policy ACCEPT).
func withoutDocker(dump string) string {
	var kept []string
	for _, l := range strings.Split(dump, "\n") {
		switch {
		case strings.HasPrefix(l, ":DOCKER"), strings.HasPrefix(l, "-A DOCKER"), strings.Contains(l, " -j DOCKER"):
			continue
		case strings.HasPrefix(l, ":FORWARD DROP"):
			l = ":FORWARD ACCEPT" + strings.TrimPrefix(l, ":FORWARD DROP")
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\n")
}

func fixFirewall(ctx context.Context, st *State, n, _ *Node) error { return applyFirewall(ctx, st, n) }

// legacyForward is a legacy-backend copy of kube-proxy's KUBE-FORWARD, as a
// component using the other iptables binary would write it.
const legacyForward = `*filter
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`

func breakSplit(ctx context.Context, _ *State, n, _ *Node) error {
	_, err := runIn(ctx, n.Namespace, legacyForward, "iptables-legacy-restore", "-w", "5")
	return err
}

// fixSplit empties the legacy filter table. (The legacy tables stay
// registered in the namespace, with no rules and ACCEPT policies.)
func fixSplit(ctx context.Context, _ *State, n, _ *Node) error {
	_, err := runIn(ctx, n.Namespace, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", "iptables-legacy-restore", "-w", "5")
	return err
}

// markMatch is the match an old iptables binary silently loses (FAILURES.md F4).
var markMatch = regexp.MustCompile(` -m mark --mark 0x[0-9a-fA-F]+(/0x[0-9a-fA-F]+)?`)

// corruptRules rewrites an iptables-save dump the way iptables 1.8.7 restores
// 1.8.8's output: the mark match disappears from KUBE-FIREWALL's DROP and
// KUBE-FORWARD's ACCEPT. It returns the new dump and how many rules changed.
func corruptRules(dump string) (string, int) {
	lines := strings.Split(dump, "\n")
	changed := 0
	for i, l := range lines {
		drop := strings.HasPrefix(l, "-A KUBE-FIREWALL ") && strings.HasSuffix(l, "-j DROP")
		accept := strings.HasPrefix(l, "-A KUBE-FORWARD ") && strings.HasSuffix(l, "-j ACCEPT")
		if (drop || accept) && markMatch.MatchString(l) && !strings.Contains(l, "! --mark") {
			lines[i] = markMatch.ReplaceAllString(l, "")
			changed++
		}
	}
	return strings.Join(lines, "\n"), changed
}

func breakCorrupt(ctx context.Context, _ *State, n, _ *Node) error {
	return editNFT(ctx, n, func(dump string) (string, error) {
		out, changed := corruptRules(dump)
		if changed == 0 {
			return "", fmt.Errorf("no KUBE-FIREWALL/KUBE-FORWARD rule with a mark match to corrupt (were the kube-proxy rules loaded?)")
		}
		return out, nil
	})
}

// dropServiceRule removes the KUBE-SERVICES rules that send vip to its
// Service chain. It returns the new dump and how many rules it removed.
func dropServiceRule(dump string, vip netip.Addr) (string, int) {
	match := " -d " + netip.PrefixFrom(vip, vip.BitLen()).String() + " "
	var kept []string
	removed := 0
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "-A KUBE-SERVICES ") && strings.Contains(l, match) {
			removed++
			continue
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\n"), removed
}

// breakNoDNAT deletes the KUBE-SERVICES rule of default/kubernetes in each
// family whose rules the lab loads and whose ClusterIP it has: 10.96.0.1,
// and on a lab with IPv6 its IPv6 twin fd00:96::1 (etcd store; with the
// Kubernetes store the API server's Service is IPv4 only).
func breakNoDNAT(ctx context.Context, st *State, n, _ *Node) error {
	var kube kubeproxy.Service
	for _, s := range st.Services() {
		if s.Namespace == "default" && s.Name == "kubernetes" {
			kube = s
		}
	}
	broken := 0
	for _, fam := range st.proxyFamilies() {
		vip, ok := kube.ClusterIPOf(fam.cidr.Addr().Is6())
		if !ok {
			continue
		}
		err := editRules(ctx, n, fam, func(dump string) (string, error) {
			out, removed := dropServiceRule(dump, vip)
			if removed == 0 {
				return "", fmt.Errorf("no KUBE-SERVICES rule for %s found in %s (were the kube-proxy rules loaded?)", vip, fam.tool)
			}
			return out, nil
		})
		if err != nil {
			return err
		}
		broken++
	}
	if broken == 0 {
		return fmt.Errorf("node %s: default/kubernetes has no ClusterIP of the families lab %s proxies (with the Kubernetes store it is the API server's IPv4 Service, and this lab is IPv6 only)", n.Name, st.Name)
	}
	return nil
}

// editNFT does what old tools do: iptables-nft-save | edit | iptables-nft-restore.
func editNFT(ctx context.Context, n *Node, edit func(string) (string, error)) error {
	return editRules(ctx, n, proxyFamily{restore: "iptables-nft-restore", tool: "iptables-nft"}, edit)
}

// editRules is editNFT for one family: <tool>-save | edit | <tool>-restore.
func editRules(ctx context.Context, n *Node, fam proxyFamily, edit func(string) (string, error)) error {
	dump, err := runIn(ctx, n.Namespace, "", fam.tool+"-save")
	if err != nil {
		return err
	}
	out, err := edit(dump)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	_, err = runIn(ctx, n.Namespace, out, fam.restore)
	return err
}

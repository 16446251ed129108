package firewall

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/trace"
)

// Placement is where the host's forward path drops new pod traffic, and so
// where twill's accept for the pod network goes (FAILURES.md F3).
type Placement struct {
	// Backend is "iptables-legacy", "iptables-nft" or "nft".
	Backend string `json:"backend"`
	// Family is the nftables family ("ip", "inet"); empty for iptables.
	Family string `json:"family,omitempty"`
	// Table is "filter" for iptables, the nftables table otherwise.
	Table string `json:"table"`
	// Chain is DOCKER-USER or FORWARD for iptables, the base chain for nft.
	Chain string `json:"chain"`
	// IPv6 places the accept for the IPv6 pod network (Spec.IPv6Network):
	// ip6tables of Backend, or an ip6 match in an nft ip6/inet chain.
	IPv6 bool `json:"ipv6,omitempty"`
}

func (p Placement) String() string {
	if p.Backend == BackendNft {
		if p.IPv6 && p.Family == "inet" {
			return fmt.Sprintf("nft %s %s %s (IPv6)", p.Family, p.Table, p.Chain)
		}
		return fmt.Sprintf("nft %s %s %s", p.Family, p.Table, p.Chain)
	}
	return fmt.Sprintf("%s %s %s", p.tool(), p.Table, p.Chain)
}

// tool is the iptables binary of the placement: Backend, or its ip6tables
// twin for an IPv6 placement.
func (p Placement) tool() string {
	if p.IPv6 {
		return strings.Replace(p.Backend, "iptables", "ip6tables", 1)
	}
	return p.Backend
}

// Commands renders, as a person would type them, the commands that insert
// the accepts for network at the top of the placement's chain (what
// EnsureForwardAccepts does); for an IPv6 network with ip6tables and nft's
// ip6 matches.
func (p Placement) Commands(network netip.Prefix) []string {
	s := Spec{Network: network}
	var out []string
	if p.Backend == BackendNft {
		for _, r := range ForwardAcceptNft(s) {
			out = append(out, fmt.Sprintf("nft insert rule %s %s %s %s comment %q", p.Family, p.Table, p.Chain, r.Rule, r.Comment))
		}
		return out
	}
	for _, r := range ForwardAcceptIptables(s) {
		args := make([]string, len(r))
		for i, a := range r {
			if strings.ContainsAny(a, " \t\"'") {
				a = strconv.Quote(a)
			}
			args[i] = a
		}
		q := p
		q.IPv6 = network.Addr().Is6()
		out = append(out, fmt.Sprintf("%s -t %s -I %s 1 %s", q.tool(), p.Table, p.Chain, strings.Join(args, " ")))
	}
	return out
}

func (p Placement) validate() error {
	switch p.Backend {
	case BackendIptablesLegacy, BackendIptablesNft:
		if p.Table != "filter" || p.Chain == "" {
			return fmt.Errorf("firewall: placement %s: want table filter and a chain", p)
		}
	case BackendNft:
		if p.Family == "" || p.Table == "" || p.Chain == "" {
			return fmt.Errorf("firewall: placement %s: want family, table and chain", p)
		}
	default:
		return fmt.Errorf("firewall: placement backend %q unknown", p.Backend)
	}
	return nil
}

// Placements finds every place on the node's forward path that drops new
// pod traffic of network's family, asking trace's evaluator
// (trace.Host.PodProbes and ProbeHook, the same questions as doctor's
// TW010/TW011) over the snapshot with twill's own rules left out, so the
// answer stays the same after twill's accepts are in: the agent can
// re-assert them on every resync without flapping. network and subnet are
// the cluster's pod network and this node's subnet of one family (IPv6:
// ip6tables and nft ip6/inet chains are asked). Put the results of each
// family the cluster runs in Spec.ForwardAccept.
func Placements(s *nodestate.Snapshot, network, subnet netip.Prefix) ([]Placement, error) {
	if !network.IsValid() {
		return nil, fmt.Errorf("firewall: placements: no pod network given")
	}
	clean, err := withoutTwill(s)
	if err != nil {
		return nil, fmt.Errorf("firewall: placements: %w", err)
	}
	h, err := trace.NewHostFamily(clean, network.Addr().Is6(), "FORWARD")
	if err != nil {
		return nil, fmt.Errorf("firewall: placements: %w", err)
	}
	pp, err := h.PodProbes(trace.PodNetwork{Cluster: network, Subnet: subnet})
	if err != nil {
		return nil, fmt.Errorf("firewall: placements: %w", err)
	}
	var hps []trace.HookProbe
	for _, p := range pp.Probes {
		hps = append(hps, h.ProbeHook("FORWARD", p))
	}
	return PlacementsFor(hps), nil
}

// PlacementsFor turns the answers of forward-hook probes into the places
// where an accept for the pod network must go: every filter chain that
// drops or rejects a probe (an accept in another chain or backend does not
// override it). For iptables the accept goes to DOCKER-USER when every
// blocked probe passed there from FORWARD first (Docker rewrites FORWARD
// but leaves DOCKER-USER alone), else to FORWARD. Placements of IPv6
// probes are marked IPv6.
func PlacementsFor(hps []trace.HookProbe) []Placement {
	var out []Placement
	viaDocker := map[Placement]bool{}
	for _, hp := range hps {
		for _, v := range hp.Blocked() {
			p := Placement{Backend: v.Backend, Family: v.Family, Table: v.Table, Chain: v.Chain, IPv6: hp.Probe.Dst.Is6() && !hp.Probe.Dst.Is4In6()}
			if v.Backend != BackendNft && v.Table != "filter" {
				continue // mangle/raw/security: not where accepts go
			}
			docker := v.Backend != BackendNft && slices.ContainsFunc(v.Jumps, func(j trace.Jump) bool { return j.From == v.Chain && j.To == "DOCKER-USER" })
			if seen, ok := viaDocker[p]; ok {
				viaDocker[p] = seen && docker
				continue
			}
			viaDocker[p] = docker
			out = append(out, p)
		}
	}
	for i := range out {
		if viaDocker[out[i]] {
			out[i].Chain = "DOCKER-USER"
		}
	}
	return out
}

// withoutTwill returns a copy of the snapshot without twill's own chains,
// rules and jumps (comments "twill:...", chains TWILL-*, table twill).
func withoutTwill(s *nodestate.Snapshot) (*nodestate.Snapshot, error) {
	clean := *s
	clean.Iptables.Legacy.Save = withoutTwillIptables(s.Iptables.Legacy.Save)
	clean.Iptables.NFT.Save = withoutTwillIptables(s.Iptables.NFT.Save)
	clean.Iptables.Legacy.Save6 = withoutTwillIptables(s.Iptables.Legacy.Save6)
	clean.Iptables.NFT.Save6 = withoutTwillIptables(s.Iptables.NFT.Save6)
	if strings.TrimSpace(s.Nftables.JSON) != "" {
		j, err := withoutTwillNft(s.Nftables.JSON)
		if err != nil {
			return nil, fmt.Errorf("nft -j list ruleset: %w", err)
		}
		clean.Nftables.JSON = j
	}
	return &clean, nil
}

// withoutTwillIptables drops twill's own chains, rules and jumps from an
// iptables-save dump.
func withoutTwillIptables(save string) string {
	if save == "" {
		return ""
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(save, "\n") {
		if strings.HasPrefix(line, ":TWILL-") || strings.HasPrefix(line, "-A TWILL-") ||
			strings.Contains(line, " -j TWILL-") || (strings.HasPrefix(line, "-A ") && hasTwillComment(splitWords(strings.TrimSpace(line)))) {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// withoutTwillNft drops the table twill and rules commented "twill:..."
// from `nft -j list ruleset` output.
func withoutTwillNft(text string) (string, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return "", err
	}
	kept := doc.Nftables[:0]
	for _, obj := range doc.Nftables {
		drop := false
		for kind, body := range obj {
			var o struct {
				Name    string `json:"name"`
				Table   string `json:"table"`
				Comment string `json:"comment"`
			}
			if json.Unmarshal(body, &o) != nil {
				continue
			}
			drop = drop || (kind == "table" && o.Name == NftTable) || (kind != "metainfo" && o.Table == NftTable) ||
				(kind == "rule" && strings.HasPrefix(o.Comment, "twill:"))
		}
		if !drop {
			kept = append(kept, obj)
		}
	}
	doc.Nftables = kept
	out, err := json.Marshal(doc)
	return string(out), err
}

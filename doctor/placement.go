package doctor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/nodestate"
)

// ForwardDrop is one place on a node's forward path that drops new pod
// traffic (FAILURES.md F3), and so where an accept for the pod network must
// go: an accept elsewhere does not override it.
type ForwardDrop struct {
	// Backend is "iptables-legacy", "iptables-nft" or "nft" (a native
	// nftables table that iptables does not manage).
	Backend string `json:"backend"`
	// Family is the nftables family ("ip", "inet"); empty for iptables.
	Family string `json:"family,omitempty"`
	// Table is "filter" for iptables, the nftables table otherwise.
	Table string `json:"table"`
	// Chain is where the accept goes: DOCKER-USER when FORWARD jumps there
	// first (Docker leaves it alone), else FORWARD; for nftables the base
	// chain on the forward hook that drops.
	Chain string `json:"chain"`
}

// ForwardDrops evaluates the node's forward path with doctor's rule
// evaluator (the same probes as TW010 and TW011: a new TCP connection from a
// pod on another node to a pod here, and back) and returns every place that
// drops them. cluster is the pod network; subnet the node's pod subnet
// (invalid: taken from the snapshot's subnet file or pod bridge).
//
// Rules twill made are ignored (rules whose comment starts with "twill:",
// jumps to TWILL-* chains, the nftables table "twill"), so the answer does
// not change once twill's accepts are in place: the agent can re-assert them
// on every resync without flapping.
func ForwardDrops(s *nodestate.Snapshot, cluster, subnet netip.Prefix) ([]ForwardDrop, error) {
	if !cluster.IsValid() {
		return nil, fmt.Errorf("forward drops: no pod network given")
	}
	clean := *s
	clean.Iptables.Legacy.Save = withoutTwillIptables(s.Iptables.Legacy.Save)
	clean.Iptables.NFT.Save = withoutTwillIptables(s.Iptables.NFT.Save)
	if strings.TrimSpace(s.Nftables.JSON) != "" {
		j, err := withoutTwillNft(s.Nftables.JSON)
		if err != nil {
			return nil, fmt.Errorf("forward drops: nft -j list ruleset: %w", err)
		}
		clean.Nftables.JSON = j
	}
	e := newEnv(&clean, Config{ClusterCIDR: cluster})
	if subnet.IsValid() {
		e.subnet = subnet.Masked()
	}
	if why := e.iptParseProblem(); why != "" {
		return nil, fmt.Errorf("forward drops: %s", why)
	}
	if err, ok := e.parseErr["nft"]; ok {
		return nil, fmt.Errorf("forward drops: nft rule set could not be parsed: %w", err)
	}
	probes, ok := e.podProbes()
	if !ok {
		return nil, fmt.Errorf("forward drops: pod subnet unknown (no subnet file, no pod bridge address, none given)")
	}
	var out []ForwardDrop
	for _, b := range e.iptBackends() {
		filter := b.rs.Table("filter")
		if filter == nil {
			continue
		}
		for _, p := range probes {
			v, err := evalBuiltin(filter, "FORWARD", p)
			if err != nil {
				return nil, fmt.Errorf("forward drops: iptables-%s: %w", b.name, err)
			}
			if v.action != "ACCEPT" {
				out = append(out, ForwardDrop{Backend: "iptables-" + b.name, Table: "filter", Chain: forwardAcceptChain(filter)})
				break
			}
		}
	}
	if e.nft != nil {
		for _, t := range e.nft.Tables {
			if (t.Family != "ip" && t.Family != "inet") || e.iptablesNftTable(t) {
				continue
			}
			for _, c := range t.Chains {
				if c.Hook != "forward" || c.Type != "filter" {
					continue
				}
				for _, p := range probes {
					if evalNftChain(t, c, p).action != "accept" {
						out = append(out, ForwardDrop{Backend: "nft", Family: t.Family, Table: t.Name, Chain: c.Name})
						break
					}
				}
			}
		}
	}
	return out, nil
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
			strings.Contains(line, " -j TWILL-") || strings.Contains(line, `--comment "twill:`) || strings.Contains(line, "--comment twill:") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// withoutTwillNft drops the table "twill" and rules commented "twill:..."
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
			switch {
			case kind == "table" && o.Name == "twill":
				drop = true
			case kind != "metainfo" && o.Table == "twill":
				drop = true
			case kind == "rule" && strings.HasPrefix(o.Comment, "twill:"):
				drop = true
			}
		}
		if !drop {
			kept = append(kept, obj)
		}
	}
	doc.Nftables = kept
	out, err := json.Marshal(doc)
	return string(out), err
}

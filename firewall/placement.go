package firewall

import (
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/nodestate"
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
}

func (p Placement) String() string {
	if p.Backend == BackendNft {
		return fmt.Sprintf("nft %s %s %s", p.Family, p.Table, p.Chain)
	}
	return fmt.Sprintf("%s %s %s", p.Backend, p.Table, p.Chain)
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
// pod traffic, using doctor's evaluator (checks TW010/TW011) over the
// snapshot with twill's own rules left out, so the answer stays the same
// after twill's accepts are in. Put the result in Spec.ForwardAccept.
func Placements(s *nodestate.Snapshot, network, subnet netip.Prefix) ([]Placement, error) {
	drops, err := doctor.ForwardDrops(s, network, subnet)
	if err != nil {
		return nil, err
	}
	out := make([]Placement, 0, len(drops))
	for _, d := range drops {
		out = append(out, Placement{Backend: d.Backend, Family: d.Family, Table: d.Table, Chain: d.Chain})
	}
	return out, nil
}

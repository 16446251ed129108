package firewall

import (
	"context"
	"fmt"
	"github.com/twillnet/twill/nodestate"
	"net/netip"
)

// Backend names, as Detect returns them.
const (
	// BackendNft is native nftables (table inet twill) through knftables.
	BackendNft = nodestate.BackendNft
	// BackendIptablesNft is iptables through the iptables-nft binary.
	BackendIptablesNft = nodestate.BackendIptablesNFT
	// BackendIptablesLegacy is iptables through the iptables-legacy binary.
	BackendIptablesLegacy = nodestate.BackendIptablesLegacy
)

// Repair kinds (the agent's twill_repairs_total{kind} label).
const (
	KindMasquerade    = "masquerade"
	KindForward       = "forward"
	KindGuard         = "guard"
	KindForwardAccept = "forward-accept"
)

// Spec is what twill's firewall must do on a node.
type Spec struct {
	// Network is the cluster pod network (IPv4); zero in an IPv6-only
	// cluster.
	Network netip.Prefix
	// IPv6Network is the cluster's IPv6 pod network; zero without IPv6.
	// Every rule has its IPv6 twin for it (nft: in the same inet table;
	// iptables: ip6tables of the same backend).
	IPv6Network netip.Prefix
	// Subnet is this node's pod subnet (informational; rules use Network).
	Subnet netip.Prefix
	// IPMasq masquerades pod traffic leaving Network (not pod to pod).
	IPMasq bool
	// VXLANPort is the vxlan UDP port to guard; 0 turns the guard off
	// (host-gw).
	VXLANPort int
	// Peers are the underlay addresses of the current peers: the only
	// sources vxlan packets are accepted from (IPv4 and IPv6 ones).
	Peers []netip.Addr
	// ForwardAccept are the places where the host's forward path drops pod
	// traffic (from Placements): an accept for Network (IPv6 placements:
	// IPv6Network) is inserted there.
	ForwardAccept []Placement
}

// peers returns the peers of one family.
func (s Spec) peers(v6 bool) []netip.Addr {
	var out []netip.Addr
	for _, p := range s.Peers {
		if p.Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// networkOf is the pod network an accept at placement p is for.
func (s Spec) networkOf(p Placement) netip.Prefix {
	if p.IPv6 {
		return s.IPv6Network
	}
	return s.Network
}

// Validate says what is wrong with a Spec before anything is written.
func (s Spec) Validate() error {
	if (!s.Network.IsValid() && !s.IPv6Network.IsValid()) || (s.Network.IsValid() && !s.Network.Addr().Is4()) {
		return fmt.Errorf("firewall: network %v: want an IPv4 prefix", s.Network)
	}
	if s.IPv6Network.IsValid() && (!s.IPv6Network.Addr().Is6() || s.IPv6Network.Addr().Is4In6()) {
		return fmt.Errorf("firewall: IPv6 network %v: want an IPv6 prefix", s.IPv6Network)
	}
	if s.VXLANPort < 0 || s.VXLANPort > 65535 {
		return fmt.Errorf("firewall: vxlan port %d out of range", s.VXLANPort)
	}
	for _, p := range s.Peers {
		switch {
		case p.Is4() && s.Network.IsValid():
		case p.Is6() && !p.Is4In6() && s.IPv6Network.IsValid():
		case s.IPv6Network.IsValid():
			return fmt.Errorf("firewall: peer %v: want an address of a family the cluster runs", p)
		default:
			return fmt.Errorf("firewall: peer %v: want an IPv4 address", p)
		}
	}
	for _, p := range s.ForwardAccept {
		if err := p.validate(); err != nil {
			return err
		}
		if !s.networkOf(p).IsValid() {
			return fmt.Errorf("firewall: placement %s: the cluster does not run that family", p)
		}
	}
	return nil
}

// Repair is one thing Ensure had to create or fix.
type Repair struct {
	// Kind is "masquerade", "forward", "guard" or "forward-accept".
	Kind string `json:"kind"`
	// Object says what, e.g. `nft inet twill postrouting: ip saddr ... masquerade`.
	Object string `json:"object"`
}

func (r Repair) String() string { return r.Kind + ": " + r.Object }

// Backend writes twill's rules with one packet filter backend.
type Backend interface {
	// Name is BackendNft, BackendIptablesNft or BackendIptablesLegacy.
	Name() string
	// Ensure makes the rules match the Spec, changing only what is missing
	// or wrong, and returns what it changed. Calling it again with the same
	// Spec returns no repairs.
	Ensure(ctx context.Context, s Spec) ([]Repair, error)
	// Remove deletes everything twill made: its table or chains and jumps,
	// the ipset, and the forward accepts it placed in any backend.
	Remove(ctx context.Context) error
}

// New returns the Backend for a name from Detect, working inside the named
// network namespace ("" for the caller's own).
func New(name, netns string) (Backend, error) {
	switch name {
	case BackendNft:
		return &Nft{Netns: netns}, nil
	case BackendIptablesNft, BackendIptablesLegacy:
		return &Iptables{Netns: netns, Binary: name}, nil
	}
	return nil, fmt.Errorf("firewall: unknown backend %q: want %q, %q or %q", name, BackendNft, BackendIptablesNft, BackendIptablesLegacy)
}

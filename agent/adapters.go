package agent

import (
	"context"
	"net/netip"
	"slices"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/backend/kernel"
	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/remedy"
)

// NodeKernel is the real Kernel: the node's network namespace (Netns, ""
// for the agent's own) and its files under Root.
type NodeKernel struct {
	Netns string
	Root  string
}

// Capture reads the node's state.
func (k NodeKernel) Capture(ctx context.Context) (*nodestate.Snapshot, error) {
	return nodestate.Capture(ctx, nodestate.CaptureOptions{Netns: k.Netns, Root: k.Root})
}

// Apply programs backend changes through netlink.
func (k NodeKernel) Apply(ctx context.Context, changes []backend.Change) ([]backend.Repair, error) {
	return kernel.Apply(ctx, k.Netns, changes)
}

// SetSysctls writes sysctls in the node's namespace.
func (k NodeKernel) SetSysctls(ctx context.Context, actions []doctor.Action) error {
	return remedy.Apply(ctx, k.Netns, actions)
}

// NodeFirewall adapts a firewall.Backend to the agent: it derives the Spec
// (masquerade, forward accept, vxlan guard peers, where the host's FORWARD
// drop is) from the agent's view on every reconcile.
type NodeFirewall struct {
	Backend firewall.Backend
	// lastPeers are the guard's peers at the last Ensure: a guard change
	// caused by peers joining or leaving is membership, not drift.
	lastPeers []netip.Addr
}

// Ensure makes twill's rules match the view.
func (f *NodeFirewall) Ensure(ctx context.Context, v View) ([]Repair, error) {
	spec := firewall.Spec{Network: v.Config.Network, Subnet: v.Self.Subnet, IPMasq: true}
	v4, v6 := v.Config.EnableIPv4() || !v.Config.EnableIPv6(), v.Config.EnableIPv6()
	if v6 {
		spec.IPv6Network = v.Config.IPv6Network
	}
	if v.Config.Backend.Type == "vxlan" {
		spec.VXLANPort = v.Config.Backend.Port
		for _, p := range v.Peers {
			if lease.SameSubnets(p, v.Self) {
				continue
			}
			if v4 && p.Attrs.PublicIP.Is4() {
				spec.Peers = append(spec.Peers, p.Attrs.PublicIP)
			}
			if v6 && p.Attrs.PublicIPv6.Is6() && !p.Attrs.PublicIPv6.Is4In6() {
				spec.Peers = append(spec.Peers, p.Attrs.PublicIPv6)
			}
		}
		slices.SortFunc(spec.Peers, func(a, b netip.Addr) int { return a.Compare(b) })
	}
	if v4 {
		pl, err := firewall.Placements(v.Snap, v.Config.Network, v.Self.Subnet)
		if err != nil {
			return nil, err
		}
		spec.ForwardAccept = pl
	}
	if v6 {
		pl, err := firewall.Placements(v.Snap, v.Config.IPv6Network, v.Self.IPv6Subnet)
		if err != nil {
			return nil, err
		}
		spec.ForwardAccept = append(spec.ForwardAccept, pl...)
	}
	membership := !slices.Equal(spec.Peers, f.lastPeers)
	rs, err := f.Backend.Ensure(ctx, spec)
	if err == nil {
		f.lastPeers = spec.Peers
	}
	var out []Repair
	for _, r := range rs {
		if r.Kind == "guard" && membership {
			continue // peers joined or left: expected, not drift
		}
		out = append(out, Repair{Kind: r.Kind, Action: "ensure", Object: r.Object})
	}
	return out, err
}

package lab

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// Scenario implementations that change sysctls and netlink objects.

func sysctlScenario(key, value string) func(context.Context, *State, *Node, *Node) error {
	return func(_ context.Context, _ *State, n, _ *Node) error { return setSysctl(n.Namespace, key, value) }
}

// bridgeNFScenario sets bridge-nf-call-iptables (F1) and, on a lab whose
// pods have IPv6, its IPv6 twin bridge-nf-call-ip6tables.
func bridgeNFScenario(value string) func(context.Context, *State, *Node, *Node) error {
	return func(_ context.Context, st *State, n, _ *Node) error {
		if err := setSysctl(n.Namespace, SysctlBridgeNF, value); err != nil {
			return err
		}
		if st.HasIPv6() {
			return setSysctl(n.Namespace, SysctlBridgeNF6, value)
		}
		return nil
	}
}

func fixPeer(_ context.Context, st *State, n, peer *Node) error { return programPeer(st, n, peer) }

func breakFDB(_ context.Context, st *State, n, peer *Node) error {
	return withHandle(n.Namespace, func(h *netlink.Handle) error {
		o, err := vxlanPeerState(h, st, n, peer)
		if err != nil {
			return err
		}
		return ignoreMissing(h.NeighDel(o.fdb))
	})
}

func breakNeigh(_ context.Context, st *State, n, peer *Node) error {
	return withHandle(n.Namespace, func(h *netlink.Handle) error {
		o, err := vxlanPeerState(h, st, n, peer)
		if err != nil {
			return err
		}
		o.neigh.HardwareAddr, _ = net.ParseMAC(StaleMAC(peer.Index))
		return h.NeighSet(o.neigh)
	})
}

// vxlanPeerState is peerState for a scenario that breaks a vxlan entry:
// a peer routed directly (DirectRouting) has none.
func vxlanPeerState(h *netlink.Handle, st *State, n, peer *Node) (peerObjects, error) {
	o, err := peerState(h, st, n, peer)
	if err == nil && (o.neigh == nil || o.fdb == nil) {
		err = fmt.Errorf("node %s routes peer %s directly (DirectRouting): it has no vxlan neighbour or FDB entry to break; try F6-route", n.Name, peer.Name)
	}
	return o, err
}

func breakRoute(_ context.Context, st *State, n, peer *Node) error {
	return withHandle(n.Namespace, func(h *netlink.Handle) error {
		o, err := peerState(h, st, n, peer)
		if err != nil {
			return err
		}
		return ignoreMissing(h.RouteDel(o.route))
	})
}

// setPodMTU sets the MTU of node n's pod veths (both ends), then cni0.
func setPodMTU(mtu int) func(context.Context, *State, *Node, *Node) error {
	return func(_ context.Context, _ *State, n, _ *Node) error {
		for _, p := range n.Pods {
			err := withHandle(p.Namespace, func(h *netlink.Handle) error {
				l, err := h.LinkByName(podIface)
				if err != nil {
					return fmt.Errorf("pod %s: %w", p.Name, err)
				}
				return h.LinkSetMTU(l, mtu)
			})
			if err != nil {
				return err
			}
		}
		return withHandle(n.Namespace, func(h *netlink.Handle) error {
			for _, p := range n.Pods {
				l, err := h.LinkByName(p.HostVeth)
				if err != nil {
					return fmt.Errorf("node %s: %w", n.Name, err)
				}
				if err := h.LinkSetMTU(l, mtu); err != nil {
					return fmt.Errorf("node %s: mtu %d on %s: %w", n.Name, mtu, p.HostVeth, err)
				}
			}
			br, err := h.LinkByName(podBridge)
			if err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
			if err := h.LinkSetMTU(br, mtu); err != nil {
				return fmt.Errorf("node %s: mtu %d on %s: %w", n.Name, mtu, podBridge, err)
			}
			return nil
		})
	}
}

package lab

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// Scenario implementations that change sysctls and netlink objects.

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

// forwardScenario sets the forwarding sysctl of each family the lab runs:
// net.ipv4.ip_forward (F2) and, on a lab with IPv6, its IPv6 twin
// net.ipv6.conf.all.forwarding.
func forwardScenario(value string) func(context.Context, *State, *Node, *Node) error {
	return func(_ context.Context, st *State, n, _ *Node) error {
		if st.HasIPv4() {
			if err := setSysctl(n.Namespace, SysctlIPForward, value); err != nil {
				return err
			}
		}
		if st.HasIPv6() {
			return setSysctl(n.Namespace, SysctlIPv6Forward, value)
		}
		return nil
	}
}

func fixPeer(_ context.Context, st *State, n, peer *Node) error { return programPeer(st, n, peer) }

// breakFDB deletes node n's FDB entry of peer's VTEP (each family's in a
// lab with IPv6).
func breakFDB(_ context.Context, st *State, n, peer *Node) error {
	return eachPeerObject(st, n, peer, true, func(h *netlink.Handle, o peerObjects) error {
		return ignoreMissing(h.NeighDel(o.fdb))
	})
}

// breakNeigh gives node n's neighbour entry of peer's VTEP (each family's)
// a stale MAC, as after the peer rebooted.
func breakNeigh(_ context.Context, st *State, n, peer *Node) error {
	return eachPeerObject(st, n, peer, true, func(h *netlink.Handle, o peerObjects) error {
		o.neigh.HardwareAddr, _ = net.ParseMAC(StaleMAC(peer.Index))
		return h.NeighSet(o.neigh)
	})
}

// breakRoute deletes node n's route to peer's pod subnet (each family's).
func breakRoute(_ context.Context, st *State, n, peer *Node) error {
	return eachPeerObject(st, n, peer, false, func(h *netlink.Handle, o peerObjects) error {
		return ignoreMissing(h.RouteDel(o.route))
	})
}

// eachPeerObject runs fn in node n's namespace on what n needs to reach
// peer, once per family of the lab (peerState). With vxlan, a scenario
// that breaks a vxlan entry is refused for a peer routed directly
// (DirectRouting): it has no vxlan neighbour or FDB entry.
func eachPeerObject(st *State, n, peer *Node, vxlan bool, fn func(*netlink.Handle, peerObjects) error) error {
	return withHandle(n.Namespace, func(h *netlink.Handle) error {
		objs, err := peerState(h, st, n, peer)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if vxlan && (o.neigh == nil || o.fdb == nil) {
				return fmt.Errorf("node %s routes peer %s directly (DirectRouting): it has no vxlan neighbour or FDB entry to break; try F6-route", n.Name, peer.Name)
			}
			if err := fn(h, o); err != nil {
				return err
			}
		}
		return nil
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

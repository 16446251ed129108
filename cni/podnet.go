package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// podRoute is one route of a pod: dst via gw.
type podRoute struct {
	dst netip.Prefix
	gw  netip.Addr
}

// podRoutes are the routes a pod gets, for each family of the node: the
// cluster network via the gateway and, with isDefaultGateway, the default
// route via the gateway.
func podRoutes(node Node, defaultGateway bool) []podRoute {
	var out []podRoute
	for _, n := range node.Nets() {
		out = append(out, podRoute{n.Network, n.Gateway})
		if defaultGateway {
			out = append(out, podRoute{netip.PrefixFrom(unspecified(n.Gateway), 0), n.Gateway})
		}
	}
	return out
}

// unspecified is 0.0.0.0 or :: (the family of a).
func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// addrFlags are the flags of a pod or gateway address: IPv6 ones skip
// duplicate address detection (IFA_F_NODAD), so the address is usable at
// once instead of after a second of DAD; IPAM already guarantees it is
// unique on the bridge.
func addrFlags(a netip.Addr) int {
	if a.Is6() {
		return unix.IFA_F_NODAD
	}
	return 0
}

// configurePod gives the pod interface (already in the pod namespace, h is
// a handle there) its MTU, addresses (one per family) and routes, and sets
// it up. It also sets the pod's loopback up, so no "loopback" plugin binary
// is needed beside twill. Re-running it is harmless.
func configurePod(h *netlink.Handle, ifName string, addrs []netip.Prefix, node Node, defaultGateway bool) (netlink.Link, error) {
	if lo, err := h.LinkByName("lo"); err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(lo); err != nil {
			return nil, fmt.Errorf("pod loopback: set up: %w", err)
		}
	}
	link, err := h.LinkByName(ifName)
	if err != nil {
		return nil, fmt.Errorf("pod interface %s: %w", ifName, err)
	}
	if link.Attrs().MTU != node.MTU {
		if err := h.LinkSetMTU(link, node.MTU); err != nil {
			return nil, fmt.Errorf("pod interface %s: set MTU %d: %w", ifName, node.MTU, err)
		}
	}
	for _, addr := range addrs {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr), Flags: addrFlags(addr.Addr())}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("pod interface %s: add address %s: %w", ifName, addr, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("pod interface %s: set up: %w", ifName, err)
	}
	for _, r := range podRoutes(node, defaultGateway) {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.dst), Gw: net.IP(r.gw.AsSlice())}
		if err := h.RouteReplace(rt); err != nil {
			return nil, fmt.Errorf("pod interface %s: route %s via %s: %w", ifName, r.dst, r.gw, err)
		}
	}
	return link, nil
}

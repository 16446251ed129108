package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// podRoutes are the routes a pod gets: the cluster network via the gateway
// and, with isDefaultGateway, the default route via the gateway.
func podRoutes(node Node, defaultGateway bool) []netip.Prefix {
	out := []netip.Prefix{node.Network}
	if defaultGateway {
		out = append(out, netip.MustParsePrefix("0.0.0.0/0"))
	}
	return out
}

// configurePod gives the pod interface (already in the pod namespace, h is
// a handle there) its MTU, address and routes, and sets it up. It also sets
// the pod's loopback up, so no "loopback" plugin binary is needed beside
// twill. Re-running it is harmless.
func configurePod(h *netlink.Handle, ifName string, addr netip.Prefix, node Node, defaultGateway bool) (netlink.Link, error) {
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
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("pod interface %s: add address %s: %w", ifName, addr, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("pod interface %s: set up: %w", ifName, err)
	}
	gw := net.IP(node.Gateway.AsSlice())
	for _, dst := range podRoutes(node, defaultGateway) {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Gw: gw}
		if err := h.RouteReplace(r); err != nil {
			return nil, fmt.Errorf("pod interface %s: route %s via %s: %w", ifName, dst, node.Gateway, err)
		}
	}
	return link, nil
}

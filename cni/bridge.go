package cni

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// bridgeMAC is the bridge's fixed MAC, derived from its address
// (0a:58:<IPv4>, locally administered; on an IPv6-only node the last four
// bytes of the IPv6 gateway). A bridge without a fixed MAC takes its lowest
// port's, which changes as pods come and go and leaves stale entries in the
// pods' ARP and neighbour caches.
func bridgeMAC(node Node) net.HardwareAddr {
	gw := node.Nets()[0].Gateway.AsSlice()
	a := gw[len(gw)-4:]
	return net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]}
}

// ensureBridge makes the node bridge exist, be up, have the MTU and carry
// the gateway address of each family. It is safe when several plugin processes run it at
// once: "already exists" answers from the kernel count as success. An
// address of the cluster network other than the gateway (left by a previous
// subnet of this node) is removed: with it, the bridge would route part of
// the cluster network wrongly.
func ensureBridge(h *netlink.Handle, name string, node Node) (netlink.Link, error) {
	link, err := h.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: node.MTU, HardwareAddr: bridgeMAC(node)}}
		if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: create: %w", name, err)
		}
		link, err = h.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return nil, fmt.Errorf("bridge %s: a %s link has that name, not a bridge: delete it or set \"bridge\" in the CNI config", name, link.Type())
	}
	if link.Attrs().MTU != node.MTU {
		if err := h.LinkSetMTU(link, node.MTU); err != nil {
			return nil, fmt.Errorf("bridge %s: set MTU %d: %w", name, node.MTU, err)
		}
	}
	for _, pn := range node.Nets() {
		if err := bridgeAddr(h, link, name, node.File, pn); err != nil {
			return nil, err
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bridge %s: set up: %w", name, err)
		}
	}
	return link, nil
}

// bridgeAddr puts the gateway address of pn on the bridge and removes
// other addresses of pn's cluster network (left by a previous subnet).
func bridgeAddr(h *netlink.Handle, link netlink.Link, name, file string, pn PodNet) error {
	family := unix.AF_INET
	if pn.Gateway.Is6() {
		family = unix.AF_INET6
	}
	addrs, err := h.AddrList(link, family)
	if err != nil {
		return fmt.Errorf("bridge %s: list addresses: %w", name, err)
	}
	want := pn.GatewayPrefix()
	have := false
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok {
			continue
		}
		if p == want {
			have = true
			continue
		}
		if pn.Network.Contains(p.Addr()) {
			slog.Warn("removing a stale cluster address from the bridge", "bridge", name, "address", p, "gateway", want, "subnetFile", file)
			if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("bridge %s: remove stale address %s (the node's subnet is now %s): %w", name, p, pn.Subnet, err)
			}
		}
	}
	if !have {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(want), Flags: addrFlags(want.Addr())}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("bridge %s: add address %s: %w", name, want, err)
		}
	}
	return nil
}

// ipNet converts a prefix (address form kept) to the net.IPNet netlink uses.
func ipNet(p netip.Prefix) *net.IPNet {
	bits := p.Addr().BitLen()
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// prefixOf converts a net.IPNet (address form kept) to a prefix.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

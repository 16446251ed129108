package lab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ipNet converts an address and prefix length into netlink's form.
func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, a.BitLen())}
}

// prefixAddrNet converts an address with its prefix length (10.244.1.1/24)
// into netlink's form, keeping the host bits.
func prefixAddrNet(p netip.Prefix) *net.IPNet { return ipNet(p.Addr(), p.Bits()) }

// prefixNet converts a prefix into netlink's form.
func prefixNet(p netip.Prefix) *net.IPNet { return ipNet(p.Masked().Addr(), p.Bits()) }

// setupUnderlay creates the underlay namespace with bridge br0 (192.168.77.1/24).
func setupUnderlay(st *State) error {
	if err := createNS(st.Underlay); err != nil {
		return err
	}
	return withHandle(st.Underlay, func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: underlayBridge}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("underlay %s: add bridge %s: %w", st.Underlay, underlayBridge, err)
		}
		if err := h.AddrAdd(br, &netlink.Addr{IPNet: ipNet(UnderlayGateway, 24)}); err != nil {
			return fmt.Errorf("underlay %s: address on %s: %w", st.Underlay, underlayBridge, err)
		}
		if st.HasIPv6() {
			if err := addUnderlayV6(h, br, UnderlayGatewayV6, "underlay "+st.Underlay); err != nil {
				return err
			}
		}
		if err := h.LinkSetUp(br); err != nil {
			return fmt.Errorf("underlay %s: %s up: %w", st.Underlay, underlayBridge, err)
		}
		return nil
	})
}

// setupNodeUplink creates node n's namespace and its eth0, a veth whose other
// end (veth-n<i>) is a port of br0 in the underlay. Both ends are created
// directly in their namespaces; nothing passes through the root namespace.
func setupNodeUplink(st *State, n *Node) error {
	if err := createNS(n.Namespace); err != nil {
		return err
	}
	nodeNS, err := netns.GetFromName(n.Namespace)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	defer nodeNS.Close()
	err = withHandle(st.Underlay, func(h *netlink.Handle) error {
		br, err := h.LinkByName(underlayBridge)
		if err != nil {
			return fmt.Errorf("underlay bridge: %w", err)
		}
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: underlayPort(n.Index), MasterIndex: br.Attrs().Index},
			PeerName:      nodeUplink,
			PeerNamespace: netlink.NsFd(nodeNS),
		}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("node %s: add veth %s/%s: %w", n.Name, underlayPort(n.Index), nodeUplink, err)
		}
		port, err := h.LinkByName(underlayPort(n.Index))
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		return h.LinkSetUp(port)
	})
	if err != nil {
		return err
	}
	ip := netip.MustParseAddr(n.IP)
	return withHandle(n.Namespace, func(h *netlink.Handle) error {
		eth, err := h.LinkByName(nodeUplink)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(ip, 24)}); err != nil {
			return fmt.Errorf("node %s: address %s/24 on %s: %w", n.Name, ip, nodeUplink, err)
		}
		if err := h.LinkSetUp(eth); err != nil {
			return fmt.Errorf("node %s: %s up: %w", n.Name, nodeUplink, err)
		}
		gw := net.IP(UnderlayGateway.AsSlice())
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("node %s: default route via %s: %w", n.Name, UnderlayGateway, err)
		}
		if n.IPv6 != "" {
			return nodeUplinkV6(h, n, eth)
		}
		return nil
	})
}

package lab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// setupPod creates pod p of node n: its namespace, a veth whose node end is a
// hairpin port of cni0 and whose pod end eth0 is created directly in the pod
// namespace, the pod address and default route, and starts its server.
func setupPod(st *State, n *Node, p *Pod) error {
	if err := createNS(p.Namespace); err != nil {
		return err
	}
	podNS, err := netns.GetFromName(p.Namespace)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	defer podNS.Close()
	mtu := PodMTU(st.Backend)
	err = withHandle(n.Namespace, func(h *netlink.Handle) error {
		br, err := h.LinkByName(podBridge)
		if err != nil {
			return fmt.Errorf("pod %s: node bridge: %w", p.Name, err)
		}
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: p.HostVeth, MTU: mtu},
			PeerName:      podIface,
			PeerNamespace: netlink.NsFd(podNS),
			PeerMTU:       uint32(mtu),
		}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("pod %s: add veth %s/%s: %w", p.Name, p.HostVeth, podIface, err)
		}
		host, err := h.LinkByName(p.HostVeth)
		if err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
		if err := h.LinkSetMaster(host, br); err != nil {
			return fmt.Errorf("pod %s: enslave %s to %s: %w", p.Name, p.HostVeth, podBridge, err)
		}
		if err := h.LinkSetHairpin(host, true); err != nil {
			return fmt.Errorf("pod %s: hairpin on %s: %w", p.Name, p.HostVeth, err)
		}
		return h.LinkSetUp(host)
	})
	if err != nil {
		return err
	}
	err = withHandle(p.Namespace, func(h *netlink.Handle) error {
		eth, err := h.LinkByName(podIface)
		if err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
		if eth.Attrs().MTU != mtu {
			if err := h.LinkSetMTU(eth, mtu); err != nil {
				return fmt.Errorf("pod %s: mtu %d: %w", p.Name, mtu, err)
			}
		}
		addr := netip.PrefixFrom(netip.MustParseAddr(p.IP), netip.MustParsePrefix(n.Subnet).Bits())
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: prefixAddrNet(addr)}); err != nil {
			return fmt.Errorf("pod %s: address %s: %w", p.Name, addr, err)
		}
		if err := h.LinkSetUp(eth); err != nil {
			return fmt.Errorf("pod %s: eth0 up: %w", p.Name, err)
		}
		gw := net.IP(netip.MustParseAddr(n.Gateway).AsSlice())
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("pod %s: default route via %s: %w", p.Name, n.Gateway, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return startServer(st, p)
}

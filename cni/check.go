package cni

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

// Check is CNI CHECK: the pod's interface, address, routes and MTU, its
// veth's bridge port and hairpin mode, and the bridge are as ADD left them.
// Every difference is listed in one error.
func Check(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, os.Getenv(RootEnv))
	if err != nil {
		return cniError(types.ErrInvalidNetworkConfig, err)
	}
	node, err := ReadNode(c)
	if err != nil {
		return nodeError(err)
	}
	store, err := NewStore(c.DataDir)
	if err != nil {
		return cniError(types.ErrIOFailure, err)
	}
	var addrs []netip.Prefix
	for _, pn := range node.Nets() {
		addr, err := store.Lookup(pn.Subnet, args.ContainerID, args.IfName)
		if err != nil {
			return cniError(types.ErrIOFailure, err)
		}
		if !addr.IsValid() {
			return failf(types.ErrInternal, "CHECK %s %s: no address of %s is allocated to it in %s (was ADD run? was the node's subnet changed?)",
				args.ContainerID, args.IfName, pn.Subnet, c.DataDir)
		}
		addrs = append(addrs, netip.PrefixFrom(addr, pn.Subnet.Bits()))
	}
	h, err := openHandles(args.Netns)
	if err != nil {
		return err
	}
	defer h.close()
	problems := checkAttachment(h, c, node, args, addrs)
	if len(problems) > 0 {
		return failf(types.ErrInternal, "CHECK %s in %s: %s", args.IfName, args.Netns, strings.Join(problems, "; "))
	}
	return nil
}

// checkAttachment lists what differs from what ADD sets up.
func checkAttachment(h *handles, c Config, node Node, args *skel.CmdArgs, addrs []netip.Prefix) []string {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	if c.PrevResult != nil {
		for _, addr := range addrs {
			found := false
			for _, ip := range c.PrevResult.IPs {
				if p, ok := prefixOf(&ip.Address); ok && p == addr {
					found = true
				}
			}
			if !found {
				bad("the runtime's prevResult does not hold %s, the address allocated to this pod", addr)
			}
		}
	}

	pod, err := h.pod.LinkByName(args.IfName)
	if err != nil {
		bad("pod interface %s: %v", args.IfName, err)
		return problems
	}
	if pod.Attrs().MTU != node.MTU {
		bad("pod interface %s has MTU %d, want %d (from %s)", args.IfName, pod.Attrs().MTU, node.MTU, mtuSource(c, node))
	}
	if pod.Attrs().Flags&net.FlagUp == 0 {
		bad("pod interface %s is down", args.IfName)
	}
	if have, err := h.pod.AddrList(pod, netlink.FAMILY_ALL); err != nil {
		bad("pod interface %s: list addresses: %v", args.IfName, err)
	} else {
		for _, addr := range addrs {
			if !hasAddr(have, addr) {
				bad("pod interface %s lacks its address %s", args.IfName, addr)
			}
		}
	}
	if routes, err := h.pod.RouteList(pod, netlink.FAMILY_ALL); err != nil {
		bad("pod interface %s: list routes: %v", args.IfName, err)
	} else {
		for _, r := range podRoutes(node, c.DefaultGateway) {
			if !hasRoute(routes, r.dst, r.gw) {
				bad("pod lacks the route %s via %s", r.dst, r.gw)
			}
		}
	}

	hostName := HostVethName(args.ContainerID, args.IfName)
	host, err := h.node.LinkByName(hostName)
	if err != nil {
		bad("host veth %s: %v", hostName, err)
		return problems
	}
	if pod.Attrs().ParentIndex != host.Attrs().Index {
		bad("pod interface %s is not the peer of host veth %s", args.IfName, hostName)
	}
	if host.Attrs().MTU != node.MTU {
		bad("host veth %s has MTU %d, want %d (from %s)", hostName, host.Attrs().MTU, node.MTU, mtuSource(c, node))
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		bad("host veth %s is down", hostName)
	}
	bridge, err := h.node.LinkByName(c.Bridge)
	if err != nil {
		bad("bridge %s: %v", c.Bridge, err)
		return problems
	}
	if host.Attrs().MasterIndex != bridge.Attrs().Index {
		bad("host veth %s is not a port of bridge %s", hostName, c.Bridge)
	}
	if pi, err := h.node.LinkGetProtinfo(host); err != nil {
		bad("host veth %s: bridge port info: %v", hostName, err)
	} else if pi.Hairpin != c.Hairpin {
		bad("host veth %s has hairpin mode %t, want %t", hostName, pi.Hairpin, c.Hairpin)
	}
	if bridge.Attrs().Flags&net.FlagUp == 0 {
		bad("bridge %s is down", c.Bridge)
	}
	if have, err := h.node.AddrList(bridge, netlink.FAMILY_ALL); err != nil {
		bad("bridge %s: list addresses: %v", c.Bridge, err)
	} else {
		for _, pn := range node.Nets() {
			if !hasAddr(have, pn.GatewayPrefix()) {
				bad("bridge %s lacks the gateway address %s", c.Bridge, pn.GatewayPrefix())
			}
		}
	}
	return problems
}

func mtuSource(c Config, node Node) string {
	if c.MTU != 0 {
		return "the CNI config's mtu"
	}
	return "subnet file " + node.File
}

func hasAddr(addrs []netlink.Addr, want netip.Prefix) bool {
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok && p == want {
			return true
		}
	}
	return false
}

// hasRoute tells whether routes hold dst via gw. The default route may come
// back with a nil destination.
func hasRoute(routes []netlink.Route, dst netip.Prefix, gw netip.Addr) bool {
	for _, r := range routes {
		rgw, _ := netip.AddrFromSlice(r.Gw)
		rgw = rgw.Unmap()
		got := netip.PrefixFrom(unspecified(rgw), 0)
		if r.Dst != nil {
			p, ok := prefixOf(r.Dst)
			if !ok {
				continue
			}
			got = p
		}
		if got == dst && rgw == gw {
			return true
		}
	}
	return false
}

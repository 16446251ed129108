package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/lease"
	leaseetcd "github.com/twillnet/twill/lease/etcd"
	"github.com/twillnet/twill/subnetfile"
)

// setupNodePodNetwork programs node n the way a pod network agent would:
// sysctls, the cni0 bridge, and (vxlan) the twill.1 VTEP.
func setupNodePodNetwork(st *State, n *Node) error {
	if err := setSysctl(n.Namespace, SysctlIPForward, "1"); err != nil {
		return err
	}
	if err := setSysctl(n.Namespace, SysctlBridgeNF, "1"); err != nil {
		return err
	}
	mtu := PodMTU(st.Backend)
	return withHandle(n.Namespace, func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: podBridge, MTU: mtu}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("node %s: add bridge %s: %w", n.Name, podBridge, err)
		}
		gw := subnetfile.Gateway(netip.MustParsePrefix(n.Subnet))
		if err := h.AddrAdd(br, &netlink.Addr{IPNet: prefixAddrNet(gw)}); err != nil {
			return fmt.Errorf("node %s: address %s on %s: %w", n.Name, gw, podBridge, err)
		}
		if err := h.LinkSetUp(br); err != nil {
			return fmt.Errorf("node %s: %s up: %w", n.Name, podBridge, err)
		}
		if st.Backend != BackendVXLAN {
			return nil
		}
		eth, err := h.LinkByName(nodeUplink)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		mac, _ := net.ParseMAC(n.VtepMAC)
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: vxlanDev, MTU: mtu, HardwareAddr: mac},
			VxlanId:      vxlanVNI,
			VtepDevIndex: eth.Attrs().Index,
			SrcAddr:      net.IP(netip.MustParseAddr(n.IP).AsSlice()),
			Port:         vxlanPort,
			Learning:     false,
		}
		if err := h.LinkAdd(vx); err != nil {
			return fmt.Errorf("node %s: add vxlan %s: %w", n.Name, vxlanDev, err)
		}
		link, err := h.LinkByName(vxlanDev)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		// Flannel gives the VTEP the subnet's network address as a /32.
		vtepIP := netip.MustParsePrefix(n.Subnet).Addr()
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(vtepIP, 32)}); err != nil {
			return fmt.Errorf("node %s: address %s/32 on %s: %w", n.Name, vtepIP, vxlanDev, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("node %s: %s up: %w", n.Name, vxlanDev, err)
		}
		return nil
	})
}

// peerObjects are the kernel objects node n needs to reach peer p.
type peerObjects struct {
	route *netlink.Route
	neigh *netlink.Neigh // vxlan only (nil for a peer routed directly)
	fdb   *netlink.Neigh // vxlan only (nil for a peer routed directly)
}

// labNode is node n as backend.Compute sees it: its lease, every node's
// lease, the lab's net-conf and its underlay (eth0 on the lab's segment,
// with its IPv6 address in a lab with IPv6).
func labNode(st *State, n *Node) (backend.Node, error) {
	cfg, err := netConf(st)
	if err != nil {
		return backend.Node{}, err
	}
	peers := make([]lease.Lease, len(st.Nodes))
	for i := range st.Nodes {
		peers[i] = nodeLease(st, &st.Nodes[i])
	}
	ip := netip.MustParseAddr(n.IP)
	u := backend.Underlay{Dev: nodeUplink, IP: ip, MTU: underlayMTU, Nets: []netip.Prefix{netip.PrefixFrom(UnderlayGateway, 24).Masked()}}
	if n.IPv6 != "" {
		u.IPv6 = netip.MustParseAddr(n.IPv6)
		u.Nets6 = []netip.Prefix{netip.PrefixFrom(UnderlayGatewayV6, underlayV6Bits).Masked()}
	}
	return backend.NodeOf(nodeLease(st, n), peers, cfg, u), nil
}

// nodeLease is node n's lease, as its agent (or, static, the lab) publishes
// it; in a lab with IPv6 it has the IPv6 half (subnet, address, VTEP MAC).
func nodeLease(st *State, n *Node) lease.Lease {
	l := lease.Lease{Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr(n.IP), BackendType: st.Backend, Node: n.Name,
	}}
	if n.Subnet != "" {
		l.Subnet = netip.MustParsePrefix(n.Subnet)
	}
	if n.VtepMAC != "" {
		l.Attrs.BackendData = &lease.BackendData{VtepMAC: n.VtepMAC}
	}
	if n.IPv6Subnet != "" {
		l.IPv6Subnet = netip.MustParsePrefix(n.IPv6Subnet)
		l.Attrs.PublicIPv6 = netip.MustParseAddr(n.IPv6)
	}
	if n.VtepMACv6 != "" {
		l.Attrs.BackendV6Data = &lease.BackendData{VtepMAC: n.VtepMACv6}
	}
	return l
}

// adoptLeaseMACs records the VTEP MACs of each family that node n's agent
// published in its lease l (vxlan; agent mode).
func (n *Node) adoptLeaseMACs(l lease.Lease) {
	if l.Attrs.BackendData != nil && l.Attrs.BackendData.VtepMAC != "" {
		n.VtepMAC = l.Attrs.BackendData.VtepMAC
	}
	if l.Attrs.BackendV6Data != nil && l.Attrs.BackendV6Data.VtepMAC != "" {
		n.VtepMACv6 = l.Attrs.BackendV6Data.VtepMAC
	}
}

// peerSubnets are peer p's pod subnets, IPv4 first (one per family the lab
// runs).
func peerSubnets(p *Node) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{p.Subnet, p.IPv6Subnet} {
		if s != "" {
			out = append(out, netip.MustParsePrefix(s).Masked())
		}
	}
	return out
}

// peerState asks backend.Compute (the agent's own decision) what node n
// needs for peer p, and returns it in netlink's form with n's link indexes:
// one peerObjects per family of the lab, IPv4 first.
func peerState(h *netlink.Handle, st *State, n, p *Node) ([]peerObjects, error) {
	node, err := labNode(st, n)
	if err != nil {
		return nil, err
	}
	want, err := backend.Compute(node)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	index := func(dev string) (int, error) {
		l, err := h.LinkByName(dev)
		if err != nil {
			return 0, fmt.Errorf("node %s: %w", n.Name, err)
		}
		return l.Attrs().Index, nil
	}
	var out []peerObjects
	for _, subnet := range peerSubnets(p) {
		var o peerObjects
		for _, r := range want.Routes {
			if r.Dst != subnet {
				continue
			}
			idx, err := index(r.Dev)
			if err != nil {
				return nil, err
			}
			o.route = &netlink.Route{LinkIndex: idx, Dst: prefixNet(r.Dst), Gw: net.IP(r.Gateway.AsSlice())}
			if r.Onlink {
				o.route.Flags = int(netlink.FLAG_ONLINK)
			}
		}
		if o.route == nil {
			return nil, fmt.Errorf("node %s: the backend programs no route to peer %s (%s)", n.Name, p.Name, subnet)
		}
		family := unix.AF_INET
		if subnet.Addr().Is6() {
			family = unix.AF_INET6
		}
		for _, nb := range want.Neighbors {
			if nb.IP != subnet.Addr() {
				continue
			}
			idx, err := index(nb.Dev)
			if err != nil {
				return nil, err
			}
			mac, _ := net.ParseMAC(nb.MAC)
			o.neigh = &netlink.Neigh{LinkIndex: idx, Family: family, State: netlink.NUD_PERMANENT, IP: net.IP(nb.IP.AsSlice()), HardwareAddr: mac}
			for _, f := range want.FDB {
				if strings.EqualFold(f.MAC, nb.MAC) && f.Dev == nb.Dev {
					o.fdb = &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
						IP: net.IP(f.Dst.AsSlice()), HardwareAddr: mac}
				}
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// programPeer makes node n's routes, neighbours and FDB entries for peer p
// (each family) what they should be (replacing whatever is there), so it
// serves both Up and Fix.
func programPeer(st *State, n, p *Node) error {
	return withHandle(n.Namespace, func(h *netlink.Handle) error {
		objs, err := peerState(h, st, n, p)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.neigh != nil {
				if err := h.NeighSet(o.neigh); err != nil {
					return fmt.Errorf("node %s: neighbour %s lladdr %s: %w", n.Name, o.neigh.IP, o.neigh.HardwareAddr, err)
				}
			}
			if o.fdb != nil {
				if err := h.NeighSet(o.fdb); err != nil {
					return fmt.Errorf("node %s: fdb %s dst %s: %w", n.Name, o.fdb.HardwareAddr, o.fdb.IP, err)
				}
			}
			if err := h.RouteReplace(o.route); err != nil {
				return fmt.Errorf("node %s: route %s via %s: %w", n.Name, o.route.Dst, o.route.Gw, err)
			}
		}
		return nil
	})
}

// ignoreMissing treats "no such entry" as success, for idempotent deletes.
func ignoreMissing(err error) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// writeNodeFiles writes node n's subnet file under its root.
func writeNodeFiles(st *State, n *Node) error {
	if st.HasIPv6() {
		return subnetfile.Write(n.Root+subnetfile.TwillPath, nodeFileInfo(st, n))
	}
	return subnetfile.Write(n.Root+subnetfile.TwillPath, subnetfile.Info{
		Network: ClusterCIDR,
		Subnet:  subnetfile.Gateway(netip.MustParsePrefix(n.Subnet)),
		MTU:     PodMTU(st.Backend),
		IPMasq:  true,
		Backend: st.Backend,
		// As the agent writes it (it rewrites this seed file).
		DirectRouting: st.DirectRouting,
	})
}

// writeLeases publishes every node's lease to etcd, as the agents would.
func writeLeases(ctx context.Context, st *State) error {
	c, err := etcdClient(st)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if err := leaseetcd.Put(ctx, c, lease.DefaultPrefix, nodeLease(st, n), 0); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

package backend

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
)

// DeviceName is the name of twill's vxlan device for a VNI: "twill.1".
func DeviceName(vni int) string { return fmt.Sprintf("twill.%d", vni) }

// DeviceNameV6 is the name of twill's IPv6 vxlan device for a VNI:
// "twill-v6.1" (a device of its own, as Flannel's "flannel-v6.1": its
// outer packets are IPv6).
func DeviceNameV6(vni int) string { return fmt.Sprintf("twill-v6.%d", vni) }

// family is one address family's share of a Node: what Compute programs
// for it, read from the Node in one place.
type family struct {
	v6         bool
	network    netip.Prefix
	self       netip.Prefix
	underlayIP netip.Addr
	nets       []netip.Prefix
	dev        string
}

// families returns the families the node's config runs, IPv4 first. A
// config without families (not from netconf.Parse) is IPv4.
func families(n Node, own Ownership) []family {
	cfg := n.Config
	var out []family
	if cfg.EnableIPv4() || !cfg.EnableIPv6() {
		out = append(out, family{network: cfg.Network, self: n.Self.Subnet, underlayIP: n.UnderlayIP, nets: n.UnderlayNets, dev: own.VxlanDev})
	}
	if cfg.EnableIPv6() {
		out = append(out, family{v6: true, network: cfg.IPv6Network, self: n.Self.IPv6Subnet, underlayIP: n.UnderlayIPv6, nets: n.UnderlayNets6, dev: own.VxlanDevV6})
	}
	return out
}

// subnet is the lease's subnet of the family.
func (f family) subnet(l lease.Lease) netip.Prefix {
	if f.v6 {
		return l.IPv6Subnet
	}
	return l.Subnet
}

// VtepMAC is the MAC of this node's vxlan device, derived from its underlay
// address so that it survives restarts and device re-creation: peers keep
// pointing at the right MAC without waiting for a new lease. The address is
// locally administered and unicast; for IPv4 it reads 0e:74:<the 4 bytes of
// the address>. The agent publishes it as the lease's VtepMAC.
func VtepMAC(underlayIP netip.Addr) string {
	var mac net.HardwareAddr
	if underlayIP.Is4() {
		b := underlayIP.As4()
		mac = net.HardwareAddr{0x0e, 0x74, b[0], b[1], b[2], b[3]}
	} else {
		sum := sha256.Sum256([]byte("twill-vtep/" + underlayIP.String()))
		mac = net.HardwareAddr(sum[:6])
		mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
	}
	return mac.String()
}

// Compute returns the kernel state the node's backend wants. It is pure.
//
// An invalid Node (no underlay device or address, self subnet outside the
// network, unknown backend) is an error and the returned Desired is empty.
// Peers that cannot be programmed (host-gw peer off this node's L2 segment,
// vxlan peer without a valid VtepMAC, subnet outside the network) are
// skipped: the Desired state for every other peer is returned together with
// a PeerErrors error naming each skipped peer. Use errors.As to tell the two
// apart.
func Compute(n Node) (Desired, error) {
	cfg := n.Config
	typ := cfg.Backend.Type
	if typ == "" {
		typ = netconf.BackendVXLAN
	}
	own := ownership(n)
	fams := families(n, own)
	if err := checkNode(n, typ, fams); err != nil {
		return Desired{}, err
	}
	d := Desired{
		Backend:   typ,
		Links:     []LinkSpec{},
		Addrs:     []nodestate.Addr{},
		Routes:    []nodestate.Route{},
		Neighbors: []nodestate.Neighbor{},
		FDB:       []nodestate.FDBEntry{},
		Own:       own,
		MTU:       PodMTU(cfg, n.UnderlayMTU),
	}
	var perr PeerErrors
	peers := sortedPeers(n.Peers, n.Self)
	for _, f := range fams {
		computeFamily(&d, n, f, typ, peers, &perr)
	}
	if len(perr) > 0 {
		return d, perr
	}
	return d, nil
}

// ownership is the Ownership of a node Compute programs.
func ownership(n Node) Ownership {
	cfg := n.Config
	own := Ownership{Network: cfg.Network.Masked(), Subnet: n.Self.Subnet.Masked(), VxlanDev: n.VxlanDev, UnderlayDev: n.UnderlayDev}
	if own.VxlanDev == "" {
		own.VxlanDev = DeviceName(vni(cfg))
	}
	if cfg.EnableIPv6() {
		own.IPv6Network, own.IPv6Subnet, own.VxlanDevV6 = cfg.IPv6Network.Masked(), n.Self.IPv6Subnet.Masked(), n.VxlanDevV6
		if own.VxlanDevV6 == "" {
			own.VxlanDevV6 = DeviceNameV6(vni(cfg))
		}
	}
	return own
}

// computeFamily adds family f's devices, addresses, routes, neighbours and
// FDB entries to d.
func computeFamily(d *Desired, n Node, f family, typ string, peers []lease.Lease, perr *PeerErrors) {
	cfg := n.Config
	self := f.self.Masked()
	switch typ {
	case netconf.BackendHostGW:
		for _, p := range peers {
			pip, err := peerIP(p, f.v6)
			if err == nil && !onSegment(pip, f.nets) {
				err = peerErr(PeerOffSegment, "its underlay address %s is not on this node's L2 segment (%s): host-gw needs all nodes on one L2 segment; use the vxlan backend", pip, prefixList(f.nets))
			}
			if err == nil {
				err = inNetwork(f.subnet(p), f.network)
			}
			if err != nil {
				*perr = append(*perr, peerError(p, pip, f.subnet(p), err))
				continue
			}
			d.Routes = append(d.Routes, underlayRoute(f.subnet(p).Masked(), pip, n.UnderlayDev))
		}
	case netconf.BackendVXLAN:
		dev := f.dev
		// Each device carries what fits its own encapsulation (the IPv4
		// one underlay - 50, as on an IPv4-only node); the pods use the
		// least of them (d.MTU).
		mtu := cfg.Backend.MTU
		if mtu == 0 {
			mtu = n.UnderlayMTU - VxlanOverhead
			if f.v6 {
				mtu = n.UnderlayMTU - VxlanOverheadV6
			}
		}
		d.Links = append(d.Links, LinkSpec{
			Name: dev, Kind: "vxlan", VNI: vni(cfg), Port: port(cfg),
			Local: f.underlayIP, Dev: n.UnderlayDev, MTU: mtu, MAC: VtepMAC(f.underlayIP),
		})
		d.Addrs = append(d.Addrs, nodestate.Addr{Link: dev, Prefix: netip.PrefixFrom(self.Addr(), self.Addr().BitLen())})
		for _, p := range peers {
			pip, err := peerIP(p, f.v6)
			if err == nil {
				err = inNetwork(f.subnet(p), f.network)
			}
			if err != nil {
				*perr = append(*perr, peerError(p, pip, f.subnet(p), err))
				continue
			}
			sub := f.subnet(p).Masked()
			if cfg.Backend.DirectRouting && onSegment(pip, f.nets) {
				d.Routes = append(d.Routes, underlayRoute(sub, pip, n.UnderlayDev))
				continue
			}
			mac, err := peerMAC(p, f.v6)
			if err != nil {
				*perr = append(*perr, peerError(p, pip, f.subnet(p), err))
				continue
			}
			d.Routes = append(d.Routes, nodestate.Route{Table: nodestate.TableMain, Type: "unicast", Dst: sub, Gateway: sub.Addr(), Dev: dev, Onlink: true, Metric: routeMetric(sub)})
			d.Neighbors = append(d.Neighbors, nodestate.Neighbor{Dev: dev, IP: sub.Addr(), MAC: mac, State: "permanent"})
			d.FDB = append(d.FDB, nodestate.FDBEntry{Dev: dev, MAC: mac, Dst: pip, State: "permanent", Self: true})
		}
	}
}

func checkNode(n Node, typ string, fams []family) error {
	if typ != netconf.BackendVXLAN && typ != netconf.BackendHostGW {
		return fmt.Errorf("backend: type %q: want %q or %q", typ, netconf.BackendVXLAN, netconf.BackendHostGW)
	}
	for _, f := range fams {
		key, flag, fam := "Network", "--public-ip", "IPv4"
		if f.v6 {
			key, flag, fam = "IPv6Network", "--public-ipv6", "IPv6"
		}
		switch {
		case !f.network.IsValid() || f.network.Addr().Is4() == f.v6:
			return fmt.Errorf("backend: network %v: want an %s prefix (net-conf.json %s)", f.network, fam, key)
		case !f.self.IsValid() || !f.network.Contains(f.self.Addr()) || f.self.Bits() < f.network.Bits():
			if f.v6 {
				return fmt.Errorf("backend: own IPv6 subnet %v is not inside network %s (lease and config disagree)", f.self, f.network)
			}
			return fmt.Errorf("backend: own subnet %v is not inside network %s (lease and config disagree)", f.self, f.network)
		case n.UnderlayDev == "":
			return errors.New("backend: no underlay device (pass --iface)")
		case !f.underlayIP.IsValid() || f.underlayIP.Is4() == f.v6 || f.underlayIP.Is4In6():
			return fmt.Errorf("backend: underlay address %v: want an %s address (pass %s)", f.underlayIP, fam, flag)
		}
	}
	switch {
	case n.UnderlayMTU <= 0 && !(typ == netconf.BackendVXLAN && n.Config.Backend.MTU > 0):
		return fmt.Errorf("backend: underlay MTU %d of %s: want > 0", n.UnderlayMTU, n.UnderlayDev)
	}
	if typ == netconf.BackendVXLAN {
		if mtu := PodMTU(n.Config, n.UnderlayMTU); mtu < 576 {
			return fmt.Errorf("backend: vxlan MTU %d is below 576 (underlay %s MTU %d; net-conf.json Backend.MTU %d)", mtu, n.UnderlayDev, n.UnderlayMTU, n.Config.Backend.MTU)
		}
	}
	return nil
}

func vni(cfg netconf.Config) int {
	if cfg.Backend.VNI == 0 {
		return 1
	}
	return cfg.Backend.VNI
}

func port(cfg netconf.Config) int {
	if cfg.Backend.Port == 0 {
		return 8472
	}
	return cfg.Backend.Port
}

// sortedPeers drops self (the lease with self's subnet of either family)
// and orders peers by subnet, so that Desired is deterministic whatever
// order the store listed them in.
func sortedPeers(all []lease.Lease, self lease.Lease) []lease.Lease {
	out := make([]lease.Lease, 0, len(all))
	for _, p := range all {
		if (self.Subnet.IsValid() && p.Subnet.Masked() == self.Subnet.Masked()) ||
			(self.IPv6Subnet.IsValid() && p.IPv6Subnet.Masked() == self.IPv6Subnet.Masked()) {
			continue
		}
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool { return lease.BySubnet(out[i], out[j]) < 0 })
	return out
}

// peerIP is the peer's underlay address of the family.
func peerIP(p lease.Lease, v6 bool) (netip.Addr, error) {
	if v6 {
		a := p.Attrs.PublicIPv6
		if !a.Is6() || a.Is4In6() {
			return a, peerErr(PeerBadAddress, "PublicIPv6 %q is not an IPv6 address", a)
		}
		return a, nil
	}
	a := p.Attrs.PublicIP
	if !a.Is4() {
		return a, peerErr(PeerBadAddress, "PublicIP %q is not an IPv4 address", a)
	}
	return a, nil
}

// peerMAC is the peer's VTEP MAC of the family.
func peerMAC(p lease.Lease, v6 bool) (string, error) {
	bd, key := p.Attrs.BackendData, "VtepMAC"
	if v6 {
		bd, key = p.Attrs.BackendV6Data, "BackendV6Data.VtepMAC"
	}
	if bd == nil || bd.VtepMAC == "" {
		return "", fmt.Errorf("lease has no %s (BackendType %q): is the peer running the vxlan backend?", key, p.Attrs.BackendType)
	}
	mac, err := net.ParseMAC(bd.VtepMAC)
	if err != nil || len(mac) != 6 {
		return "", peerErr(PeerNoVtepMAC, "%s %q is not an Ethernet MAC", key, bd.VtepMAC)
	}
	return mac.String(), nil
}

func inNetwork(sn, network netip.Prefix) error {
	if !sn.IsValid() || !network.Contains(sn.Addr()) || sn.Bits() < network.Bits() {
		return peerErr(PeerOutsideNetwork, "subnet %v is not inside network %s", sn, network)
	}
	return nil
}

// causedError is a peer problem with its Cause (a Peer* constant).
type causedError struct {
	cause string
	msg   string
}

func (e causedError) Error() string { return e.msg }

func peerErr(cause, format string, args ...any) error {
	return causedError{cause, fmt.Sprintf(format, args...)}
}

func peerError(p lease.Lease, ip netip.Addr, subnet netip.Prefix, err error) PeerError {
	pe := PeerError{Node: p.Attrs.Node, PublicIP: ip, Subnet: subnet, Reason: err.Error()}
	var c causedError
	if errors.As(err, &c) {
		pe.Cause = c.cause
	}
	return pe
}

// PodMTU is the MTU pods (and the vxlan devices) must use with cfg's
// backend on an underlay of underlayMTU: the configured Backend.MTU, else
// the underlay's MTU less VxlanOverhead for vxlan (less VxlanOverheadV6
// when the cluster runs IPv6: its outer packets are IPv6, and a pod has one
// MTU for both families), or the underlay's MTU for host-gw.
func PodMTU(cfg netconf.Config, underlayMTU int) int {
	if cfg.Backend.Type == netconf.BackendHostGW {
		return underlayMTU
	}
	if cfg.Backend.MTU != 0 {
		return cfg.Backend.MTU
	}
	if cfg.EnableIPv6() {
		return underlayMTU - VxlanOverheadV6
	}
	return underlayMTU - VxlanOverhead
}

func onSegment(ip netip.Addr, nets []netip.Prefix) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func prefixList(nets []netip.Prefix) string {
	if len(nets) == 0 {
		return "none known"
	}
	s := ""
	for i, n := range nets {
		if i > 0 {
			s += ", "
		}
		s += n.Masked().String()
	}
	return s
}

func underlayRoute(dst netip.Prefix, via netip.Addr, dev string) nodestate.Route {
	return nodestate.Route{Table: nodestate.TableMain, Type: "unicast", Dst: dst, Gateway: via, Dev: dev, Metric: routeMetric(dst)}
}

// routeMetric is the metric of twill's route to dst: 0 for IPv4, and for
// IPv6 1024, the metric the kernel gives an IPv6 route added without one
// (so the route it reports back is the route desired).
func routeMetric(dst netip.Prefix) int {
	if dst.Addr().Is6() {
		return 1024
	}
	return 0
}

// OwnershipFor is the Ownership of a node whose lease is not at hand (for
// `twill uninstall`): subnet is the node's own pod subnet from its subnet
// file (may be invalid when unknown).
func OwnershipFor(cfg netconf.Config, subnet netip.Prefix, underlayDev string) Ownership {
	// Uninstall removes every twill-v6.<n> device, IPv6 configured or not.
	own := Ownership{Network: cfg.Network.Masked(), Subnet: subnet.Masked(), VxlanDev: DeviceName(vni(cfg)), UnderlayDev: underlayDev,
		VxlanDevV6: DeviceNameV6(vni(cfg))}
	if cfg.EnableIPv6() {
		own.IPv6Network = cfg.IPv6Network.Masked()
	}
	return own
}

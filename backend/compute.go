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
	if err := checkNode(n, typ); err != nil {
		return Desired{}, err
	}
	self := n.Self.Subnet.Masked()
	d := Desired{
		Backend:   typ,
		Links:     []LinkSpec{},
		Addrs:     []nodestate.Addr{},
		Routes:    []nodestate.Route{},
		Neighbors: []nodestate.Neighbor{},
		FDB:       []nodestate.FDBEntry{},
		Own:       Ownership{Network: cfg.Network.Masked(), Subnet: self, VxlanDev: n.VxlanDev, UnderlayDev: n.UnderlayDev},
	}
	if d.Own.VxlanDev == "" {
		d.Own.VxlanDev = DeviceName(vni(cfg))
	}
	var perr PeerErrors
	peers := sortedPeers(n.Peers, self)

	switch typ {
	case netconf.BackendHostGW:
		d.MTU = PodMTU(cfg, n.UnderlayMTU)
		for _, p := range peers {
			pip, err := peerIP(p)
			if err == nil && !onSegment(pip, n.UnderlayNets) {
				err = peerErr(PeerOffSegment, "its underlay address %s is not on this node's L2 segment (%s): host-gw needs all nodes on one L2 segment; use the vxlan backend", pip, prefixList(n.UnderlayNets))
			}
			if err == nil {
				err = inNetwork(p, cfg.Network)
			}
			if err != nil {
				perr = append(perr, peerError(p, pip, err))
				continue
			}
			d.Routes = append(d.Routes, underlayRoute(p.Subnet.Masked(), pip, n.UnderlayDev))
		}
	case netconf.BackendVXLAN:
		mtu := PodMTU(cfg, n.UnderlayMTU)
		d.MTU = mtu
		dev := d.Own.VxlanDev
		d.Links = append(d.Links, LinkSpec{
			Name: dev, Kind: "vxlan", VNI: vni(cfg), Port: port(cfg),
			Local: n.UnderlayIP, Dev: n.UnderlayDev, MTU: mtu, MAC: VtepMAC(n.UnderlayIP),
		})
		d.Addrs = append(d.Addrs, nodestate.Addr{Link: dev, Prefix: netip.PrefixFrom(self.Addr(), self.Addr().BitLen())})
		for _, p := range peers {
			pip, err := peerIP(p)
			if err == nil {
				err = inNetwork(p, cfg.Network)
			}
			if err != nil {
				perr = append(perr, peerError(p, pip, err))
				continue
			}
			sub := p.Subnet.Masked()
			if cfg.Backend.DirectRouting && onSegment(pip, n.UnderlayNets) {
				d.Routes = append(d.Routes, underlayRoute(sub, pip, n.UnderlayDev))
				continue
			}
			mac, err := peerMAC(p)
			if err != nil {
				perr = append(perr, peerError(p, pip, err))
				continue
			}
			d.Routes = append(d.Routes, nodestate.Route{Table: nodestate.TableMain, Type: "unicast", Dst: sub, Gateway: sub.Addr(), Dev: dev, Onlink: true})
			d.Neighbors = append(d.Neighbors, nodestate.Neighbor{Dev: dev, IP: sub.Addr(), MAC: mac, State: "permanent"})
			d.FDB = append(d.FDB, nodestate.FDBEntry{Dev: dev, MAC: mac, Dst: pip, State: "permanent", Self: true})
		}
	}
	if len(perr) > 0 {
		return d, perr
	}
	return d, nil
}

func checkNode(n Node, typ string) error {
	switch {
	case typ != netconf.BackendVXLAN && typ != netconf.BackendHostGW:
		return fmt.Errorf("backend: type %q: want %q or %q", typ, netconf.BackendVXLAN, netconf.BackendHostGW)
	case !n.Config.Network.IsValid() || !n.Config.Network.Addr().Is4():
		return fmt.Errorf("backend: network %v: want an IPv4 prefix (net-conf.json Network)", n.Config.Network)
	case !n.Self.Subnet.IsValid() || !n.Config.Network.Contains(n.Self.Subnet.Addr()) || n.Self.Subnet.Bits() < n.Config.Network.Bits():
		return fmt.Errorf("backend: own subnet %v is not inside network %s (lease and config disagree)", n.Self.Subnet, n.Config.Network)
	case n.UnderlayDev == "":
		return errors.New("backend: no underlay device (pass --iface)")
	case !n.UnderlayIP.Is4():
		return fmt.Errorf("backend: underlay address %v: want an IPv4 address (pass --public-ip)", n.UnderlayIP)
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

// sortedPeers drops self and orders peers by subnet, so that Desired is
// deterministic whatever order the store listed them in.
func sortedPeers(all []lease.Lease, self netip.Prefix) []lease.Lease {
	out := make([]lease.Lease, 0, len(all))
	for _, p := range all {
		if p.Subnet.Masked() == self {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subnet.Addr().Less(out[j].Subnet.Addr()) })
	return out
}

func peerIP(p lease.Lease) (netip.Addr, error) {
	a := p.Attrs.PublicIP
	if !a.Is4() {
		return a, peerErr(PeerBadAddress, "PublicIP %q is not an IPv4 address", a)
	}
	return a, nil
}

func peerMAC(p lease.Lease) (string, error) {
	if p.Attrs.BackendData == nil || p.Attrs.BackendData.VtepMAC == "" {
		return "", fmt.Errorf("lease has no VtepMAC (BackendType %q): is the peer running the vxlan backend?", p.Attrs.BackendType)
	}
	mac, err := net.ParseMAC(p.Attrs.BackendData.VtepMAC)
	if err != nil || len(mac) != 6 {
		return "", peerErr(PeerNoVtepMAC, "VtepMAC %q is not an Ethernet MAC", p.Attrs.BackendData.VtepMAC)
	}
	return mac.String(), nil
}

func inNetwork(p lease.Lease, network netip.Prefix) error {
	if !p.Subnet.IsValid() || !network.Contains(p.Subnet.Addr()) || p.Subnet.Bits() < network.Bits() {
		return peerErr(PeerOutsideNetwork, "subnet %v is not inside network %s", p.Subnet, network)
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

func peerError(p lease.Lease, ip netip.Addr, err error) PeerError {
	pe := PeerError{Node: p.Attrs.Node, PublicIP: ip, Subnet: p.Subnet, Reason: err.Error()}
	var c causedError
	if errors.As(err, &c) {
		pe.Cause = c.cause
	}
	return pe
}

// PodMTU is the MTU pods (and the vxlan device) must use with cfg's backend
// on an underlay of underlayMTU: the configured Backend.MTU, else the
// underlay's MTU less VxlanOverhead for vxlan, or the underlay's MTU for
// host-gw.
func PodMTU(cfg netconf.Config, underlayMTU int) int {
	if cfg.Backend.Type == netconf.BackendHostGW {
		return underlayMTU
	}
	if cfg.Backend.MTU != 0 {
		return cfg.Backend.MTU
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
	return nodestate.Route{Table: nodestate.TableMain, Type: "unicast", Dst: dst, Gateway: via, Dev: dev}
}

// OwnershipFor is the Ownership of a node whose lease is not at hand (for
// `twill uninstall`): subnet is the node's own pod subnet from its subnet
// file (may be invalid when unknown).
func OwnershipFor(cfg netconf.Config, subnet netip.Prefix, underlayDev string) Ownership {
	return Ownership{Network: cfg.Network.Masked(), Subnet: subnet.Masked(), VxlanDev: DeviceName(vni(cfg)), UnderlayDev: underlayDev}
}

package perf

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/lease"
)

// FakePeerUnderlay is where fake peers' underlay addresses come from. No
// packet is ever sent to them: the agent only programs routes, neighbours
// and FDB entries pointing at them.
var FakePeerUnderlay = netip.MustParsePrefix("172.16.0.0/12")

// FakePeers returns n vxlan leases of nodes that do not exist, as a real
// node of the cluster would see them in etcd: consecutive subnets of
// subnetLen bits in network starting at from, each with its own underlay
// address in FakePeerUnderlay and the VTEP MAC twill derives from it.
// Subnets in skip (the real nodes' own) are left out. It fails when the
// network has too few subnets or the underlay range too few addresses.
func FakePeers(n int, network netip.Prefix, subnetLen int, from netip.Addr, skip []netip.Prefix) ([]lease.Lease, error) {
	if !network.Addr().Is4() || subnetLen < network.Bits() || subnetLen > 30 {
		return nil, fmt.Errorf("fake peers: network %s with subnets of /%d: want IPv4 and a subnet length between %d and 30", network, subnetLen, network.Bits())
	}
	if n >= 1<<(32-FakePeerUnderlay.Bits())-2 {
		return nil, fmt.Errorf("fake peers: %d is more than %s has addresses", n, FakePeerUnderlay)
	}
	size := uint32(1) << (32 - subnetLen)
	cur := u32(netip.PrefixFrom(from, subnetLen).Masked().Addr())
	ubase := u32(FakePeerUnderlay.Addr())
	out := make([]lease.Lease, 0, n)
	for len(out) < n {
		sub := netip.PrefixFrom(addr(cur), subnetLen)
		if !network.Contains(sub.Addr()) {
			return nil, fmt.Errorf("fake peers: network %s ran out of /%d subnets after %d (starting at %s)", network, subnetLen, len(out), from)
		}
		if cur+size < cur {
			return nil, fmt.Errorf("fake peers: IPv4 space ran out after %d subnets", len(out))
		}
		cur += size
		if overlapsAny(sub, skip) {
			continue
		}
		ip := addr(ubase + uint32(len(out)) + 1)
		out = append(out, lease.Lease{Subnet: sub, Attrs: lease.Attrs{
			PublicIP:    ip,
			BackendType: "vxlan",
			BackendData: &lease.BackendData{VtepMAC: backend.VtepMAC(ip)},
			Node:        fmt.Sprintf("fake-%05d", len(out)+1),
		}})
	}
	return out, nil
}

func overlapsAny(p netip.Prefix, set []netip.Prefix) bool {
	for _, s := range set {
		if s.Overlaps(p) {
			return true
		}
	}
	return false
}

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

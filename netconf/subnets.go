package netconf

import (
	"encoding/binary"
	"fmt"
	"iter"
	"net/netip"
)

// familyKeys names one family's keys in net-conf.json and its limits.
type familyKeys struct {
	family                 Family
	network, len, min, max string
	defaultLen, maxLen     int
}

var (
	v4Keys = familyKeys{IPv4, "Network", "SubnetLen", "SubnetMin", "SubnetMax", DefaultSubnetLen, MaxSubnetLen}
	v6Keys = familyKeys{IPv6, "IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax", DefaultIPv6SubnetLen, MaxIPv6SubnetLen}
)

// pool defaults and checks one family's SubnetLen, SubnetMin and SubnetMax
// against its valid network, as Flannel does: the default length gives each
// node a /24 (IPv6: a /64) when the network holds at least four of them,
// else the network cut in four; SubnetMin defaults to the second subnet,
// SubnetMax to the last.
func (p *parser) pool(k familyKeys, pl *Pool, haveLen bool) {
	nbits, abits := pl.Network.Bits(), pl.Network.Addr().BitLen()
	switch {
	case !haveLen && nbits <= k.defaultLen-2:
		pl.SubnetLen = k.defaultLen
	case !haveLen:
		pl.SubnetLen = nbits + 2 // small network: four subnets, as Flannel
	case pl.SubnetLen < nbits+2 || pl.SubnetLen > k.maxLen:
		p.errf("%s %d: must be between %d and %d (at least four node subnets in %s %s, each with room for a gateway and a pod)",
			k.len, pl.SubnetLen, nbits+2, k.maxLen, k.network, pl.Network)
		return
	}
	step := u128{lo: 1}.shl(uint(abits - pl.SubnetLen))
	first := toU128(pl.Network.Addr())
	last := first.add(u128{lo: 1}.shl(uint(abits - nbits))).sub(step)
	v4 := k.family == IPv4
	minSet, maxSet := pl.SubnetMin.IsValid(), pl.SubnetMax.IsValid()
	if !minSet {
		pl.SubnetMin = first.add(step).addr(v4)
	}
	if !maxSet {
		pl.SubnetMax = last.addr(v4)
	}
	ok := true
	for _, b := range []struct {
		key string
		a   netip.Addr
		set bool
	}{{k.min, pl.SubnetMin, minSet}, {k.max, pl.SubnetMax, maxSet}} {
		if !b.set {
			continue
		}
		if !pl.Network.Contains(b.a) {
			p.errf("%s %s: outside %s %s", b.key, b.a, k.network, pl.Network)
			ok = false
		} else if netip.PrefixFrom(b.a, pl.SubnetLen).Masked().Addr() != b.a {
			p.errf("%s %s: not the start of a /%d subnet (%s %d); did you mean %s?",
				b.key, b.a, pl.SubnetLen, k.len, pl.SubnetLen, netip.PrefixFrom(b.a, pl.SubnetLen).Masked().Addr())
			ok = false
		}
	}
	if ok && pl.SubnetMax.Less(pl.SubnetMin) {
		p.errf("%s %s is after %s %s: no subnet can be handed out", k.min, pl.SubnetMin, k.max, pl.SubnetMax)
	}
}

// Subnets yields the IPv4 node subnets that may be handed out, from
// SubnetMin to SubnetMax inclusive, in address order. It yields nothing for
// a Config that did not come from Parse or has IPv4 disabled.
func (c Config) Subnets() iter.Seq[netip.Prefix] { return c.Pool(IPv4).Subnets() }

// SubnetCount is how many subnets Subnets yields.
func (c Config) SubnetCount() int { return c.Pool(IPv4).Count() }

// Allocatable reports whether sn is one of the subnets Subnets yields: an
// IPv4 /SubnetLen subnet, aligned, between SubnetMin and SubnetMax. Use it
// to check a node's previous subnet or a lease found in the store.
func (c Config) Allocatable(sn netip.Prefix) bool { return c.Pool(IPv4).Allocatable(sn) }

// Validate reports whether a pod network (Network or IPv6Network) overlaps
// one of the node's own networks (the prefixes of its addresses): pods
// would then shadow node addresses.
func (c Config) Validate(nodeNets []netip.Prefix) error {
	for _, f := range c.Families() {
		pl, key := c.Pool(f), v4Keys.network
		if f == IPv6 {
			key = v6Keys.network
		}
		for _, n := range nodeNets {
			if n.IsValid() && FamilyOf(n.Addr()) == f && pl.Network.Overlaps(n) {
				return fmt.Errorf("%s %s overlaps the node network %s: pod addresses would shadow node addresses; choose a %s that is not used on the nodes (e.g. %s)",
					key, pl.Network, n.Masked(), key, map[Family]string{IPv4: "10.244.0.0/16", IPv6: "fd00:10:244::/56"}[f])
			}
		}
	}
	return nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// NodeIPAMRange returns c with SubnetMin and SubnetMax widened to every
// subnet of Network. With the Kubernetes store the node subnets are
// kube-controller-manager's (--allocate-node-cidrs): nodeipam hands out
// Network's subnets from the first one (10.244.0.0/24 included), so the
// etcd-era default SubnetMin (the second subnet) would reject a real
// cluster's first node. Flannel's kube subnet manager ignores the two keys
// too. Both families are widened (nodeipam hands out IPv6 subnets the
// same way). A Config that did not come from Parse is returned unchanged.
func (c Config) NodeIPAMRange() Config {
	for _, f := range c.Families() {
		pl := c.Pool(f)
		if !pl.usable() {
			continue
		}
		abits := pl.Network.Addr().BitLen()
		first := toU128(pl.Network.Masked().Addr())
		last := first.add(u128{lo: 1}.shl(uint(abits - pl.Network.Bits()))).sub(pl.step())
		lo, hi := first.addr(f == IPv4), last.addr(f == IPv4)
		if f == IPv6 {
			c.IPv6SubnetMin, c.IPv6SubnetMax = lo, hi
		} else {
			c.SubnetMin, c.SubnetMax = lo, hi
		}
	}
	return c
}

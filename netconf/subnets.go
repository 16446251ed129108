package netconf

import (
	"encoding/binary"
	"fmt"
	"iter"
	"net/netip"
)

// subnets defaults and checks SubnetLen, SubnetMin and SubnetMax against a
// valid Network.
func (p *parser) subnets(c *Config, haveLen bool) {
	nbits := c.Network.Bits()
	switch {
	case !haveLen && nbits <= DefaultSubnetLen-2:
		c.SubnetLen = DefaultSubnetLen
	case !haveLen:
		c.SubnetLen = nbits + 2 // small Network: four subnets, as Flannel
	case c.SubnetLen < nbits+2 || c.SubnetLen > MaxSubnetLen:
		p.errf("SubnetLen %d: must be between %d and %d (at least four node subnets in Network %s, each with room for a gateway and a pod)",
			c.SubnetLen, nbits+2, MaxSubnetLen, c.Network)
		return
	}
	step := uint32(1) << (32 - c.SubnetLen)
	first := u32(c.Network.Addr())
	last := first + uint32(1)<<(32-nbits) - step
	minSet, maxSet := c.SubnetMin.IsValid(), c.SubnetMax.IsValid()
	if !minSet {
		c.SubnetMin = addr(first + step)
	}
	if !maxSet {
		c.SubnetMax = addr(last)
	}
	ok := true
	for _, b := range []struct {
		key string
		a   netip.Addr
		set bool
	}{{"SubnetMin", c.SubnetMin, minSet}, {"SubnetMax", c.SubnetMax, maxSet}} {
		if !b.set {
			continue
		}
		if !c.Network.Contains(b.a) {
			p.errf("%s %s: outside Network %s", b.key, b.a, c.Network)
			ok = false
		} else if u32(b.a)%step != 0 {
			p.errf("%s %s: not the start of a /%d subnet (SubnetLen %d); did you mean %s?",
				b.key, b.a, c.SubnetLen, c.SubnetLen, netip.PrefixFrom(b.a, c.SubnetLen).Masked().Addr())
			ok = false
		}
	}
	if ok && u32(c.SubnetMin) > u32(c.SubnetMax) {
		p.errf("SubnetMin %s is after SubnetMax %s: no subnet can be handed out", c.SubnetMin, c.SubnetMax)
	}
}

// Subnets yields the node subnets that may be handed out, from SubnetMin to
// SubnetMax inclusive, in address order. It yields nothing for a Config that
// did not come from Parse.
func (c Config) Subnets() iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		if !c.usable() {
			return
		}
		step := uint32(1) << (32 - c.SubnetLen)
		lo, hi := u32(c.SubnetMin), u32(c.SubnetMax)
		for a := lo; ; a += step {
			if !yield(netip.PrefixFrom(addr(a), c.SubnetLen)) || hi-a < step {
				return
			}
		}
	}
}

// SubnetCount is how many subnets Subnets yields.
func (c Config) SubnetCount() int {
	if !c.usable() {
		return 0
	}
	return int((u32(c.SubnetMax)-u32(c.SubnetMin))>>(32-c.SubnetLen)) + 1
}

// Allocatable reports whether sn is one of the subnets Subnets yields: an
// IPv4 /SubnetLen subnet, aligned, between SubnetMin and SubnetMax. Use it
// to check a node's previous subnet or a lease found in the store.
func (c Config) Allocatable(sn netip.Prefix) bool {
	if !c.usable() || !sn.IsValid() || !sn.Addr().Is4() || sn.Bits() != c.SubnetLen || sn.Masked() != sn {
		return false
	}
	a := u32(sn.Addr())
	return a >= u32(c.SubnetMin) && a <= u32(c.SubnetMax)
}

// usable reports whether the subnet fields make sense (as after Parse).
func (c Config) usable() bool {
	return c.SubnetLen > 0 && c.SubnetLen <= 32 && c.SubnetMin.Is4() && c.SubnetMax.Is4() &&
		u32(c.SubnetMin) <= u32(c.SubnetMax)
}

// Validate reports whether Network overlaps one of the node's own networks
// (the prefixes of its addresses): pods would then shadow node addresses.
// IPv6 node networks cannot overlap and are skipped.
func (c Config) Validate(nodeNets []netip.Prefix) error {
	for _, n := range nodeNets {
		if n.IsValid() && n.Addr().Is4() && c.Network.Overlaps(n) {
			return fmt.Errorf("Network %s overlaps the node network %s: pod addresses would shadow node addresses; choose a Network that is not used on the nodes (e.g. 10.244.0.0/16)", c.Network, n.Masked())
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
// too. A Config that did not come from Parse is returned unchanged.
func (c Config) NodeIPAMRange() Config {
	if !c.usable() {
		return c
	}
	step := uint32(1) << (32 - c.SubnetLen)
	first := u32(c.Network.Masked().Addr())
	c.SubnetMin = addr(first)
	c.SubnetMax = addr(first + uint32(1)<<(32-c.Network.Bits()) - step)
	return c
}

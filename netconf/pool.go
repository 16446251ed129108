package netconf

import (
	"iter"
	"math"
	"math/bits"
	"net/netip"
	"slices"
)

// Pool is one address family's share of a Config: the family's pod network
// and how it is cut into node subnets. Config.Pool returns it; the
// allocator, the lease validator and the CNI work on pools, so IPv4 and
// IPv6 subnets are decided by the same code.
type Pool struct {
	// Network is the family's pod network (Network or IPv6Network).
	Network netip.Prefix
	// SubnetLen is the prefix length of each node subnet.
	SubnetLen int
	// SubnetMin and SubnetMax bound the subnets handed out (inclusive).
	SubnetMin, SubnetMax netip.Addr
}

// Family is an IP address family of the pod network.
type Family int

// The two families. Their values are the IP version numbers, so they print
// as "4" and "6" in logs.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6".
func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// FamilyOf returns the family of a, IPv4 for an IPv4 (not IPv4-mapped)
// address, else IPv6.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// EnableIPv4 reports whether the cluster gives pods IPv4 addresses (Flannel's
// EnableIPv4 key, true unless set to false).
func (c Config) EnableIPv4() bool { return c.Network.IsValid() }

// EnableIPv6 reports whether the cluster gives pods IPv6 addresses (Flannel's
// EnableIPv6 key with an IPv6Network).
func (c Config) EnableIPv6() bool { return c.IPv6Network.IsValid() }

// Families lists the enabled families, IPv4 first (the order of a
// dual-stack pod's addresses, as Kubernetes lists podCIDRs).
func (c Config) Families() []Family {
	var fs []Family
	if c.EnableIPv4() {
		fs = append(fs, IPv4)
	}
	if c.EnableIPv6() {
		fs = append(fs, IPv6)
	}
	return fs
}

// Pool returns family f's network and subnet bounds; a zero Pool when f is
// not enabled.
func (c Config) Pool(f Family) Pool {
	if f == IPv6 {
		return Pool{Network: c.IPv6Network, SubnetLen: c.IPv6SubnetLen, SubnetMin: c.IPv6SubnetMin, SubnetMax: c.IPv6SubnetMax}
	}
	return Pool{Network: c.Network, SubnetLen: c.SubnetLen, SubnetMin: c.SubnetMin, SubnetMax: c.SubnetMax}
}

// Subnets yields the node subnets that may be handed out, from SubnetMin to
// SubnetMax inclusive, in address order. It yields nothing for a Pool that
// did not come from a parsed Config.
func (p Pool) Subnets() iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		if !p.usable() {
			return
		}
		step := p.step()
		lo, hi := toU128(p.SubnetMin), toU128(p.SubnetMax)
		for a := lo; ; a = a.add(step) {
			if !yield(netip.PrefixFrom(a.addr(p.Network.Addr().Is4()), p.SubnetLen)) || hi.sub(a).cmp(step) < 0 {
				return
			}
		}
	}
}

// Count is how many subnets Subnets yields, saturated at math.MaxInt (an
// IPv6 pool can hold 2^62 subnets and more).
func (p Pool) Count() int {
	if !p.usable() {
		return 0
	}
	n := toU128(p.SubnetMax).sub(toU128(p.SubnetMin)).shr(uint(p.Network.Addr().BitLen() - p.SubnetLen))
	if n.hi != 0 || n.lo >= math.MaxInt {
		return math.MaxInt
	}
	return int(n.lo) + 1
}

// Allocatable reports whether sn is one of the subnets Subnets yields: a
// /SubnetLen subnet of the pool's family, aligned, between SubnetMin and
// SubnetMax.
func (p Pool) Allocatable(sn netip.Prefix) bool {
	if !p.usable() || !sn.IsValid() || sn.Addr().Is4() != p.Network.Addr().Is4() || sn.Addr().Is4In6() ||
		sn.Bits() != p.SubnetLen || sn.Masked() != sn {
		return false
	}
	a := toU128(sn.Addr())
	return a.cmp(toU128(p.SubnetMin)) >= 0 && a.cmp(toU128(p.SubnetMax)) <= 0
}

// Nth returns the n-th subnet of the pool (0 is SubnetMin), and false when
// n is out of range.
func (p Pool) Nth(n uint64) (netip.Prefix, bool) {
	if !p.usable() {
		return netip.Prefix{}, false
	}
	shift := uint(p.Network.Addr().BitLen() - p.SubnetLen)
	if bits.Len64(n) > 128-int(shift) {
		return netip.Prefix{}, false // n << shift overflows 128 bits, hence the pool
	}
	off := u128{lo: n}.shl(shift)
	a := toU128(p.SubnetMin).add(off)
	if a.cmp(toU128(p.SubnetMin)) < 0 || a.cmp(toU128(p.SubnetMax)) > 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a.addr(p.Network.Addr().Is4()), p.SubnetLen), true
}

// Free yields the pool's subnets that overlap none of held, in address
// order (the allocator takes the first). Held prefixes may be of any length
// and of either family (the other family's are ignored); a wide one is
// skipped over in one step, so the first free subnet of even a 2^62-subnet
// IPv6 pool is found in time proportional to len(held).
func (p Pool) Free(held []netip.Prefix) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		if !p.usable() {
			return
		}
		v4 := p.Network.Addr().Is4()
		shift := uint(p.Network.Addr().BitLen() - p.SubnetLen)
		// The held ranges as [lo, hi] of subnet-aligned addresses.
		type span struct{ lo, hi u128 }
		var spans []span
		for _, h := range held {
			if !h.IsValid() || h.Addr().Is4() != v4 || h.Addr().Is4In6() || !h.Overlaps(p.Network) {
				continue
			}
			h = h.Masked()
			if h.Bits() > p.SubnetLen {
				h = netip.PrefixFrom(h.Addr(), p.SubnetLen).Masked()
			}
			lo := toU128(h.Addr())
			hi := lo.add(u128{lo: 1}.shl(uint(h.Addr().BitLen() - h.Bits()))).sub(u128{lo: 1})
			spans = append(spans, span{lo, hi})
		}
		slices.SortFunc(spans, func(a, b span) int { return a.lo.cmp(b.lo) })
		cur, last, step := toU128(p.SubnetMin), toU128(p.SubnetMax), u128{lo: 1}.shl(shift)
		// emit yields the subnets from cur up to (not including) end and
		// SubnetMax; false when done (stopped, or the top of the space).
		emit := func(end u128, bounded bool) bool {
			for (!bounded || cur.cmp(end) < 0) && cur.cmp(last) <= 0 {
				if !yield(netip.PrefixFrom(cur.addr(v4), p.SubnetLen)) {
					return false
				}
				next := cur.add(step)
				if next.cmp(cur) <= 0 {
					return false // the top of the address space
				}
				cur = next
			}
			return true
		}
		for _, sp := range spans {
			if !emit(sp.lo, true) {
				return
			}
			if sp.hi.cmp(cur) >= 0 {
				next := sp.hi.add(u128{lo: 1})
				if next.cmp(cur) <= 0 {
					return // held up to the top of the address space
				}
				cur = next
			}
		}
		emit(u128{}, false)
	}
}

// usable reports whether the fields make sense (as after Parse).
func (p Pool) usable() bool {
	if !p.Network.IsValid() || p.SubnetLen <= 0 || p.SubnetLen > p.Network.Addr().BitLen() {
		return false
	}
	v4 := p.Network.Addr().Is4()
	return p.SubnetMin.IsValid() && p.SubnetMax.IsValid() && p.SubnetMin.Is4() == v4 && p.SubnetMax.Is4() == v4 &&
		!p.SubnetMax.Less(p.SubnetMin)
}

// step is the distance between two subnets.
func (p Pool) step() u128 {
	return u128{lo: 1}.shl(uint(p.Network.Addr().BitLen() - p.SubnetLen))
}

// u128 is an address as a 128-bit number (an IPv4 address in the low 32
// bits), for subnet arithmetic of both families.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		return u128{lo: uint64(u32(a))}
	}
	b := a.As16()
	var v u128
	for i := range 8 {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[8+i])
	}
	return v
}

func (v u128) addr(v4 bool) netip.Addr {
	if v4 {
		return addr(uint32(v.lo))
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(v.hi >> (8 * i))
		b[15-i] = byte(v.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (v u128) add(w u128) u128 {
	lo, c := bits.Add64(v.lo, w.lo, 0)
	hi, _ := bits.Add64(v.hi, w.hi, c)
	return u128{hi, lo}
}

func (v u128) sub(w u128) u128 {
	lo, b := bits.Sub64(v.lo, w.lo, 0)
	hi, _ := bits.Sub64(v.hi, w.hi, b)
	return u128{hi, lo}
}

func (v u128) cmp(w u128) int {
	switch {
	case v.hi != w.hi:
		if v.hi < w.hi {
			return -1
		}
		return 1
	case v.lo < w.lo:
		return -1
	case v.lo > w.lo:
		return 1
	}
	return 0
}

func (v u128) shl(n uint) u128 {
	switch {
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{hi: v.lo << (n - 64)}
	case n == 0:
		return v
	}
	return u128{hi: v.hi<<n | v.lo>>(64-n), lo: v.lo << n}
}

func (v u128) shr(n uint) u128 {
	switch {
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{lo: v.hi >> (n - 64)}
	case n == 0:
		return v
	}
	return u128{hi: v.hi >> n, lo: v.lo>>n | v.hi<<(64-n)}
}

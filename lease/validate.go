package lease

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/twillnet/twill/netconf"
)

// MaxValueSize bounds a lease value read from a store (Flannel's and
// twill's are about 150 bytes). A larger value is rejected unread, so one
// hostile lease cannot fill memory or the logs.
const MaxValueSize = 4096

// Reasons a lease is rejected: the values of the agent's
// twill_peers_rejected{reason} label.
const (
	// ReasonMalformed: the key or value does not decode, or the value is
	// larger than MaxValueSize.
	ReasonMalformed = "malformed"
	// ReasonSubnet: host bits set, outside Network or SubnetMin..SubnetMax,
	// or a prefix length other than SubnetLen; or the lease lacks the
	// subnet of a family the cluster runs (same checks for IPv6 with the
	// IPv6 keys).
	ReasonSubnet = "subnet"
	// ReasonPublicIP: PublicIP not a unicast IPv4 address (unspecified,
	// loopback, multicast, broadcast, link-local), or PublicIPv6 not a
	// routable unicast IPv6 address, for a family the cluster runs; or this
	// node's own address.
	ReasonPublicIP = "public-ip"
	// ReasonVtepMAC: a vxlan lease without a unicast, non-zero VTEP MAC
	// (BackendData; BackendV6Data for IPv6).
	ReasonVtepMAC = "vtep-mac"
	// ReasonBackend: the lease's BackendType is not the cluster's.
	ReasonBackend = "backend"
	// ReasonConflict: the subnet overlaps an older lease's.
	ReasonConflict = "conflict"
)

// Rejected is a lease left out of the peer set, and why.
type Rejected struct {
	// Key names the lease in its store: the etcd key, or "node/<name>".
	Key string
	// Lease is what could be decoded (zero for ReasonMalformed).
	Lease Lease
	// Reason is one of the Reason* constants.
	Reason string
	// Detail says what exactly is wrong, for the log.
	Detail string
}

func (r Rejected) Error() string {
	return fmt.Sprintf("lease %s rejected (%s): %s", r.Key, r.Reason, r.Detail)
}

// Check reports what makes one lease unacceptable in the cluster config
// cfg, on its own (conflicts between leases are Accept's job): nil, or a
// Rejected with its reason. Each family the cluster runs is checked the
// same way (subnet, underlay address, vxlan MAC); the data of a family it
// does not run is ignored.
func Check(cfg netconf.Config, l Lease) *Rejected {
	bad := func(reason, format string, args ...any) *Rejected {
		return &Rejected{Key: l.Name(), Lease: l, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	fams := cfg.Families()
	if len(fams) == 0 {
		fams = []netconf.Family{netconf.IPv4} // a config not from Parse: nothing is allocatable
	}
	for _, f := range fams {
		if r := checkFamily(cfg, f, l, bad); r != nil {
			return r
		}
	}
	if cfg.Backend.Type != "" && l.Attrs.BackendType != cfg.Backend.Type {
		return bad(ReasonBackend, "BackendType %q, the cluster runs %q", l.Attrs.BackendType, cfg.Backend.Type)
	}
	if cfg.Backend.Type == netconf.BackendVXLAN {
		for _, f := range fams {
			key, bd := "VtepMAC", l.Attrs.BackendData
			if f == netconf.IPv6 {
				key, bd = "BackendV6Data.VtepMAC", l.Attrs.BackendV6Data
			}
			if bd == nil || bd.VtepMAC == "" {
				return bad(ReasonVtepMAC, "no %s: is the node running the vxlan backend?", key)
			}
			if err := checkMAC(bd.VtepMAC); err != nil {
				return bad(ReasonVtepMAC, "%s %q: %v", key, bd.VtepMAC, err)
			}
		}
	}
	return nil
}

// checkFamily checks the lease's subnet and underlay address of family f.
func checkFamily(cfg netconf.Config, f netconf.Family, l Lease, bad func(reason, format string, args ...any) *Rejected) *Rejected {
	pl := cfg.Pool(f)
	sn, what, netKey, lenKey, minKey, maxKey := l.Subnet, "subnet", "network", "SubnetLen", "SubnetMin", "SubnetMax"
	if f == netconf.IPv6 {
		sn, what, netKey, lenKey, minKey, maxKey = l.IPv6Subnet, "IPv6 subnet", "IPv6 network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax"
	}
	switch {
	case f == netconf.IPv6 && !sn.IsValid():
		return bad(ReasonSubnet, "no IPv6 subnet, but the cluster runs IPv6 (EnableIPv6): is the node's agent configured for IPv4 only?")
	case !sn.IsValid() || netconf.FamilyOf(sn.Addr()) != f || sn.Addr().Is4In6():
		return bad(ReasonSubnet, "%s %v is not an %s prefix", what, sn, f)
	case sn.Masked() != sn:
		return bad(ReasonSubnet, "%s %s has host bits set (the network address is %s)", what, sn, sn.Masked())
	case !pl.Network.Contains(sn.Addr()) || sn.Bits() < pl.Network.Bits():
		return bad(ReasonSubnet, "%s %s is not inside the %s %s", what, sn, netKey, pl.Network)
	case sn.Bits() != pl.SubnetLen:
		return bad(ReasonSubnet, "%s %s is a /%d, the network config says %s %d", what, sn, sn.Bits(), lenKey, pl.SubnetLen)
	case !pl.Allocatable(sn):
		return bad(ReasonSubnet, "%s %s is outside %s %s .. %s %s", what, sn, minKey, pl.SubnetMin, maxKey, pl.SubnetMax)
	}
	if f == netconf.IPv6 {
		if err := CheckPublicIPv6(l.Attrs.PublicIPv6); err != nil {
			return bad(ReasonPublicIP, "PublicIPv6 %v: %v", l.Attrs.PublicIPv6, err)
		}
		return nil
	}
	if err := CheckPublicIP(l.Attrs.PublicIP); err != nil {
		return bad(ReasonPublicIP, "PublicIP %v: %v", l.Attrs.PublicIP, err)
	}
	return nil
}

// CheckPublicIP says why ip cannot be a node's IPv4 underlay address (its
// lease's PublicIP, the agent's --public-ip); nil when it can.
func CheckPublicIP(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return fmt.Errorf("not set")
	case !ip.Is4():
		return fmt.Errorf("not an IPv4 address")
	}
	if err := notUnicast(ip); err != nil {
		return err
	}
	switch {
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("broadcast address")
	case ip.As4()[0] == 0 || ip.As4()[0] >= 240:
		return fmt.Errorf("reserved address")
	}
	return nil
}

// CheckPublicIPv6 says why ip cannot be a node's IPv6 underlay address (its
// lease's PublicIPv6, the agent's --public-ipv6); nil when it can.
func CheckPublicIPv6(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return fmt.Errorf("not set: the cluster runs IPv6, so every node publishes its IPv6 underlay address")
	case ip.Is4() || ip.Is4In6():
		return fmt.Errorf("not an IPv6 address")
	case ip.Zone() != "":
		return fmt.Errorf("an address with a zone")
	}
	return notUnicast(ip)
}

// notUnicast says why ip, of either family, cannot be reached between
// nodes: unspecified, loopback, multicast or link-local.
func notUnicast(ip netip.Addr) error {
	switch {
	case ip.IsUnspecified():
		return fmt.Errorf("unspecified address")
	case ip.IsLoopback():
		return fmt.Errorf("loopback address")
	case ip.IsMulticast():
		return fmt.Errorf("multicast address")
	case ip.IsLinkLocalUnicast():
		return fmt.Errorf("link-local address (not routable between nodes)")
	}
	return nil
}

// checkMAC says why s cannot be a VTEP's MAC.
func checkMAC(s string) error {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("not an Ethernet MAC")
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("a multicast/broadcast MAC")
	}
	if string(mac) == string(make([]byte, 6)) {
		return fmt.Errorf("the zero MAC")
	}
	return nil
}

// Older orders leases by age as every node sees it alike: by the store's
// creation order (Created), then by subnet, then by node name, then by
// value, so that no two different leases tie.
func Older(a, b Lease) int {
	return cmp.Or(cmp.Compare(a.Created, b.Created), a.Subnet.Addr().Compare(b.Subnet.Addr()),
		cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()), a.IPv6Subnet.Addr().Compare(b.IPv6Subnet.Addr()),
		cmp.Compare(a.IPv6Subnet.Bits(), b.IPv6Subnet.Bits()), cmp.Compare(a.Attrs.Node, b.Attrs.Node),
		strings.Compare(string(a.Encode()), string(b.Encode())))
}

// Accept is the one place that decides which leases of a store are
// acceptable: each lease must pass Check, and of leases whose subnets
// overlap (in either family) the older one (Older) wins and the others are
// rejected with ReasonConflict. The answer depends only on cfg and the leases, never on
// the node asking or the order of the input, so every node computes the
// same set. accepted is sorted by subnet; rejected by key.
func Accept(cfg netconf.Config, leases []Lease) (accepted []Lease, rejected []Rejected) {
	cands := make([]Lease, 0, len(leases))
	for _, l := range leases {
		if r := Check(cfg, l); r != nil {
			rejected = append(rejected, *r)
			continue
		}
		cands = append(cands, l)
	}
	slices.SortFunc(cands, Older)
	// Checked subnets of one family are all of one length and aligned, so
	// two overlap only when equal: one map lookup per lease and family.
	// A family the cluster does not run is not checked, so not compared.
	v4, v6 := cfg.EnableIPv4() || !cfg.EnableIPv6(), cfg.EnableIPv6()
	taken := make(map[netip.Prefix]Lease, len(cands))
	for _, l := range cands {
		var held []netip.Prefix
		if v4 {
			held = append(held, l.Subnet)
		}
		if v6 {
			held = append(held, l.IPv6Subnet)
		}
		conflict := false
		for _, sn := range held {
			if w, ok := taken[sn]; ok {
				rejected = append(rejected, Rejected{Key: l.Name(), Lease: l, Reason: ReasonConflict,
					Detail: fmt.Sprintf("subnet %s overlaps %s of node %s, an older lease", sn, w.Subnets(), w.Attrs.Node)})
				conflict = true
				break
			}
		}
		if conflict {
			continue
		}
		for _, sn := range held {
			taken[sn] = l
		}
		accepted = append(accepted, l)
	}
	slices.SortFunc(accepted, BySubnet)
	slices.SortFunc(rejected, func(a, b Rejected) int { return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Reason, b.Reason)) })
	return accepted, rejected
}

// SameSubnets reports whether two leases hold the same subnets in both
// families (how a node recognises its own lease among the peers: comparing
// the IPv4 subnet alone would match every lease of an IPv6-only cluster).
func SameSubnets(a, b Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet
}

// BySubnet orders leases by IPv4 subnet, then IPv6 subnet (the order of
// Accept's answer and of a store's Event).
func BySubnet(a, b Lease) int {
	return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()),
		a.IPv6Subnet.Addr().Compare(b.IPv6Subnet.Addr()), cmp.Compare(a.IPv6Subnet.Bits(), b.IPv6Subnet.Bits()))
}

// Subnets names the lease's subnets: "10.244.1.0/24",
// "10.244.1.0/24,fd00:10:244:1::/64" or "fd00:10:244:1::/64".
func (l Lease) Subnets() string {
	switch {
	case !l.IPv6Subnet.IsValid():
		return l.Subnet.String()
	case !l.Subnet.IsValid():
		return l.IPv6Subnet.String()
	}
	return l.Subnet.String() + "," + l.IPv6Subnet.String()
}

// Name names a lease in logs: its node, or its subnets when it names none.
func (l Lease) Name() string {
	if l.Attrs.Node != "" {
		return l.Attrs.Node + " " + l.Subnets()
	}
	return l.Subnets()
}

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
	// or a prefix length other than SubnetLen.
	ReasonSubnet = "subnet"
	// ReasonPublicIP: not a unicast IPv4 address (unspecified, loopback,
	// multicast, broadcast, link-local), or this node's own address.
	ReasonPublicIP = "public-ip"
	// ReasonVtepMAC: a vxlan lease without a unicast, non-zero VTEP MAC.
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
// Rejected with its reason.
func Check(cfg netconf.Config, l Lease) *Rejected {
	bad := func(reason, format string, args ...any) *Rejected {
		return &Rejected{Key: l.Name(), Lease: l, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	sn := l.Subnet
	switch {
	case !sn.IsValid() || !sn.Addr().Is4():
		return bad(ReasonSubnet, "subnet %v is not an IPv4 prefix", sn)
	case sn.Masked() != sn:
		return bad(ReasonSubnet, "subnet %s has host bits set (the network address is %s)", sn, sn.Masked())
	case !cfg.Network.Contains(sn.Addr()) || sn.Bits() < cfg.Network.Bits():
		return bad(ReasonSubnet, "subnet %s is not inside the network %s", sn, cfg.Network)
	case sn.Bits() != cfg.SubnetLen:
		return bad(ReasonSubnet, "subnet %s is a /%d, the network config says SubnetLen %d", sn, sn.Bits(), cfg.SubnetLen)
	case !cfg.Allocatable(sn):
		return bad(ReasonSubnet, "subnet %s is outside SubnetMin %s .. SubnetMax %s", sn, cfg.SubnetMin, cfg.SubnetMax)
	}
	if err := checkUnicast(l.Attrs.PublicIP); err != nil {
		return bad(ReasonPublicIP, "PublicIP %v: %v", l.Attrs.PublicIP, err)
	}
	if cfg.Backend.Type != "" && l.Attrs.BackendType != cfg.Backend.Type {
		return bad(ReasonBackend, "BackendType %q, the cluster runs %q", l.Attrs.BackendType, cfg.Backend.Type)
	}
	if cfg.Backend.Type == netconf.BackendVXLAN {
		if l.Attrs.BackendData == nil || l.Attrs.BackendData.VtepMAC == "" {
			return bad(ReasonVtepMAC, "no VtepMAC: is the node running the vxlan backend?")
		}
		if err := checkMAC(l.Attrs.BackendData.VtepMAC); err != nil {
			return bad(ReasonVtepMAC, "VtepMAC %q: %v", l.Attrs.BackendData.VtepMAC, err)
		}
	}
	return nil
}

// checkUnicast says why ip cannot be a node's underlay address.
func checkUnicast(ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return fmt.Errorf("not set")
	case !ip.Is4():
		return fmt.Errorf("not an IPv4 address")
	case ip.IsUnspecified():
		return fmt.Errorf("unspecified address")
	case ip.IsLoopback():
		return fmt.Errorf("loopback address")
	case ip.IsMulticast():
		return fmt.Errorf("multicast address")
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("broadcast address")
	case ip.IsLinkLocalUnicast():
		return fmt.Errorf("link-local address")
	case ip.As4()[0] == 0 || ip.As4()[0] >= 240:
		return fmt.Errorf("reserved address")
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
		cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()), cmp.Compare(a.Attrs.Node, b.Attrs.Node),
		strings.Compare(string(a.Encode()), string(b.Encode())))
}

// Accept is the one place that decides which leases of a store are
// acceptable: each lease must pass Check, and of leases whose subnets
// overlap the older one (Older) wins and the others are rejected with
// ReasonConflict. The answer depends only on cfg and the leases, never on
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
	// Checked subnets are all /SubnetLen and aligned, so two overlap only
	// when equal: one map lookup per lease.
	taken := make(map[netip.Prefix]Lease, len(cands))
	for _, l := range cands {
		if w, ok := taken[l.Subnet]; ok {
			rejected = append(rejected, Rejected{Key: l.Name(), Lease: l, Reason: ReasonConflict,
				Detail: fmt.Sprintf("subnet %s overlaps %s of node %s, an older lease", l.Subnet, w.Subnet, w.Attrs.Node)})
			continue
		}
		taken[l.Subnet] = l
		accepted = append(accepted, l)
	}
	slices.SortFunc(accepted, func(a, b Lease) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()))
	})
	slices.SortFunc(rejected, func(a, b Rejected) int { return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Reason, b.Reason)) })
	return accepted, rejected
}

// Name names a lease in logs: its node, or its subnet when it names none.
func (l Lease) Name() string {
	if l.Attrs.Node != "" {
		return l.Attrs.Node + " " + l.Subnet.String()
	}
	return l.Subnet.String()
}

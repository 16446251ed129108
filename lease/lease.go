// Package lease defines a node's pod-subnet lease and how it is encoded in a
// store. The key and value layout follows Flannel's, so tools that read
// Flannel's etcd keys can read twill's:
//
//	<prefix>/config                      the network config (net-conf.json)
//	<prefix>/subnets/10.244.1.0-24       one IPv4 lease, value as Attrs JSON
//	<prefix>/subnets/10.244.1.0-24&fd00:10:244:1::-64   a dual-stack lease
//	<prefix>/subnets/0.0.0.0-0&fd00:10:244:1::-64       an IPv6-only lease
package lease

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPrefix is the store prefix used when none is configured.
const DefaultPrefix = "/twill.io/network"

// FlannelPrefix is Flannel's default etcd prefix: a twill agent run with
// --etcd-prefix FlannelPrefix joins a Flannel cluster's overlay.
const FlannelPrefix = "/coreos.com/network"

// Attrs is the value stored for one lease. Field names match Flannel's.
type Attrs struct {
	// PublicIP is the node's IPv4 underlay address (a JSON string, as
	// Flannel writes it), the outer address of IPv4 pod traffic. Left out
	// of an IPv6-only lease.
	PublicIP netip.Addr `json:"PublicIP,omitzero"`
	// PublicIPv6 is the node's IPv6 underlay address, the outer address of
	// IPv6 pod traffic; set when the cluster runs IPv6 (Flannel's name).
	PublicIPv6 netip.Addr `json:"PublicIPv6,omitzero"`
	// BackendType is "vxlan" or "host-gw".
	BackendType string `json:"BackendType"`
	// BackendData holds backend-specific data (vxlan: the VTEP MAC).
	BackendData *BackendData `json:"BackendData,omitempty"`
	// BackendV6Data is the IPv6 backend's data (vxlan: the MAC of the
	// IPv6 VTEP, a device of its own as Flannel's).
	BackendV6Data *BackendData `json:"BackendV6Data,omitempty"`
	// Node is the name of the node holding the lease (twill extension).
	Node string `json:"Node,omitempty"`
}

// BackendData is the vxlan backend's published data.
type BackendData struct {
	VtepMAC string `json:"VtepMAC,omitempty"`
}

// Lease is one decoded lease.
type Lease struct {
	// Subnet is the node's IPv4 pod subnet; zero in an IPv6-only lease.
	Subnet netip.Prefix
	// IPv6Subnet is the node's IPv6 pod subnet; zero unless the lease is
	// dual-stack or IPv6-only.
	IPv6Subnet netip.Prefix
	Attrs      Attrs
	// Created orders leases by creation as every node sees it alike (etcd:
	// the key's CreateRevision; Kubernetes: the Node's creationTimestamp in
	// Unix nanoseconds); 0 when unknown. Of two overlapping leases the
	// older one wins (Accept).
	Created int64
}

// SubnetKey returns the key of an IPv4 lease under prefix.
func SubnetKey(prefix string, subnet netip.Prefix) string {
	return LeaseKey(prefix, subnet, netip.Prefix{})
}

// LeaseKey returns the key of a lease with IPv4 subnet sn4 and IPv6 subnet
// sn6 (either may be zero) under prefix, named as Flannel names it:
// "10.244.1.0-24", "10.244.1.0-24&fd00:10:244:1::-64", and for an
// IPv6-only lease "0.0.0.0-0&fd00:10:244:1::-64".
func LeaseKey(prefix string, sn4, sn6 netip.Prefix) string {
	if !sn4.IsValid() {
		sn4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	key := fmt.Sprintf("%s/subnets/%s-%d", strings.TrimRight(prefix, "/"), sn4.Addr(), sn4.Bits())
	if sn6.IsValid() {
		key += fmt.Sprintf("&%s-%d", sn6.Addr(), sn6.Bits())
	}
	return key
}

// Key returns the lease's key under prefix (LeaseKey of its subnets).
func (l Lease) Key(prefix string) string { return LeaseKey(prefix, l.Subnet, l.IPv6Subnet) }

// SubnetsPrefix returns the key prefix under which all leases live.
func SubnetsPrefix(prefix string) string {
	return strings.TrimRight(prefix, "/") + "/subnets/"
}

// ParseSubnetKey extracts the IPv4 subnet from a lease key
// ("…/subnets/10.244.1.0-24"); it is zero for an IPv6-only key.
func ParseSubnetKey(key string) (netip.Prefix, error) {
	sn4, _, err := ParseLeaseKey(key)
	return sn4, err
}

// ParseLeaseKey extracts both subnets from a lease key in Flannel's naming
// (see LeaseKey): sn4 is zero for an IPv6-only key ("0.0.0.0-0&…"), sn6 is
// zero for an IPv4 key. Each part must be of its own family.
func ParseLeaseKey(key string) (sn4, sn6 netip.Prefix, err error) {
	base := key[strings.LastIndex(key, "/")+1:]
	part4, part6, dual := strings.Cut(base, "&")
	if sn4, err = parseKeyPart(key, part4); err != nil {
		return netip.Prefix{}, netip.Prefix{}, err
	}
	if !sn4.Addr().Is4() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("lease key %q: %s is not an IPv4 subnet (an IPv6 subnet follows an \"&\")", key, part4)
	}
	if sn4 == netip.PrefixFrom(netip.IPv4Unspecified(), 0) {
		sn4 = netip.Prefix{} // Flannel's IPv6-only placeholder
	}
	if dual {
		if sn6, err = parseKeyPart(key, part6); err != nil {
			return netip.Prefix{}, netip.Prefix{}, err
		}
		if sn6.Addr().Is4() || sn6.Addr().Is4In6() || sn6.Addr().Zone() != "" {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("lease key %q: %s after \"&\" is not an IPv6 subnet", key, part6)
		}
	}
	if !sn4.IsValid() && !sn6.IsValid() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("lease key %q: names no subnet", key)
	}
	return sn4, sn6, nil
}

// parseKeyPart parses "<addr>-<len>" of a lease key.
func parseKeyPart(key, part string) (netip.Prefix, error) {
	addr, bits, ok := strings.Cut(part, "-")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("lease key %q: want <addr>-<len>", key)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("lease key %q: %w", key, err)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("lease key %q: bad prefix length %q", key, bits)
	}
	return netip.PrefixFrom(a, n), nil
}

// Decode builds a Lease from a store key and value. A value larger than
// MaxValueSize is refused unread.
func Decode(key string, value []byte) (Lease, error) {
	sn, sn6, err := ParseLeaseKey(key)
	if err != nil {
		return Lease{}, err
	}
	if len(value) > MaxValueSize {
		return Lease{}, fmt.Errorf("lease %s: value of %d bytes, more than the %d a lease may have", key, len(value), MaxValueSize)
	}
	var a Attrs
	if err := json.Unmarshal(value, &a); err != nil {
		return Lease{}, fmt.Errorf("lease %s: value: %w", key, err)
	}
	if !a.PublicIP.IsValid() && !a.PublicIPv6.IsValid() {
		return Lease{}, fmt.Errorf("lease %s: PublicIP and PublicIPv6 are missing", key)
	}
	return Lease{Subnet: sn, IPv6Subnet: sn6, Attrs: a}, nil
}

// Encode returns the store value of the lease.
func (l Lease) Encode() []byte {
	b, _ := json.Marshal(l.Attrs) // strings and an address: cannot fail
	return b
}

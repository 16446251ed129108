// Package lease defines a node's pod-subnet lease and how it is encoded in a
// store. The key and value layout follows Flannel's, so tools that read
// Flannel's etcd keys can read twill's:
//
//	<prefix>/config                      the network config (net-conf.json)
//	<prefix>/subnets/10.244.1.0-24       one lease, value as Attrs JSON
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
	// PublicIP is the node's underlay address (a JSON string, as Flannel
	// writes it).
	PublicIP netip.Addr `json:"PublicIP"`
	// BackendType is "vxlan" or "host-gw".
	BackendType string `json:"BackendType"`
	// BackendData holds backend-specific data (vxlan: the VTEP MAC).
	BackendData *BackendData `json:"BackendData,omitempty"`
	// Node is the name of the node holding the lease (twill extension).
	Node string `json:"Node,omitempty"`
}

// BackendData is the vxlan backend's published data.
type BackendData struct {
	VtepMAC string `json:"VtepMAC,omitempty"`
}

// Lease is one decoded lease.
type Lease struct {
	Subnet netip.Prefix
	Attrs  Attrs
	// Created orders leases by creation as every node sees it alike (etcd:
	// the key's CreateRevision; Kubernetes: the Node's creationTimestamp in
	// Unix nanoseconds); 0 when unknown. Of two overlapping leases the
	// older one wins (Accept).
	Created int64
}

// SubnetKey returns the key of a subnet's lease under prefix.
func SubnetKey(prefix string, subnet netip.Prefix) string {
	return fmt.Sprintf("%s/subnets/%s-%d", strings.TrimRight(prefix, "/"), subnet.Addr(), subnet.Bits())
}

// SubnetsPrefix returns the key prefix under which all leases live.
func SubnetsPrefix(prefix string) string {
	return strings.TrimRight(prefix, "/") + "/subnets/"
}

// ParseSubnetKey extracts the subnet from a lease key ("…/subnets/10.244.1.0-24").
func ParseSubnetKey(key string) (netip.Prefix, error) {
	i := strings.LastIndex(key, "/")
	base := key[i+1:]
	addr, bits, ok := strings.Cut(base, "-")
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
	sn, err := ParseSubnetKey(key)
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
	if !a.PublicIP.IsValid() {
		return Lease{}, fmt.Errorf("lease %s: PublicIP is missing", key)
	}
	return Lease{Subnet: sn, Attrs: a}, nil
}

// Encode returns the store value of the lease.
func (l Lease) Encode() []byte {
	b, _ := json.Marshal(l.Attrs) // strings and an address: cannot fail
	return b
}

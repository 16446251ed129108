// Package netconf is the cluster network configuration: which CIDRs pods get
// addresses from (IPv4, IPv6 or both: dual stack), how it is cut into per-node subnets, and which backend
// connects the nodes. It reads Flannel's net-conf.json keys, so the
// ConfigMap of a Flannel install works unchanged.
package netconf

import "net/netip"

// Backend types.
const (
	BackendVXLAN  = "vxlan"
	BackendHostGW = "host-gw"
)

// Config is a parsed, defaulted and validated net-conf.json.
type Config struct {
	// Network is the cluster pod network, e.g. 10.244.0.0/16.
	Network netip.Prefix `json:"Network"`
	// SubnetLen is the prefix length of each node's subnet (default 24).
	SubnetLen int `json:"SubnetLen"`
	// SubnetMin and SubnetMax bound the subnets handed out (defaults: the
	// second subnet and the last subnet of Network).
	SubnetMin netip.Addr `json:"SubnetMin"`
	SubnetMax netip.Addr `json:"SubnetMax"`
	// The IPv4 fields above are zero when EnableIPv4 is false (an
	// IPv6-only cluster); the IPv6 fields below are zero unless EnableIPv6
	// is true. EnableIPv4 and EnableIPv6 report which families are on.

	// IPv6Network is the cluster's IPv6 pod network, e.g. fd00:10:244::/56.
	IPv6Network netip.Prefix `json:"IPv6Network"`
	// IPv6SubnetLen is the prefix length of each node's IPv6 subnet
	// (default 64).
	IPv6SubnetLen int `json:"IPv6SubnetLen"`
	// IPv6SubnetMin and IPv6SubnetMax bound the IPv6 subnets handed out
	// (defaults: the second and the last subnet of IPv6Network).
	IPv6SubnetMin netip.Addr `json:"IPv6SubnetMin"`
	IPv6SubnetMax netip.Addr `json:"IPv6SubnetMax"`
	// Backend says how nodes reach each other's pods.
	Backend Backend `json:"Backend"`
}

// Backend is the "Backend" object of net-conf.json.
type Backend struct {
	// Type is "vxlan" (default) or "host-gw".
	Type string `json:"Type"`
	// VNI is the vxlan network identifier (default 1).
	VNI int `json:"VNI,omitempty"`
	// Port is the vxlan UDP port (default 8472, as Flannel and the Linux default).
	Port int `json:"Port,omitempty"`
	// DirectRouting makes vxlan use plain routes to peers on the same subnet.
	DirectRouting bool `json:"DirectRouting,omitempty"`
	// MTU overrides the vxlan device MTU (default: underlay MTU - 50).
	MTU int `json:"MTU,omitempty"`
}

package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/subnetfile"
)

// PodNet is one address family's pod network on the node.
type PodNet struct {
	// Network is the whole cluster pod network, e.g. 10.244.0.0/16.
	Network netip.Prefix
	// Subnet is the node's pod subnet, masked, e.g. 10.244.1.0/24.
	Subnet netip.Prefix
	// Gateway is the bridge address and the pods' gateway: the subnet's
	// first address, e.g. 10.244.1.1.
	Gateway netip.Addr
}

// GatewayPrefix is the bridge address with the subnet's length, e.g. 10.244.1.1/24.
func (p PodNet) GatewayPrefix() netip.Prefix {
	return netip.PrefixFrom(p.Gateway, p.Subnet.Bits())
}

// Node is what the plugin knows about the node it runs on, from the subnet
// file the twill agent (or Flannel) writes. The embedded PodNet is the
// IPv4 one (zero on an IPv6-only node), IPv6 the IPv6 one (zero without
// IPv6).
type Node struct {
	// File is the subnet file that was read.
	File string
	PodNet
	// IPv6 is the node's IPv6 pod network (zero without IPv6).
	IPv6 PodNet
	// MTU is the pod MTU (the config's mtu when set, else the file's).
	MTU int
}

// Nets returns the node's pod networks, IPv4 first: a pod gets one address
// of each.
func (n Node) Nets() []PodNet {
	var out []PodNet
	for _, p := range []PodNet{n.PodNet, n.IPv6} {
		if p.Subnet.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// ErrNoSubnetFile means none of the configured subnet files exists: the
// agent has not (yet) written it.
var ErrNoSubnetFile = errors.New("subnet file not found")

// ReadNode reads the first of c.SubnetFiles that exists. When none exists
// the error wraps ErrNoSubnetFile and says what to check.
func ReadNode(c Config) (Node, error) {
	for _, path := range c.SubnetFiles {
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Node{}, fmt.Errorf("subnet file %s: %w", path, err)
		}
		info, err := subnetfile.Parse(path, string(data))
		if err != nil {
			return Node{}, err
		}
		return NodeFromInfo(path, info, c.MTU)
	}
	return Node{}, fmt.Errorf("%w: %s: the twill agent writes it once it runs on this node and the node has a subnet (its Node's spec.podCIDR): see kubectl -n kube-twill get pods -o wide, that pod's log, and kubectl describe node (a NoPodCIDR Event)",
		ErrNoSubnetFile, strings.Join(c.SubnetFiles, " or "))
}

// NodeFromInfo checks a parsed subnet file and derives the node's pod
// networks from it. mtuOverride, when not 0, replaces the file's MTU.
func NodeFromInfo(path string, info subnetfile.Info, mtuOverride int) (Node, error) {
	n := Node{File: path}
	if info.Network.IsValid() || info.Subnet.IsValid() {
		if !info.Subnet.Addr().Is4() || !info.Network.Addr().Is4() {
			return Node{}, fmt.Errorf("subnet file %s: NETWORK and SUBNET must be IPv4 (SUBNET %s, NETWORK %s); IPv6 goes in IPV6_NETWORK and IPV6_SUBNET", path, info.Subnet, info.Network)
		}
		p, err := podNet(path, "", info.Network, info.Subnet, netconf.CheckNetwork, 30)
		if err != nil {
			return Node{}, err
		}
		n.PodNet = p
	}
	if info.IPv6Network.IsValid() {
		if info.IPv6Subnet.Addr().Is4() || info.IPv6Network.Addr().Is4() {
			return Node{}, fmt.Errorf("subnet file %s: IPV6_NETWORK and IPV6_SUBNET must be IPv6 (IPV6_SUBNET %s, IPV6_NETWORK %s)", path, info.IPv6Subnet, info.IPv6Network)
		}
		p, err := podNet(path, "IPV6_", info.IPv6Network, info.IPv6Subnet, netconf.CheckIPv6Network, netconf.MaxIPv6SubnetLen)
		if err != nil {
			return Node{}, err
		}
		n.IPv6 = p
	}
	if len(n.Nets()) == 0 {
		return Node{}, fmt.Errorf("subnet file %s: no NETWORK/SUBNET and no IPV6_NETWORK/IPV6_SUBNET", path)
	}
	n.MTU = info.MTU
	if mtuOverride != 0 {
		n.MTU = mtuOverride
	}
	if n.MTU == 0 {
		return Node{}, fmt.Errorf("subnet file %s: no MTU line; the agent writes one (or set \"mtu\" in the CNI config)", path)
	}
	if n.IPv6.Subnet.IsValid() && n.MTU < netconf.MinIPv6MTU {
		return Node{}, fmt.Errorf("subnet file %s: MTU %d is below %d, the least IPv6 allows, and the node has an IPv6 subnet", path, n.MTU, netconf.MinIPv6MTU)
	}
	return n, nil
}

// podNet checks one family's NETWORK and SUBNET lines (key prefix kp) and
// derives the gateway.
func podNet(path, kp string, network, sn netip.Prefix, check func(netip.Prefix) error, maxLen int) (PodNet, error) {
	subnet := sn.Masked()
	if subnet.Bits() > maxLen {
		return PodNet{}, fmt.Errorf("subnet file %s: %sSUBNET %s is too small for pods (at most /%d)", path, kp, sn, maxLen)
	}
	network = network.Masked()
	if err := check(network); err != nil {
		return PodNet{}, fmt.Errorf("subnet file %s: %sNETWORK: %w", path, kp, err)
	}
	if !network.Contains(subnet.Addr()) || network.Bits() > subnet.Bits() {
		return PodNet{}, fmt.Errorf("subnet file %s: %sSUBNET %s is not inside %sNETWORK %s", path, kp, sn, kp, network)
	}
	gw := sn.Addr()
	if gw == subnet.Addr() {
		// Written in network form (10.244.1.0/24): the gateway is the one
		// the agent would have written.
		gw = subnetfile.Gateway(subnet).Addr()
	}
	if gw == lastAddr(subnet) {
		return PodNet{}, fmt.Errorf("subnet file %s: %sSUBNET %s: the gateway cannot be the subnet's last (broadcast) address", path, kp, sn)
	}
	return PodNet{Network: network, Subnet: subnet, Gateway: gw}, nil
}

// lastAddr is the highest address of p (the broadcast address for IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		if netBits := p.Bits() - 8*i; netBits < 8 {
			b[i] |= byte(0xff >> max(netBits, 0))
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

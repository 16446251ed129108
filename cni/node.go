package cni

import (
	"errors"
	"fmt"
	"github.com/twillnet/twill/netconf"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"github.com/twillnet/twill/subnetfile"
)

// Node is what the plugin knows about the node it runs on, from the subnet
// file the twill agent (or Flannel) writes.
type Node struct {
	// File is the subnet file that was read.
	File string
	// Network is the whole cluster pod network, e.g. 10.244.0.0/16.
	Network netip.Prefix
	// Subnet is the node's pod subnet, masked, e.g. 10.244.1.0/24.
	Subnet netip.Prefix
	// Gateway is the bridge address and the pods' gateway: the subnet's
	// first address, e.g. 10.244.1.1.
	Gateway netip.Addr
	// MTU is the pod MTU (the config's mtu when set, else the file's).
	MTU int
}

// GatewayPrefix is the bridge address with the subnet's length, e.g. 10.244.1.1/24.
func (n Node) GatewayPrefix() netip.Prefix {
	return netip.PrefixFrom(n.Gateway, n.Subnet.Bits())
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
	return Node{}, fmt.Errorf("%w: %s: is the twill agent running on this node? (kubectl -n kube-system logs ds/twill)",
		ErrNoSubnetFile, strings.Join(c.SubnetFiles, " or "))
}

// NodeFromInfo checks a parsed subnet file and derives the node's pod
// network from it. mtuOverride, when not 0, replaces the file's MTU.
func NodeFromInfo(path string, info subnetfile.Info, mtuOverride int) (Node, error) {
	if !info.Subnet.Addr().Is4() || !info.Network.Addr().Is4() {
		return Node{}, fmt.Errorf("subnet file %s: only IPv4 is supported (SUBNET %s, NETWORK %s)", path, info.Subnet, info.Network)
	}
	subnet := info.Subnet.Masked()
	if subnet.Bits() > 30 {
		return Node{}, fmt.Errorf("subnet file %s: SUBNET %s is too small for pods (at most /30)", path, info.Subnet)
	}
	network := info.Network.Masked()
	if err := netconf.CheckNetwork(network); err != nil {
		return Node{}, fmt.Errorf("subnet file %s: NETWORK: %w", path, err)
	}
	if !network.Contains(subnet.Addr()) || network.Bits() > subnet.Bits() {
		return Node{}, fmt.Errorf("subnet file %s: SUBNET %s is not inside NETWORK %s", path, info.Subnet, info.Network)
	}
	gw := info.Subnet.Addr()
	if gw == subnet.Addr() {
		// Written in network form (10.244.1.0/24): the gateway is the one
		// the agent would have written.
		gw = subnetfile.Gateway(subnet).Addr()
	}
	if gw == lastAddr(subnet) {
		return Node{}, fmt.Errorf("subnet file %s: SUBNET %s: the gateway cannot be the broadcast address", path, info.Subnet)
	}
	mtu := info.MTU
	if mtuOverride != 0 {
		mtu = mtuOverride
	}
	if mtu == 0 {
		return Node{}, fmt.Errorf("subnet file %s: no MTU line; the agent writes one (or set \"mtu\" in the CNI config)", path)
	}
	return Node{File: path, Network: network, Subnet: subnet, Gateway: gw, MTU: mtu}, nil
}

// lastAddr is the highest address of p (the broadcast address for IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= uint32(1)<<hostBits - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

package backend

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
)

// VxlanOverhead is what vxlan encapsulation costs on an IPv4 underlay
// (outer IP 20 + UDP 8 + vxlan 8 + inner Ethernet 14 bytes).
const VxlanOverhead = 50

// VxlanOverheadV6 is what vxlan encapsulation costs on an IPv6 underlay
// (outer IPv6 40 + UDP 8 + vxlan 8 + inner Ethernet 14 bytes).
const VxlanOverheadV6 = 70

// Node is everything Compute needs to know about this node and its peers.
type Node struct {
	// Self is this node's lease (its pod subnet and published attributes).
	Self lease.Lease
	// Peers are the leases of all nodes; Self's own lease (same Subnet) may
	// be included and is ignored.
	Peers []lease.Lease
	// Config is the cluster network config (Network and Backend).
	Config netconf.Config
	// UnderlayDev is the name of the node's underlay interface ("eth0").
	UnderlayDev string
	// UnderlayIP is the node's IPv4 underlay address (the lease's
	// PublicIP); unused by an IPv6-only cluster.
	UnderlayIP netip.Addr
	// UnderlayIPv6 is the node's IPv6 underlay address (the lease's
	// PublicIPv6), the outer address of IPv6 pod traffic; needed when the
	// cluster runs IPv6.
	UnderlayIPv6 netip.Addr
	// UnderlayNets6 are the prefixes of UnderlayDev's global IPv6
	// addresses (host-gw and DirectRouting for IPv6 peers).
	UnderlayNets6 []netip.Prefix
	// UnderlayMTU is the MTU of UnderlayDev.
	UnderlayMTU int
	// UnderlayNets are the node's directly connected underlay prefixes (the
	// prefixes of UnderlayDev's addresses): its L2 segments. Peers inside one
	// can be reached without a router (host-gw, vxlan DirectRouting).
	UnderlayNets []netip.Prefix
	// VxlanDev names the vxlan device; empty (the agent) means
	// DeviceName(VNI). doctor sets it to the vxlan device it finds on a node
	// another agent programmed (Flannel's "flannel.1"), so the expected
	// objects hang on the device that is there.
	VxlanDev string
	// VxlanDevV6 names the IPv6 vxlan device; empty means
	// DeviceNameV6(VNI) (Flannel's is "flannel-v6.1").
	VxlanDevV6 string
}

// NodeOf is the Node of a node whose underlay u is known: the fields the
// agent and doctor fill in the same way.
func NodeOf(self lease.Lease, peers []lease.Lease, cfg netconf.Config, u Underlay) Node {
	return Node{Self: self, Peers: peers, Config: cfg, UnderlayDev: u.Dev, UnderlayIP: u.IP, UnderlayMTU: u.MTU, UnderlayNets: u.Nets,
		UnderlayIPv6: u.IPv6, UnderlayNets6: u.Nets6}
}

// LinkSpec is the desired vxlan device.
type LinkSpec struct {
	Name string `json:"name"`
	// Kind is "vxlan".
	Kind string `json:"kind"`
	VNI  int    `json:"vni"`
	// Port is the vxlan UDP destination port.
	Port int `json:"port"`
	// Local is the underlay source address of encapsulated packets.
	Local netip.Addr `json:"local"`
	// Dev is the underlay device the vxlan device sends through.
	Dev string `json:"dev"`
	// Learning is always false: twill programs the FDB itself.
	Learning bool `json:"learning"`
	MTU      int  `json:"mtu"`
	// MAC is the VTEP MAC (see VtepMAC); peers' neighbour entries point at it.
	MAC string `json:"mac"`
}

// String renders the link like `ip -d link` would summarise it.
func (l LinkSpec) String() string {
	return fmt.Sprintf("%s vxlan id %d dstport %d local %s dev %s mtu %d address %s", l.Name, l.VNI, l.Port, l.Local, l.Dev, l.MTU, l.MAC)
}

// Ownership says which kernel objects twill owns on this node. Diff deletes
// owned objects that are not desired and never looks at anything else.
type Ownership struct {
	// Network is the cluster pod network. Main-table IPv4 routes whose
	// destination lies inside it are owned when their device is VxlanDev,
	// another twill vxlan device or UnderlayDev.
	Network netip.Prefix `json:"network"`
	// Subnet is this node's own pod subnet; routes to it are never owned
	// (they belong to the pod bridge cni0).
	Subnet netip.Prefix `json:"subnet"`
	// VxlanDev is twill's vxlan device name ("twill.1"); the device and its
	// IPv4 addresses, routes, permanent neighbours and remote FDB entries are
	// owned. Any other vxlan device named "twill.<n>" (left by an earlier VNI)
	// is owned too.
	VxlanDev string `json:"vxlanDev"`
	// UnderlayDev is the underlay device: only its routes into Network
	// (host-gw, DirectRouting) are owned.
	UnderlayDev string `json:"underlayDev"`
	// IPv6Network, IPv6Subnet and VxlanDevV6 are the same for IPv6 (zero
	// when the cluster does not run IPv6): the device "twill-v6.<n>" and,
	// on it, global IPv6 addresses, main-table IPv6 routes, permanent IPv6
	// neighbours and remote FDB entries are owned, and so are main-table
	// routes into IPv6Network via UnderlayDev. Link-local addresses and
	// routes (fe80::/10) the kernel puts on every device are never owned.
	IPv6Network netip.Prefix `json:"ipv6Network,omitzero"`
	IPv6Subnet  netip.Prefix `json:"ipv6Subnet,omitzero"`
	VxlanDevV6  string       `json:"vxlanDevV6,omitempty"`
}

// Desired is the kernel state the backend wants on this node.
type Desired struct {
	// Backend is "vxlan" or "host-gw".
	Backend string `json:"backend"`
	// Links holds the vxlan devices (empty for host-gw): the IPv4 one,
	// then the IPv6 one.
	Links []LinkSpec `json:"links"`
	// Addrs holds the vxlan devices' addresses: the lease's network address
	// /32 (IPv6: /128).
	Addrs     []nodestate.Addr     `json:"addrs"`
	Routes    []nodestate.Route    `json:"routes"`
	Neighbors []nodestate.Neighbor `json:"neighbors"`
	FDB       []nodestate.FDBEntry `json:"fdb"`
	// MTU is the MTU pods must use (written to the subnet file): the least
	// of the families' (PodMTU).
	MTU int `json:"mtu"`
	// Own says which objects Diff may change or delete.
	Own Ownership `json:"own"`
}

// Why a peer could not be programmed (PeerError.Cause).
const (
	// PeerBadAddress: the lease's PublicIP is not an IPv4 address (for
	// IPv6: PublicIPv6 not an IPv6 one).
	PeerBadAddress = "bad-address"
	// PeerOutsideNetwork: the lease's subnet is not inside the network.
	PeerOutsideNetwork = "outside-network"
	// PeerOffSegment: host-gw, and the peer is not on this node's L2 segment.
	PeerOffSegment = "off-segment"
	// PeerNoVtepMAC: vxlan, and the lease has no usable VtepMAC.
	PeerNoVtepMAC = "no-vtep-mac"
)

// PeerError is a peer lease the backend could not program, and why.
type PeerError struct {
	Node     string       `json:"node"`
	PublicIP netip.Addr   `json:"publicIP"`
	Subnet   netip.Prefix `json:"subnet"`
	// Cause is one of the Peer* constants, for callers that act on the
	// kind of problem (doctor's TW045 reports PeerOffSegment).
	Cause string `json:"cause"`
	// Reason says what is wrong in words, for people.
	Reason string `json:"reason"`
}

func (e PeerError) Error() string {
	name := e.Node
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Sprintf("peer %s (%s, subnet %s): %s", name, e.PublicIP, e.Subnet, e.Reason)
}

// PeerErrors is returned by Compute when some peers were skipped. The
// Desired state returned with it is valid for all other peers and should be
// applied; the errors should be logged (and surfaced in health).
type PeerErrors []PeerError

func (e PeerErrors) Error() string {
	parts := make([]string, len(e))
	for i, p := range e {
		parts[i] = p.Error()
	}
	return strings.Join(parts, "; ")
}

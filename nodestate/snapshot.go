package nodestate

import (
	"net/netip"
	"time"
)

// SchemaVersion is the version of the snapshot JSON format written by this
// build. Load refuses files with a newer version and says so.
const SchemaVersion = 1

// Snapshot is the state of one network namespace at one moment.
//
// Fields that could not be captured are left empty and the reason is recorded
// in Errors, so that consumers can say what they could not check instead of
// guessing.
type Snapshot struct {
	// Version is the schema version (SchemaVersion when written by this build).
	Version int `json:"version"`
	// CapturedAt is when the capture started.
	CapturedAt time.Time `json:"capturedAt"`
	// Hostname is the host's name (shared by all namespaces of one machine).
	Hostname string `json:"hostname,omitempty"`
	// Netns is the named network namespace captured, empty for the caller's own.
	Netns string `json:"netns,omitempty"`
	// Node is a free-form node name (lab node name, Kubernetes node name).
	Node string `json:"node,omitempty"`

	Links     []Link     `json:"links"`
	Addrs     []Addr     `json:"addrs"`
	Routes    []Route    `json:"routes"`
	Rules     []Rule     `json:"rules"`
	Neighbors []Neighbor `json:"neighbors"`
	FDB       []FDBEntry `json:"fdb"`

	// Sysctls maps dotted sysctl names ("net.ipv4.ip_forward",
	// "net.bridge.bridge-nf-call-iptables", "net.ipv4.conf.cni0.rp_filter") to
	// their trimmed value. A name that is absent was not present on the node
	// (for example net.bridge.* when br_netfilter is not loaded).
	Sysctls map[string]string `json:"sysctls"`

	// Conntrack holds the connection tracking table fill level.
	Conntrack Conntrack `json:"conntrack"`

	// Iptables holds the rule dumps of both iptables backends.
	Iptables Iptables `json:"iptables"`
	// Nftables holds `nft -j list ruleset`.
	Nftables Nftables `json:"nftables"`
	// IPVS holds the IPVS virtual servers, when the node has IPVS.
	IPVS *IPVS `json:"ipvs,omitempty"`

	// Files holds the CNI configuration, CNI plugin binaries and subnet files.
	Files Files `json:"files"`

	// Leases are the overlay leases known to the node's store (all nodes),
	// when the capture was given access to the store. Empty otherwise.
	Leases []Lease `json:"leases,omitempty"`

	// Errors lists what could not be captured and why.
	Errors []CaptureError `json:"errors,omitempty"`
}

// CaptureError records one part of the state that could not be captured.
type CaptureError struct {
	// Source names the part: "iptables-legacy", "nft", "neighbors", "file:/run/twill/subnet.env".
	Source string `json:"source"`
	// Err is the reason in words, e.g. `exec: "nft": executable file not found in $PATH`.
	Err string `json:"error"`
}

// Link is one network interface.
type Link struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	// Kind is the rtnetlink kind: "bridge", "veth", "vxlan", "device" (physical
	// or unknown), "loopback", "dummy", ...
	Kind   string `json:"kind"`
	MTU    int    `json:"mtu"`
	MAC    string `json:"mac,omitempty"`
	Up     bool   `json:"up"`
	OperUp bool   `json:"operUp"`
	// Master is the name of the bridge this link is enslaved to, if any.
	Master string `json:"master,omitempty"`
	// ParentIndex is the peer ifindex of a veth (in its own namespace) or the
	// lower device of a vxlan; 0 when unknown.
	ParentIndex int `json:"parentIndex,omitempty"`
	// LinkNetnsID is the netns id (as seen from this namespace) where the
	// veth peer lives, -1 when in the same namespace or unknown.
	LinkNetnsID int `json:"linkNetnsId,omitempty"`

	Vxlan      *VxlanAttrs      `json:"vxlan,omitempty"`
	Bridge     *BridgeAttrs     `json:"bridge,omitempty"`
	BridgePort *BridgePortAttrs `json:"bridgePort,omitempty"`
}

// VxlanAttrs are the attributes of a vxlan link.
type VxlanAttrs struct {
	VNI int `json:"vni"`
	// Port is the UDP destination port (8472 for Flannel/Linux default, 4789 IANA).
	Port int `json:"port"`
	// Local is the underlay source address.
	Local netip.Addr `json:"local,omitzero"`
	// Dev is the name of the underlay device (VtepDevIndex resolved).
	Dev      string `json:"dev,omitempty"`
	Learning bool   `json:"learning"`
}

// BridgeAttrs are the attributes of a bridge link.
type BridgeAttrs struct {
	// Ports lists the names of the links enslaved to this bridge.
	Ports []string `json:"ports"`
}

// BridgePortAttrs are the attributes of a link enslaved to a bridge.
type BridgePortAttrs struct {
	Hairpin bool `json:"hairpin"`
}

// Addr is one address assigned to a link.
type Addr struct {
	Link string `json:"link"`
	// Prefix is the address with its prefix length, e.g. 10.244.1.1/24.
	Prefix netip.Prefix `json:"prefix"`
	Scope  string       `json:"scope,omitempty"`
}

// Well-known routing table numbers.
const (
	TableLocal = 255
	TableMain  = 254
)

// Route is one routing table entry.
type Route struct {
	// Table is the routing table number (254 main, 255 local).
	Table int `json:"table"`
	// Type is "unicast", "local", "broadcast", "blackhole", "unreachable",
	// "prohibit", "throw" or "multicast".
	Type string `json:"type"`
	// Dst is the destination prefix; 0.0.0.0/0 for default.
	Dst      netip.Prefix `json:"dst"`
	Gateway  netip.Addr   `json:"gateway,omitzero"`
	Dev      string       `json:"dev,omitempty"`
	Src      netip.Addr   `json:"src,omitzero"`
	Scope    string       `json:"scope,omitempty"`
	Protocol string       `json:"protocol,omitempty"`
	Metric   int          `json:"metric,omitempty"`
	Onlink   bool         `json:"onlink,omitempty"`
}

// Rule is one policy routing rule (`ip rule`).
type Rule struct {
	Priority int          `json:"priority"`
	Family   int          `json:"family"` // 4 or 6
	Table    int          `json:"table"`
	Src      netip.Prefix `json:"src,omitzero"`
	Dst      netip.Prefix `json:"dst,omitzero"`
	Mark     uint32       `json:"mark,omitempty"`
	Mask     uint32       `json:"mask,omitempty"`
	IifName  string       `json:"iif,omitempty"`
	OifName  string       `json:"oif,omitempty"`
	Invert   bool         `json:"invert,omitempty"`
	// Action is "lookup" (to Table), "blackhole", "unreachable", "prohibit" or "goto".
	Action string `json:"action"`
}

// Neighbor is one neighbour (ARP/NDP) entry.
type Neighbor struct {
	Dev string     `json:"dev"`
	IP  netip.Addr `json:"ip"`
	MAC string     `json:"mac,omitempty"`
	// State is "permanent", "reachable", "stale", "failed", "noarp", ... joined by "|".
	State string `json:"state"`
}

// FDBEntry is one bridge forwarding database entry (`bridge fdb`), including
// vxlan entries with a remote underlay address.
type FDBEntry struct {
	Dev string `json:"dev"`
	MAC string `json:"mac"`
	// Dst is the remote underlay address of a vxlan FDB entry.
	Dst netip.Addr `json:"dst,omitzero"`
	// Master is the bridge of a bridge-port entry.
	Master string `json:"master,omitempty"`
	Vlan   int    `json:"vlan,omitempty"`
	// State is "permanent", "static" or "reachable".
	State string `json:"state,omitempty"`
	// Self marks entries in the device's own table (vxlan), not the bridge's.
	Self bool `json:"self,omitempty"`
}

// Conntrack is the connection tracking table fill level. Max 0 means unknown.
type Conntrack struct {
	Count int `json:"count"`
	Max   int `json:"max"`
}

// Iptables holds the dumps of both iptables backends. Both are captured
// because rules split across backends is itself a failure (FAILURES.md F4).
type Iptables struct {
	Legacy IptablesBackend `json:"legacy"`
	NFT    IptablesBackend `json:"nft"`
}

// IptablesBackend is one backend's dump, as printed by its -save tool.
type IptablesBackend struct {
	// Available is false when the tool is not installed; Err says why.
	Available bool   `json:"available"`
	Version   string `json:"version,omitempty"` // e.g. "iptables v1.8.9 (legacy)"
	Save      string `json:"save,omitempty"`    // iptables-save output (IPv4)
	Save6     string `json:"save6,omitempty"`   // ip6tables-save output
	Err       string `json:"error,omitempty"`
}

// Nftables holds the nftables rule set.
type Nftables struct {
	Available bool   `json:"available"`
	Version   string `json:"version,omitempty"`
	// JSON is the raw output of `nft -j list ruleset`.
	JSON string `json:"json,omitempty"`
	Err  string `json:"error,omitempty"`
}

// IPVS holds the IPVS state of a node whose kernel has IPVS.
type IPVS struct {
	// Services are the virtual servers.
	Services []IPVSService `json:"services"`
}

// IPVSService is one IPVS virtual server.
type IPVSService struct {
	Protocol  string           `json:"protocol"` // "TCP", "UDP", "SCTP"
	Addr      netip.AddrPort   `json:"addr"`
	Scheduler string           `json:"scheduler,omitempty"`
	Dests     []netip.AddrPort `json:"dests,omitempty"`
}

// Files holds the files on the node that pod networking depends on. Paths are
// as seen on the node (after the capture's root prefix is applied).
type Files struct {
	// CNIConfDir is the directory the CNI configurations were read from.
	CNIConfDir string `json:"cniConfDir,omitempty"`
	// CNIConfigs are the configuration files found there.
	CNIConfigs []File `json:"cniConfigs,omitempty"`
	// CNIBinDir is the directory of CNI plugin binaries.
	CNIBinDir string `json:"cniBinDir,omitempty"`
	// CNIPlugins lists the executable names found in CNIBinDir.
	CNIPlugins []string `json:"cniPlugins,omitempty"`
	// SubnetFiles are twill's and Flannel's subnet files, present or not.
	SubnetFiles []File `json:"subnetFiles,omitempty"`
}

// File is one file's content. Missing files have Exists false.
type File struct {
	Path    string `json:"path"`
	Exists  bool   `json:"exists"`
	Content string `json:"content,omitempty"`
}

// Lease is one node's subnet lease as known to the store. A dual-stack
// lease has both subnets; an IPv6-only lease has no Subnet nor PublicIP.
type Lease struct {
	// Subnet is the node's IPv4 pod subnet; zero in an IPv6-only lease.
	Subnet netip.Prefix `json:"subnet"`
	// PublicIP is the node's IPv4 underlay address.
	PublicIP netip.Addr `json:"publicIP"`
	// IPv6Subnet is the node's IPv6 pod subnet; zero without IPv6.
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	// PublicIPv6 is the node's IPv6 underlay address (the outer address
	// of its IPv6 pod traffic); zero without IPv6.
	PublicIPv6 netip.Addr `json:"publicIPv6,omitzero"`
	// Backend is "vxlan" or "host-gw".
	Backend string `json:"backend"`
	// VtepMAC is the MAC of the node's vxlan device (vxlan only).
	VtepMAC string `json:"vtepMAC,omitempty"`
	// VtepMACv6 is the MAC of the node's IPv6 vxlan device (vxlan with
	// IPv6 only).
	VtepMACv6 string `json:"vtepMACv6,omitempty"`
	// Node is the lease holder's name, when known.
	Node string `json:"node,omitempty"`
}

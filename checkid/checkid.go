// Package checkid names twill doctor's checks: one constant per stable
// check ID ("TW002"), so doctor (which runs the checks), trace (which names
// the check a failed path matches) and the lab (whose scenarios say which
// check they must trigger) never spell an ID twice. IDs are never
// renumbered; README.md lists them with what they catch.
package checkid

// Check IDs, named after the check's name in `twill doctor --list`.
const (
	// IPForward (TW001): net.ipv4.ip_forward is not 1 (F2).
	IPForward = "TW001"
	// BridgeNFCallIptables (TW002): bridged pod traffic skips iptables and conntrack (F1).
	BridgeNFCallIptables = "TW002"
	// BridgeNFCallIp6tables (TW003): the IPv6 twin of TW002 (F1).
	BridgeNFCallIp6tables = "TW003"
	// IPv6Forwarding (TW004): IPv6 pods but IPv6 forwarding off (F2).
	IPv6Forwarding = "TW004"
	// ForwardPolicyDrop (TW010): an iptables FORWARD chain drops new pod flows (F3).
	ForwardPolicyDrop = "TW010"
	// NftForwardDrop (TW011): a native nftables forward base chain drops pod flows (F3).
	NftForwardDrop = "TW011"
	// IptablesBackendsSplit (TW020): rules in both iptables-legacy and iptables-nft (F4).
	IptablesBackendsSplit = "TW020"
	// KubeRuleLostMatch (TW021): a kube-proxy rule lost its match (F4).
	KubeRuleLostMatch = "TW021"
	// ServiceVIPNotTranslated (TW030): a Service IP has no DNAT (F5a).
	ServiceVIPNotTranslated = "TW030"
	// NoServiceProxy (TW031): no kube-proxy rules of any kind (F5).
	NoServiceProxy = "TW031"
	// IPVSLocalWithoutVirtualServer (TW032): ClusterIPs on kube-ipvs0 without an IPVS virtual server (F5b).
	IPVSLocalWithoutVirtualServer = "TW032"
	// KubernetesServiceVIP (TW033): the API's kubernetes ClusterIP is not translated (F5).
	KubernetesServiceVIP = "TW033"
	// ServiceEndpointsMismatch (TW034): a Service's DNAT targets differ from its ready endpoints (F5).
	ServiceEndpointsMismatch = "TW034"
	// OverlayRoute (TW040): a peer's pod subnet route missing or wrong (F6).
	OverlayRoute = "TW040"
	// VxlanNeighbour (TW041): a peer's VTEP neighbour missing or stale (F6).
	VxlanNeighbour = "TW041"
	// VxlanFDB (TW042): a peer's VTEP FDB entry missing or stale (F6).
	VxlanFDB = "TW042"
	// PodMTU (TW043): pod MTU larger than the overlay allows (F6).
	PodMTU = "TW043"
	// VxlanMTU (TW044): vxlan MTU larger than the underlay allows (F6).
	VxlanMTU = "TW044"
	// HostGWPeerNotOnSegment (TW045): host-gw route via a gateway not on the link (F6).
	HostGWPeerNotOnSegment = "TW045"
	// SubnetFile (TW050): subnet file missing or malformed (F6).
	SubnetFile = "TW050"
	// CNIPlugins (TW051): CNI config missing, invalid or naming a missing plugin (F6).
	CNIPlugins = "TW051"
	// RPFilter (TW060): strict reverse-path filtering on pod or overlay devices (F7).
	RPFilter = "TW060"
	// ConntrackFull (TW061): conntrack table nearly full (F7).
	ConntrackFull = "TW061"
	// CIDROverlap (TW062): pod network overlapping the Service range or a node network (F7).
	CIDROverlap = "TW062"
	// RouteLocalnet (TW063): route_localnet 0 while kube-proxy has localhost NodePorts (F7).
	RouteLocalnet = "TW063"
)

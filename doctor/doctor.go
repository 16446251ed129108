package doctor

import (
	"github.com/twillnet/twill/checkid"
	"slices"

	"github.com/twillnet/twill/nodestate"
)

// check is one registered check.
type check struct {
	id, name string
	// run returns the findings, or a non-empty reason when the check could
	// not run on this snapshot (missing tool, unparsable dump, unknown CIDR).
	run func(e *env) (findings []Finding, notChecked string)
}

// checks is the registry, in report order. IDs are stable: never renumber.
var checks = []check{
	{checkid.IPForward, "ip_forward", checkIPForward},
	{checkid.BridgeNFCallIptables, "bridge-nf-call-iptables", checkBridgeNF},
	{checkid.BridgeNFCallIp6tables, "bridge-nf-call-ip6tables", checkBridgeNF6},
	{checkid.IPv6Forwarding, "ipv6-forwarding", checkIPv6Forward},
	{checkid.ForwardPolicyDrop, "forward-policy-drop", checkForwardIptables},
	{checkid.NftForwardDrop, "nft-forward-drop", checkForwardNft},
	{checkid.IptablesBackendsSplit, "iptables-backends-split", checkBackendSplit},
	{checkid.KubeRuleLostMatch, "kube-rule-lost-match", checkLostMatch},
	{checkid.ServiceVIPNotTranslated, "service-vip-not-translated", checkServiceVIP},
	{checkid.NoServiceProxy, "no-service-proxy", checkServiceProxy},
	{checkid.IPVSLocalWithoutVirtualServer, "ipvs-local-without-virtual-server", checkIPVSLocal},
	{checkid.KubernetesServiceVIP, "kubernetes-service-vip", checkKubernetesVIP},
	{checkid.ServiceEndpointsMismatch, "service-endpoints-mismatch", checkServiceEndpoints},
	{checkid.OverlayRoute, "overlay-route", checkOverlayRoutes},
	{checkid.VxlanNeighbour, "vxlan-neighbour", checkVxlanNeighbours},
	{checkid.VxlanFDB, "vxlan-fdb", checkVxlanFDB},
	{checkid.PodMTU, "pod-mtu", checkPodMTU},
	{checkid.VxlanMTU, "vxlan-mtu", checkVxlanMTU},
	{checkid.HostGWPeerNotOnSegment, "host-gw-peer-not-on-segment", checkHostGWSegment},
	{checkid.SubnetFile, "subnet-file", checkSubnetFile},
	{checkid.CNIPlugins, "cni-plugins", checkCNIPlugins},
	{checkid.RPFilter, "rp-filter", checkRPFilter},
	{checkid.ConntrackFull, "conntrack-full", checkConntrack},
	{checkid.CIDROverlap, "cidr-overlap", checkCIDROverlap},
	{checkid.RouteLocalnet, "route-localnet", checkRouteLocalnet},
}

// Check describes one registered check for listings (`twill doctor --list`).
type Check struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Checks lists every check in report order.
func Checks() []Check {
	out := make([]Check, len(checks))
	for i, c := range checks {
		out[i] = Check{c.id, c.name}
	}
	return out
}

// Run runs every check on the snapshot and returns the report. It never
// changes anything.
func Run(s *nodestate.Snapshot, cfg Config) Report {
	e := newEnv(s, cfg)
	r := Report{Node: s.Node, Netns: s.Netns, Findings: []Finding{}}
	for _, c := range checks {
		fs, skip := c.run(e)
		if skip != "" {
			r.NotChecked = append(r.NotChecked, NotChecked{ID: c.id, Name: c.name, Reason: skip})
			continue
		}
		for _, f := range fs {
			f.ID, f.Name = c.id, c.name
			if slices.Contains(cfg.Ignore, f.ID) {
				if !slices.Contains(r.Ignored, f.ID) {
					r.Ignored = append(r.Ignored, f.ID)
				}
				continue
			}
			r.Findings = append(r.Findings, f)
		}
	}
	return r
}

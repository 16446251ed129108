package doctor

import (
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
	{"TW001", "ip_forward", checkIPForward},
	{"TW002", "bridge-nf-call-iptables", checkBridgeNF},
	{"TW003", "bridge-nf-call-ip6tables", checkBridgeNF6},
	{"TW004", "ipv6-forwarding", checkIPv6Forward},
	{"TW010", "forward-policy-drop", checkForwardIptables},
	{"TW011", "nft-forward-drop", checkForwardNft},
	{"TW020", "iptables-backends-split", checkBackendSplit},
	{"TW021", "kube-rule-lost-match", checkLostMatch},
	{"TW030", "service-vip-not-translated", checkServiceVIP},
	{"TW031", "no-service-proxy", checkServiceProxy},
	{"TW032", "ipvs-local-without-virtual-server", checkIPVSLocal},
	{"TW033", "kubernetes-service-vip", checkKubernetesVIP},
	{"TW034", "service-endpoints-mismatch", checkServiceEndpoints},
	{"TW040", "overlay-route", checkOverlayRoutes},
	{"TW041", "vxlan-neighbour", checkVxlanNeighbours},
	{"TW042", "vxlan-fdb", checkVxlanFDB},
	{"TW043", "pod-mtu", checkPodMTU},
	{"TW044", "vxlan-mtu", checkVxlanMTU},
	{"TW045", "host-gw-peer-not-on-segment", checkHostGWSegment},
	{"TW050", "subnet-file", checkSubnetFile},
	{"TW051", "cni-plugins", checkCNIPlugins},
	{"TW060", "rp-filter", checkRPFilter},
	{"TW061", "conntrack-full", checkConntrack},
	{"TW062", "cidr-overlap", checkCIDROverlap},
	{"TW063", "route-localnet", checkRouteLocalnet},
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

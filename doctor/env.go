package doctor

import (
	"net/netip"
	"strings"

	"github.com/twillnet/twill/kubeview"
	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

// Config holds what doctor cannot learn from the node itself.
type Config struct {
	// ClusterCIDR overrides the pod network read from the subnet file.
	ClusterCIDR netip.Prefix
	// ServiceCIDR is the cluster's Service range (default 10.96.0.0/12).
	ServiceCIDR netip.Prefix
	// KubernetesServiceIP is the ClusterIP of default/kubernetes
	// (default: the first address of ServiceCIDR).
	KubernetesServiceIP netip.Addr
	// Ignore lists check IDs to suppress.
	Ignore []string
	// Cluster is the Kubernetes API's view of Services, EndpointSlices
	// and Pods (apiload.Load, `twill doctor --kubeconfig`); nil skips the
	// checks that compare the node with the API (TW033, TW034).
	Cluster *kubeview.View
}

// DefaultServiceCIDR is kubeadm's default Service range.
var DefaultServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")

// env is the snapshot plus the facts derived from it once, shared by checks.
type env struct {
	snap *nodestate.Snapshot
	cfg  Config

	// cluster is the pod network; invalid when unknown.
	cluster netip.Prefix
	// subnet is this node's pod subnet (network address form); invalid when unknown.
	subnet netip.Prefix
	// cluster6 and subnet6 are the same for IPv6 (from the subnet file's
	// IPV6_NETWORK and IPV6_SUBNET); invalid when the node runs no IPv6
	// or they are unknown.
	cluster6, subnet6 netip.Prefix
	// subnetInfo is the parsed subnet file, when one exists.
	subnetInfo *subnetfile.Info
	subnetPath string

	// legacy and nftIpt are the parsed iptables dumps (IPv4); nil when the
	// backend was not captured; their errors are in parseErr.
	legacy, nftIpt *netfilter.Ruleset
	// legacy6 and nftIpt6 are the parsed ip6tables dumps of the same
	// backends; nil when not captured or empty.
	legacy6, nftIpt6 *netfilter.Ruleset
	// nft is the parsed nftables rule set; nil when not captured.
	nft      *netfilter.NftRuleset
	parseErr map[string]error

	links map[string]*nodestate.Link

	// fwd is trace's answer to the pod probes (forward), computed on first
	// use; fwd6 the same for IPv6 (runsIPv6 nodes).
	fwd, fwd6 *forward
	// overlayMemo holds expectedOverlay's answer once computed (overlay.go).
	overlayMemo *overlayMemo
}

func newEnv(s *nodestate.Snapshot, cfg Config) *env {
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if !cfg.KubernetesServiceIP.IsValid() {
		cfg.KubernetesServiceIP = cfg.ServiceCIDR.Masked().Addr().Next()
	}
	e := &env{snap: s, cfg: cfg, parseErr: map[string]error{}, links: map[string]*nodestate.Link{}}
	for i := range s.Links {
		e.links[s.Links[i].Name] = &s.Links[i]
	}
	for _, f := range s.Files.SubnetFiles {
		if !f.Exists {
			continue
		}
		info, err := subnetfile.Parse(f.Path, f.Content)
		if err != nil {
			e.parseErr["subnet file"] = err
			continue
		}
		e.subnetInfo, e.subnetPath = &info, f.Path
		break
	}
	switch {
	case cfg.ClusterCIDR.IsValid():
		e.cluster = cfg.ClusterCIDR.Masked()
	case e.subnetInfo != nil:
		e.cluster = e.subnetInfo.Network.Masked()
	}
	if e.subnetInfo != nil {
		e.subnet = e.subnetInfo.Subnet.Masked()
		e.cluster6, e.subnet6 = e.subnetInfo.IPv6Network.Masked(), e.subnetInfo.IPv6Subnet.Masked()
	}
	if s.Iptables.Legacy.Available && s.Iptables.Legacy.Err == "" {
		e.legacy, e.parseErr[nodestate.BackendIptablesLegacy] = parseIpt("iptables-legacy-save", s.Iptables.Legacy.Save)
	}
	if s.Iptables.NFT.Available && s.Iptables.NFT.Err == "" {
		e.nftIpt, e.parseErr[nodestate.BackendIptablesNFT] = parseIpt("iptables-nft-save", s.Iptables.NFT.Save)
	}
	if s.Iptables.Legacy.Available && strings.TrimSpace(s.Iptables.Legacy.Save6) != "" {
		e.legacy6, e.parseErr["ip6tables-legacy"] = parseIpt("ip6tables-legacy-save", s.Iptables.Legacy.Save6)
	}
	if s.Iptables.NFT.Available && strings.TrimSpace(s.Iptables.NFT.Save6) != "" {
		e.nftIpt6, e.parseErr["ip6tables-nft"] = parseIpt("ip6tables-nft-save", s.Iptables.NFT.Save6)
	}
	if s.Nftables.Available && s.Nftables.Err == "" && strings.TrimSpace(s.Nftables.JSON) != "" {
		r, err := netfilter.ParseNftJSON("nft -j list ruleset", []byte(s.Nftables.JSON))
		e.nft, e.parseErr["nft"] = r, err
		if err != nil {
			e.nft = nil
		}
	}
	for k, v := range e.parseErr {
		if v == nil {
			delete(e.parseErr, k)
		}
	}
	return e
}

func parseIpt(src, text string) (*netfilter.Ruleset, error) {
	r, err := netfilter.ParseIptablesSave(src, text)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// backend is one parsed iptables backend with its name.
type backend struct {
	name string // "legacy" or "nft"
	rs   *netfilter.Ruleset
}

// iptParseProblem returns why some captured iptables dump could not be
// parsed ("" when all parsed): checks over iptables rules do not run on half
// of the rules.
func (e *env) iptParseProblem() string {
	var why []string
	for _, name := range []string{nodestate.BackendIptablesLegacy, nodestate.BackendIptablesNFT, "ip6tables-legacy", "ip6tables-nft"} {
		if err, ok := e.parseErr[name]; ok {
			why = append(why, err.Error())
		}
	}
	if len(why) == 0 {
		return ""
	}
	return "iptables rules could not be parsed: " + strings.Join(why, "; ")
}

// iptBackends returns the parsed iptables backends, legacy first.
func (e *env) iptBackends() []backend { return backendsOf(e.legacy, e.nftIpt) }

// ip6tBackends returns the parsed ip6tables backends, legacy first.
func (e *env) ip6tBackends() []backend { return backendsOf(e.legacy6, e.nftIpt6) }

// backendsOf names the parsed dumps of the two backends, leaving out the
// ones not captured.
func backendsOf(legacy, nft *netfilter.Ruleset) []backend {
	var out []backend
	if legacy != nil {
		out = append(out, backend{"legacy", legacy})
	}
	if nft != nil {
		out = append(out, backend{nodestate.BackendNft, nft})
	}
	return out
}

// sysctl returns a sysctl's value and whether it was present.
func (e *env) sysctl(name string) (string, bool) {
	v, ok := e.snap.Sysctls[name]
	return v, ok
}

// isPodNode reports whether this node carries pods: a pod bridge, a subnet
// file or CNI configuration exists. Checks of pod-network prerequisites
// only apply to such nodes.
func (e *env) isPodNode() bool {
	return e.subnetInfo != nil || e.links["cni0"] != nil || len(e.snap.Files.CNIConfigs) > 0
}

// vxlanLinks returns the node's vxlan devices.
func (e *env) vxlanLinks() []*nodestate.Link {
	var out []*nodestate.Link
	for i := range e.snap.Links {
		if e.snap.Links[i].Kind == "vxlan" && e.snap.Links[i].Vxlan != nil {
			out = append(out, &e.snap.Links[i])
		}
	}
	return out
}

// addrsOf returns the IPv4/IPv6 prefixes assigned to a link.
func (e *env) addrsOf(link string) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range e.snap.Addrs {
		if a.Link == link {
			out = append(out, a.Prefix)
		}
	}
	return out
}

// podBridge returns the name of the bridge that holds the node's pod
// gateway address, "" when none.
func (e *env) podBridge() string {
	if l := e.links["cni0"]; l != nil {
		return "cni0"
	}
	for _, a := range e.snap.Addrs {
		if l := e.links[a.Link]; l != nil && l.Kind == "bridge" && e.cluster.IsValid() && e.cluster.Contains(a.Prefix.Addr()) {
			return l.Name
		}
	}
	return ""
}

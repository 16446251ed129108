package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/netfilter"
)

// maxJumpDepth bounds the chain walks of the Service checks (the kernel
// limits nesting too; a loop in a dump must not hang doctor).
const maxJumpDepth = 64

// dnatReachable reports whether some chain reachable from start (in table t)
// holds a DNAT rule, bounded in depth.
func dnatReachable(t *netfilter.Table, start string, depth int) bool {
	if depth > maxJumpDepth {
		return false
	}
	c := t.Chain(start)
	if c == nil {
		return false
	}
	for _, r := range c.Rules {
		if r.Target == "DNAT" {
			return true
		}
		if t.Chain(r.Target) != nil && dnatReachable(t, r.Target, depth+1) {
			return true
		}
	}
	return false
}

// vipOf returns the ClusterIP a KUBE-SERVICES rule matches, if any.
func vipOf(r *netfilter.Rule) (netip.Addr, bool) {
	if !r.Destination.Set() || r.Destination.Negated {
		return netip.Addr{}, false
	}
	s := strings.TrimSuffix(r.Destination.Value, "/32")
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

func checkServiceVIP(e *env) ([]Finding, string) {
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	bks := e.iptBackends()
	if len(bks) == 0 && e.nft == nil {
		return nil, e.iptUnavailable()
	}
	var out []Finding
	for _, b := range bks {
		nat := b.rs.Table("nat")
		if nat == nil || nat.Chain("KUBE-SERVICES") == nil {
			continue
		}
		seen := map[netip.Addr]bool{}
		for _, r := range nat.Chain("KUBE-SERVICES").Rules {
			vip, ok := vipOf(r)
			if !ok || !strings.HasPrefix(r.Target, "KUBE-") {
				continue
			}
			seen[vip] = true
			if strings.HasPrefix(r.Target, "KUBE-SVC-") || strings.HasPrefix(r.Target, "KUBE-SVL-") {
				if !dnatReachable(nat, r.Target, 0) {
					out = append(out, vipFinding(e, vip, fmt.Sprintf("iptables-%s nat/KUBE-SERVICES rule %d sends %s to %s, which reaches no DNAT rule", b.name, r.Num, vip, r.Target)))
				}
			}
		}
		if !seen[e.cfg.KubernetesServiceIP] {
			out = append(out, vipFinding(e, e.cfg.KubernetesServiceIP, fmt.Sprintf("iptables-%s nat/KUBE-SERVICES has %d Service rules but none for %s (default/kubernetes)", b.name, len(seen), e.cfg.KubernetesServiceIP)))
		}
		for _, hook := range []string{"PREROUTING", "OUTPUT"} {
			if !jumpsTo(nat.Chain(hook), "KUBE-SERVICES") {
				out = append(out, vipFinding(e, e.cfg.KubernetesServiceIP, fmt.Sprintf("iptables-%s nat/%s does not jump to KUBE-SERVICES: Service rules are never evaluated for %s traffic", b.name, hook, map[string]string{"PREROUTING": "pod", "OUTPUT": "the node's own"}[hook])))
			}
		}
	}
	if e.nft != nil {
		if t := e.nft.Table("ip", "kube-proxy"); t != nil && !nftTranslates(t, e.cfg.KubernetesServiceIP.String()) {
			out = append(out, vipFinding(e, e.cfg.KubernetesServiceIP, fmt.Sprintf("nftables table ip kube-proxy has no service-ips element and no dnat for %s (default/kubernetes)", e.cfg.KubernetesServiceIP)))
		}
	}
	return out, ""
}

func jumpsTo(c *netfilter.Chain, target string) bool {
	if c == nil {
		return false
	}
	for _, r := range c.Rules {
		if r.Target == target {
			return true
		}
	}
	return false
}

// nftTranslates reports whether kube-proxy's nftables table translates
// vip: an element of a verdict map (kube-proxy's service-ips) names it, or
// a rule that names it does a dnat. A rule that only names it (the Service
// chain's masquerade mark) does not translate anything.
func nftTranslates(t *netfilter.NftTable, vip string) bool {
	for _, set := range t.Sets {
		if set.Map != "verdict" {
			continue
		}
		for _, el := range set.Elements {
			if strings.Contains(string(el), `"`+vip+`"`) {
				return true
			}
		}
	}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			mentions, dnat := false, false
			for _, x := range r.Expr {
				mentions = mentions || strings.Contains(string(x), `"`+vip+`"`)
				dnat = dnat || strings.Contains(string(x), `"dnat"`)
			}
			if mentions && dnat {
				return true
			}
		}
	}
	return false
}

func vipFinding(e *env, vip netip.Addr, evidence string) Finding {
	return Finding{
		Severity: Error,
		Failure:  "F5",
		Title:    fmt.Sprintf("Service IP %s is not translated on this node", vip),
		Evidence: []string{evidence},
		Explanation: "Connections to the Service IP are not rewritten to an endpoint, so they go to the default route and time out " +
			"(`dial tcp " + vip.String() + ":443: i/o timeout` in Flannel, CoreDNS and every in-cluster client). kube-proxy is not running, misconfigured, or its rules were lost.",
		Fix: "check kube-proxy on this node (kubectl -n kube-system logs ds/kube-proxy; its --proxy-mode and --cluster-cidr), then restart it so it rewrites its rules",
	}
}

func checkServiceProxy(e *env) ([]Finding, string) {
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	if len(e.iptBackends()) == 0 && e.nft == nil {
		return nil, e.iptUnavailable()
	}
	if !e.isPodNode() {
		return nil, ""
	}
	for _, b := range e.iptBackends() {
		if nat := b.rs.Table("nat"); nat != nil && nat.Chain("KUBE-SERVICES") != nil {
			return nil, ""
		}
	}
	if e.nft != nil && e.nft.Table("ip", "kube-proxy") != nil {
		return nil, ""
	}
	if e.links["kube-ipvs0"] != nil || e.snap.IPVS != nil {
		return nil, ""
	}
	return []Finding{{
		Severity:    Warning,
		Failure:     "F5",
		Title:       "no Service proxy rules found (no KUBE-SERVICES chain, no kube-proxy nft table, no IPVS)",
		Evidence:    []string{"nat/KUBE-SERVICES absent in both iptables backends; nftables table ip kube-proxy absent; no kube-ipvs0 device"},
		Explanation: "Unless an eBPF Service proxy replaces kube-proxy on this node, Service IPs (like " + e.cfg.KubernetesServiceIP.String() + ") are not reachable from here.",
		Fix:         "check that kube-proxy runs on this node (kubectl -n kube-system get pods -o wide | grep kube-proxy)",
	}}, ""
}

func checkIPVSLocal(e *env) ([]Finding, string) {
	var locals []netip.Addr
	for _, r := range e.snap.Routes {
		if r.Table == 255 && r.Type == "local" && r.Dev == "kube-ipvs0" {
			locals = append(locals, r.Dst.Addr())
		}
	}
	if len(locals) == 0 {
		return nil, ""
	}
	virtual := map[netip.Addr]bool{}
	if e.snap.IPVS != nil {
		for _, s := range e.snap.IPVS.Services {
			virtual[s.Addr.Addr()] = true
		}
	}
	var missing []string
	for _, a := range locals {
		if !virtual[a] {
			missing = append(missing, a.String())
		}
	}
	if len(missing) == 0 {
		return nil, ""
	}
	ev := []string{fmt.Sprintf("table local: local %s dev kube-ipvs0", strings.Join(missing, ", "))}
	if e.snap.IPVS == nil {
		ev = append(ev, "/proc/net/ip_vs is absent: the kernel has no IPVS (module ip_vs not loaded)")
	} else {
		ev = append(ev, fmt.Sprintf("IPVS has %d virtual servers, none for these addresses", len(e.snap.IPVS.Services)))
	}
	return []Finding{{
		Severity: Error,
		Failure:  "F5",
		Title:    fmt.Sprintf("%d Service IPs are local addresses on kube-ipvs0 without an IPVS virtual server", len(missing)),
		Evidence: ev,
		Explanation: "kube-proxy in IPVS mode binds every ClusterIP to kube-ipvs0, so the node accepts packets to them locally. Without a matching IPVS virtual server nothing answers: " +
			"connections to these Service IPs hang. Deleting the routes by hand does not last: kube-proxy puts them back.",
		Fix: "repair kube-proxy: load the IPVS modules (ip_vs, ip_vs_rr, nf_conntrack) or switch it back to --proxy-mode=iptables consistently, then restart it; check with ipvsadm -Ln",
	}}, ""
}

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
	p, err := netip.ParsePrefix(r.Destination.Value)
	if err == nil {
		return p.Addr(), p.IsSingleIP()
	}
	a, err := netip.ParseAddr(r.Destination.Value)
	return a, err == nil
}

// ipFamily is one family's kube-proxy rules: its iptables tool and dumps,
// the nftables family of kube-proxy's table, and the ClusterIP of
// default/kubernetes when it is of this family (kube-proxy gives the
// Service one ClusterIP per family it has; default/kubernetes has only the
// apiserver's family).
type ipFamily struct {
	tool     string // "iptables", "ip6tables"
	nftFam   string // "ip", "ip6"
	backends []backend
	kubeVIP  netip.Addr
}

// families returns the IPv4 rules, then the IPv6 ones when the node holds
// any ip6tables rules or runs IPv6 pods.
func (e *env) families() []ipFamily {
	out := []ipFamily{{tool: "iptables", nftFam: "ip", backends: e.iptBackends()}}
	if e.cfg.KubernetesServiceIP.Is4() {
		out[0].kubeVIP = e.cfg.KubernetesServiceIP
	}
	v6 := ipFamily{tool: "ip6tables", nftFam: "ip6", backends: e.ip6tBackends()}
	if e.cfg.KubernetesServiceIP.Is6() {
		v6.kubeVIP = e.cfg.KubernetesServiceIP
	}
	if len(v6.backends) > 0 || e.runsIPv6() || v6.kubeVIP.IsValid() {
		out = append(out, v6)
	}
	return out
}

// backend returns the family's dump of the named iptables backend
// ("legacy", "nft"), nil when not captured.
func (f ipFamily) backend(name string) *netfilter.Ruleset {
	for _, b := range f.backends {
		if b.name == name {
			return b.rs
		}
	}
	return nil
}

// familyForward is trace's answer to the family's pod probes of the
// FORWARD hook (forward or forward6), nil when the node runs no pods of
// that family.
func (e *env) familyForward(f ipFamily) *forward {
	for _, fw := range e.forwards() {
		if fw.v6 == (f.tool == "ip6tables") {
			return fw
		}
	}
	return nil
}

func checkServiceVIP(e *env) ([]Finding, string) {
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	if len(e.iptBackends()) == 0 && e.nft == nil {
		return nil, e.iptUnavailable()
	}
	var out []Finding
	for _, fam := range e.families() {
		out = append(out, serviceVIPFindings(e, fam)...)
	}
	return out, ""
}

// serviceVIPFindings checks one family's kube-proxy rules: every Service
// rule of KUBE-SERVICES reaches a DNAT, default/kubernetes has one (when
// its ClusterIP is of this family), and the nat hooks jump to
// KUBE-SERVICES.
func serviceVIPFindings(e *env, fam ipFamily) []Finding {
	var out []Finding
	for _, b := range fam.backends {
		nat := b.rs.Table("nat")
		if nat == nil || nat.Chain("KUBE-SERVICES") == nil {
			continue
		}
		where := fam.tool + "-" + b.name
		seen := map[netip.Addr]bool{}
		for _, r := range nat.Chain("KUBE-SERVICES").Rules {
			vip, ok := vipOf(r)
			if !ok || !strings.HasPrefix(r.Target, "KUBE-") {
				continue
			}
			seen[vip] = true
			if strings.HasPrefix(r.Target, "KUBE-SVC-") || strings.HasPrefix(r.Target, "KUBE-SVL-") {
				if !dnatReachable(nat, r.Target, 0) {
					out = append(out, vipFinding(e, vip, fmt.Sprintf("%s nat/KUBE-SERVICES rule %d sends %s to %s, which reaches no DNAT rule", where, r.Num, vip, r.Target)))
				}
			}
		}
		vip := fam.kubeVIP
		if vip.IsValid() && !seen[vip] {
			out = append(out, vipFinding(e, vip, fmt.Sprintf("%s nat/KUBE-SERVICES has %d Service rules but none for %s (default/kubernetes)", where, len(seen), vip)))
		}
		if !vip.IsValid() {
			for v := range seen {
				vip = v // name some Service of this family
				break
			}
		}
		for _, hook := range []string{"PREROUTING", "OUTPUT"} {
			if !jumpsTo(nat.Chain(hook), "KUBE-SERVICES") {
				out = append(out, vipFinding(e, vip, fmt.Sprintf("%s nat/%s does not jump to KUBE-SERVICES: Service rules are never evaluated for %s traffic", where, hook, map[string]string{"PREROUTING": "pod", "OUTPUT": "the node's own"}[hook])))
			}
		}
	}
	if e.nft != nil && fam.kubeVIP.IsValid() {
		if t := e.nft.Table(fam.nftFam, "kube-proxy"); t != nil && !nftTranslates(t, fam.kubeVIP.String()) {
			out = append(out, vipFinding(e, fam.kubeVIP, fmt.Sprintf("nftables table %s kube-proxy has no service-ips element and no dnat for %s (default/kubernetes)", fam.nftFam, fam.kubeVIP)))
		}
	}
	return out
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
// vip: an element of its service-ips verdict map names it, or a rule that
// names it does a dnat. A rule that only names it (the Service chain's
// masquerade mark) does not translate anything, nor does an element of
// another verdict map (no-endpoint-services sends a Service without
// endpoints to its reject chain, as iptables mode's "has no endpoints"
// REJECT, which TW030 reports too).
func nftTranslates(t *netfilter.NftTable, vip string) bool {
	for _, set := range t.Sets {
		if set.Map != "verdict" || set.Name != "service-ips" {
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
			"(`dial tcp " + netip.AddrPortFrom(vip, 443).String() + ": i/o timeout` in Flannel, CoreDNS and every in-cluster client). kube-proxy is not running, misconfigured, or its rules were lost.",
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
	if e.links["kube-ipvs0"] != nil || e.snap.IPVS != nil {
		return nil, ""
	}
	// The node's first pod family must have Services: IPv4, or IPv6 on an
	// IPv6-only node. A dual-stack pod network with IPv4-only Services is
	// a valid cluster (single-stack Service range), so the IPv6 half of a
	// dual-stack node is not required to have Service rules.
	fam := e.families()[0]
	if !e.subnet.IsValid() && e.runsIPv6() {
		fam = e.families()[1]
	}
	var out []Finding
	if !hasServiceRules(e, fam) {
		label := map[string]string{"iptables": "", "ip6tables": "IPv6 "}[fam.tool]
		out = append(out, Finding{
			Severity: Warning,
			Failure:  "F5",
			Title:    fmt.Sprintf("no %sService proxy rules found (no KUBE-SERVICES chain in %s, no %s kube-proxy nft table, no IPVS)", label, fam.tool, fam.nftFam),
			Evidence: []string{fmt.Sprintf("nat/KUBE-SERVICES absent in both %s backends; nftables table %s kube-proxy absent; no kube-ipvs0 device", fam.tool, fam.nftFam)},
			Explanation: "Unless an eBPF Service proxy replaces kube-proxy on this node, " + label + "Service IPs are not reachable from here" +
				map[string]string{"iptables": " (like " + e.cfg.KubernetesServiceIP.String() + ").", "ip6tables": ": kube-proxy runs without IPv6 (a single-stack IPv4 cluster, or kube-proxy cannot use ip6tables)."}[fam.tool],
			Fix: "check that kube-proxy runs on this node (kubectl -n kube-system get pods -o wide | grep kube-proxy)" +
				map[string]string{"iptables": "", "ip6tables": " and that the cluster is dual-stack (--service-cluster-ip-range with an IPv6 range; kube-proxy logs name the families it runs)"}[fam.tool],
		})
	}
	return out, ""
}

// hasServiceRules reports whether one family has kube-proxy Service rules:
// a nat/KUBE-SERVICES chain in an iptables backend, or kube-proxy's nft
// table of that family.
func hasServiceRules(e *env, fam ipFamily) bool {
	for _, b := range fam.backends {
		if nat := b.rs.Table("nat"); nat != nil && nat.Chain("KUBE-SERVICES") != nil {
			return true
		}
	}
	return e.nft != nil && e.nft.Table(fam.nftFam, "kube-proxy") != nil
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

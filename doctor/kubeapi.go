package doctor

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/twillnet/twill/kubeview"
	"github.com/twillnet/twill/netfilter"
)

// NoKubeconfig is the reason the API checks (TW033, TW034) give when
// Config.Cluster is nil. They then report neither findings nor a
// not-checked entry: most runs (snapshots, the lab without an API server)
// have no API, and a permanent not-checked line would hide the ones that
// matter. `twill doctor --kubeconfig` turns them on.
const NoKubeconfig = "not checked: no --kubeconfig"

// apiChecksReportMissing makes TW033/TW034 list themselves as not checked
// (with NoKubeconfig) when Config.Cluster is nil. Off: see NoKubeconfig.
const apiChecksReportMissing = false

func noCluster() ([]Finding, string) {
	if apiChecksReportMissing {
		return nil, NoKubeconfig
	}
	return nil, ""
}

// checkKubernetesVIP (TW033) takes the ClusterIP of default/kubernetes
// from the API (not guessed from --service-cidr like TW030) and checks
// that this node's Service proxy translates it: a KUBE-SERVICES rule for
// it in some iptables backend that reaches a DNAT, an element of
// nftables' kube-proxy table, or an IPVS virtual server.
func checkKubernetesVIP(e *env) ([]Finding, string) {
	if e.cfg.Cluster == nil {
		return noCluster()
	}
	svc := e.cfg.Cluster.Service("default", "kubernetes")
	if svc == nil || !svc.ClusterIP.IsValid() {
		return nil, "the API has no Service default/kubernetes with a ClusterIP (is this the right cluster?)"
	}
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	if len(e.iptBackends()) == 0 && e.nft == nil && e.snap.IPVS == nil {
		return nil, e.iptUnavailable()
	}
	vip := svc.ClusterIP
	var seen []string
	for _, b := range e.iptBackends() {
		nat := b.rs.Table("nat")
		if nat == nil || nat.Chain("KUBE-SERVICES") == nil {
			continue
		}
		for _, r := range nat.Chain("KUBE-SERVICES").Rules {
			if a, ok := vipOf(r); !ok || a != vip || !strings.HasPrefix(r.Target, "KUBE-") {
				continue
			}
			if dnatReachable(nat, r.Target, 0) && jumpsTo(nat.Chain("PREROUTING"), "KUBE-SERVICES") && jumpsTo(nat.Chain("OUTPUT"), "KUBE-SERVICES") {
				return nil, ""
			}
			seen = append(seen, fmt.Sprintf("iptables-%s nat/KUBE-SERVICES rule %d matches %s but %s reaches no DNAT, or nat/PREROUTING or OUTPUT does not jump to KUBE-SERVICES", b.name, r.Num, vip, r.Target))
		}
	}
	if e.nft != nil {
		if t := e.nft.Table("ip", "kube-proxy"); t != nil && nftTranslates(t, vip.String()) {
			return nil, ""
		}
	}
	if e.snap.IPVS != nil {
		for _, s := range e.snap.IPVS.Services {
			if s.Addr.Addr() == vip {
				return nil, ""
			}
		}
	}
	ev := []string{fmt.Sprintf("the API says default/kubernetes has ClusterIP %s (%s)", vip, portsOf(svc))}
	if len(seen) == 0 {
		ev = append(ev, fmt.Sprintf("no iptables backend's nat/KUBE-SERVICES, no nftables ip kube-proxy table and no IPVS virtual server on this node handles %s", vip))
	}
	ev = append(ev, seen...)
	if vip != e.cfg.KubernetesServiceIP {
		ev = append(ev, fmt.Sprintf("TW030 checked %s (from --service-cidr/--kubernetes-service-ip), not the API's %s: pass --service-cidr for this cluster", e.cfg.KubernetesServiceIP, vip))
	}
	f := vipFinding(e, vip, ev[0])
	f.Title = fmt.Sprintf("the kubernetes Service IP %s (from the API) is not translated on this node", vip)
	f.Evidence = ev
	return []Finding{f}, ""
}

func portsOf(s *kubeview.Service) string {
	var p []string
	for _, sp := range s.Ports {
		p = append(p, sp.String())
	}
	return "ports " + strings.Join(p, ", ")
}

// checkServiceEndpoints (TW034) compares, for every Service port in the
// API, the DNAT destinations that iptables-mode kube-proxy rules send its
// ClusterIP to with the ready endpoints of its EndpointSlices.
func checkServiceEndpoints(e *env) ([]Finding, string) {
	if e.cfg.Cluster == nil {
		return noCluster()
	}
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	var nats []backendNat
	for _, b := range e.iptBackends() {
		if nat := b.rs.Table("nat"); nat != nil && nat.Chain("KUBE-SERVICES") != nil {
			nats = append(nats, backendNat{b.name, nat})
		}
	}
	if len(nats) == 0 {
		return nil, "no iptables nat/KUBE-SERVICES chain: endpoints are compared for kube-proxy's iptables mode only (nftables or IPVS mode, or no kube-proxy; see TW031)"
	}
	var out []Finding
	for _, svc := range e.cfg.Cluster.Services {
		if !svc.ClusterIP.IsValid() {
			continue
		}
		for _, p := range svc.Ports {
			if p.Protocol != "TCP" && p.Protocol != "UDP" && p.Protocol != "SCTP" {
				continue
			}
			for _, bn := range nats {
				if f, ok := endpointsFinding(e, bn, &svc, p); ok {
					out = append(out, f)
				}
			}
		}
	}
	return out, ""
}

type backendNat struct {
	name string
	nat  *netfilter.Table
}

// endpointsFinding compares one Service port in one backend.
func endpointsFinding(e *env, bn backendNat, svc *kubeview.Service, p kubeview.ServicePort) (Finding, bool) {
	var chains []string
	for _, r := range bn.nat.Chain("KUBE-SERVICES").Rules {
		if a, ok := vipOf(r); ok && a == svc.ClusterIP && ruleMatchesPort(r, p) && strings.HasPrefix(r.Target, "KUBE-") && bn.nat.Chain(r.Target) != nil {
			chains = append(chains, r.Target)
		}
	}
	want := svc.ReadyEndpoints(p)
	local := false
	for _, c := range chains {
		local = local || strings.HasPrefix(c, "KUBE-SVL-")
	}
	if local { // internalTrafficPolicy: Local: only this node's endpoints
		want = slices.DeleteFunc(want, func(a netip.AddrPort) bool { return !endpointOnNode(svc, p, a, e.snap.Node) })
	}
	got := map[netip.AddrPort]bool{}
	for _, c := range chains {
		dnatTargets(bn.nat, c, 0, got)
	}
	var missing, stale []string
	for _, a := range want {
		if !got[a] {
			missing = append(missing, a.String())
		}
	}
	for a := range got {
		if !slices.Contains(want, a) {
			stale = append(stale, a.String())
		}
	}
	if len(missing) == 0 && len(stale) == 0 {
		return Finding{}, false
	}
	slices.Sort(missing)
	slices.Sort(stale)
	where := fmt.Sprintf("iptables-%s nat/KUBE-SERVICES -> %s", bn.name, strings.Join(chains, ", "))
	if len(chains) == 0 {
		where = fmt.Sprintf("iptables-%s nat/KUBE-SERVICES has no rule for %s:%d/%s", bn.name, svc.ClusterIP, p.Port, strings.ToLower(p.Protocol))
	}
	ev := []string{where}
	if len(missing) > 0 {
		ev = append(ev, fmt.Sprintf("ready in the EndpointSlices but not in the rules (missing): %s", strings.Join(missing, ", ")))
	}
	if len(stale) > 0 {
		ev = append(ev, fmt.Sprintf("in the rules but not a ready endpoint (stale): %s", strings.Join(stale, ", ")))
	}
	return Finding{
		Severity: Warning,
		Failure:  "F5",
		Title:    fmt.Sprintf("Service %s port %s (%s): %d missing, %d stale endpoints in this node's rules", svc.Key(), p, svc.ClusterIP, len(missing), len(stale)),
		Evidence: ev,
		Explanation: "kube-proxy on this node balances the Service over other endpoints than the API lists as ready. Missing endpoints get no traffic from here; " +
			"stale ones get connections that time out or are refused (the pod is gone, not ready, or its IP reused). kube-proxy lags the API by a second or so: a mismatch that persists means it is stuck or not watching.",
		Fix: fmt.Sprintf("run doctor again in a few seconds; if it persists, check kube-proxy on node %s (kubectl -n kube-system logs ds/kube-proxy; its connection to the API server) and restart it; compare: kubectl -n %s get endpointslices -l kubernetes.io/service-name=%s", nodeName(e), svc.Namespace, svc.Name),
	}, true
}

func nodeName(e *env) string {
	if e.snap.Node != "" {
		return e.snap.Node
	}
	return "(this node)"
}

func endpointOnNode(svc *kubeview.Service, p kubeview.ServicePort, a netip.AddrPort, node string) bool {
	for _, ep := range svc.Endpoints {
		if ep.Addr == a && ep.PortName == p.Name && ep.Node == node {
			return true
		}
	}
	return false
}

// ruleMatchesPort reports whether a KUBE-SERVICES rule is for the port:
// its -p and --dport agree (a rule without them matches any port).
func ruleMatchesPort(r *netfilter.Rule, p kubeview.ServicePort) bool {
	if r.Protocol.Set() && !r.Protocol.Negated && !strings.EqualFold(r.Protocol.Value, p.Protocol) {
		return false
	}
	for _, m := range r.Matches {
		for _, o := range m.Options {
			if (o.Name == "--dport" || o.Name == "--destination-port") && len(o.Values) == 1 && !o.Negated {
				if o.Values[0] != fmt.Sprint(p.Port) {
					return false
				}
			}
		}
	}
	return true
}

// dnatTargets collects the --to-destination addresses of the DNAT rules
// reachable from chain start, bounded in depth.
func dnatTargets(t *netfilter.Table, start string, depth int, out map[netip.AddrPort]bool) {
	if depth > maxJumpDepth {
		return
	}
	c := t.Chain(start)
	if c == nil {
		return
	}
	for _, r := range c.Rules {
		if r.Target == "DNAT" {
			for _, o := range r.TargetOptions {
				if o.Name != "--to-destination" && o.Name != "--to" {
					continue
				}
				for _, v := range o.Values {
					if a, err := netip.ParseAddrPort(v); err == nil {
						out[a] = true
					}
				}
			}
			continue
		}
		if t.Chain(r.Target) != nil {
			dnatTargets(t, r.Target, depth+1, out)
		}
	}
}

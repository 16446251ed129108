package doctor

import (
	"fmt"
	"strconv"
	"strings"
)

// procPath turns a dotted sysctl name into its /proc/sys path.
func procPath(name string) string {
	return "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
}

// sysctlMustBeOne builds the kubeadm-style finding for a sysctl that must be 1.
func sysctlNotOne(e *env, name string, sev Severity, failure, explain string) []Finding {
	v, ok := e.sysctl(name)
	if ok && v == "1" {
		return nil
	}
	evidence := fmt.Sprintf("%s = %s", procPath(name), v)
	if !ok {
		evidence = fmt.Sprintf("%s does not exist", procPath(name))
	}
	f := Finding{
		Severity:    sev,
		Failure:     failure,
		Title:       fmt.Sprintf("%s contents are not set to 1", procPath(name)),
		Evidence:    []string{evidence},
		Explanation: explain,
		Fix: fmt.Sprintf("sysctl -w %s=1 and persist it: echo '%s = 1' > /etc/sysctl.d/90-twill.conf",
			name, name),
	}
	if ok {
		f.Actions = []Action{{Kind: ActSysctl, Name: name, Value: "1"}}
	} else if strings.HasPrefix(name, "net.bridge.") {
		f.Fix = "load br_netfilter (modprobe br_netfilter; echo br_netfilter > /etc/modules-load.d/br_netfilter.conf), then " + f.Fix
	}
	return []Finding{f}
}

func checkIPForward(e *env) ([]Finding, string) {
	return sysctlNotOne(e, "net.ipv4.ip_forward", Error, "F2",
		"The node does not route: packets between pods on different nodes, and from pods to the outside, are dropped. Only traffic that stays on the node's bridge works."), ""
}

func checkBridgeNF(e *env) ([]Finding, string) {
	if !e.isPodNode() {
		return nil, ""
	}
	return sysctlNotOne(e, "net.bridge.bridge-nf-call-iptables", Error, "F1",
		"Frames bridged between pods on this node skip iptables and conntrack. A pod calling a Service whose endpoint is on the same node and bridge gets the reply from the pod's own address, not the Service IP; it answers with RST and the call times out. Calls to endpoints on other nodes work, so it looks random."), ""
}

func checkBridgeNF6(e *env) ([]Finding, string) {
	if !e.isPodNode() {
		return nil, ""
	}
	sev, why := Warning, "The IPv6 twin of bridge-nf-call-iptables: same-node IPv6 Service calls time out."
	if e.hasIPv6Pods() || e.runsIPv6() {
		sev = Error
		why = "Pods here have IPv6 addresses, and IPv6 frames bridged between them skip ip6tables and conntrack (the IPv6 twin of bridge-nf-call-iptables=0). " +
			"A pod calling an IPv6 Service whose endpoint is on the same node and bridge gets the reply from the endpoint's own address, not the Service IP, resets it, and the call times out; " +
			"ip6tables rules for bridged pod traffic (forward accepts, network policies) do not run either."
	}
	return sysctlNotOne(e, "net.bridge.bridge-nf-call-ip6tables", sev, "F1", why), ""
}

func checkIPv6Forward(e *env) ([]Finding, string) {
	if !e.hasIPv6Pods() && !e.runsIPv6() {
		return nil, ""
	}
	return sysctlNotOne(e, "net.ipv6.conf.all.forwarding", Error, "F2",
		"The node has IPv6 pod addresses but does not route IPv6: IPv6 pod traffic cannot leave the node."), ""
}

// hasIPv6Pods reports whether the pod bridge carries a global IPv6 address.
func (e *env) hasIPv6Pods() bool {
	br := e.podBridge()
	if br == "" {
		return false
	}
	for _, p := range e.addrsOf(br) {
		if p.Addr().Is6() && p.Addr().IsGlobalUnicast() {
			return true
		}
	}
	return false
}

func checkRPFilter(e *env) ([]Finding, string) {
	all, _ := e.sysctl("net.ipv4.conf.all.rp_filter")
	var devs []string
	var evidence []string
	for _, l := range e.snap.Links {
		if l.Kind != "vxlan" && l.Name != e.podBridge() {
			continue
		}
		v, ok := e.sysctl("net.ipv4.conf." + l.Name + ".rp_filter")
		if !ok {
			continue
		}
		// The kernel uses the larger of "all" and the interface value.
		eff := max(atoiOr(v, 0), atoiOr(all, 0))
		if eff == 1 {
			devs = append(devs, l.Name)
			evidence = append(evidence, fmt.Sprintf("net.ipv4.conf.%s.rp_filter = %s, net.ipv4.conf.all.rp_filter = %s: strict mode", l.Name, v, all))
		}
	}
	if len(devs) == 0 {
		return nil, ""
	}
	return []Finding{{
		Severity:    Warning,
		Failure:     "F7",
		Title:       fmt.Sprintf("strict reverse-path filtering on %s", strings.Join(devs, ", ")),
		Evidence:    evidence,
		Explanation: "With rp_filter=1 the kernel drops packets whose source would be routed back out another interface. Pod traffic that comes back asymmetrically (several underlay links, policy routing, host-gw next to vxlan) is silently dropped.",
		Fix:         "use loose mode: sysctl -w net.ipv4.conf.all.rp_filter=2 (and the same for each device listed)",
	}}, ""
}

func checkConntrack(e *env) ([]Finding, string) {
	ct := e.snap.Conntrack
	if ct.Max <= 0 {
		return nil, "conntrack table size unknown (net.netfilter.nf_conntrack_max not captured)"
	}
	pct := ct.Count * 100 / ct.Max
	sev := Severity("")
	switch {
	case pct >= 90:
		sev = Error
	case pct >= 75:
		sev = Warning
	default:
		return nil, ""
	}
	return []Finding{{
		Severity:    sev,
		Failure:     "F7",
		Title:       fmt.Sprintf("conntrack table %d%% full (%d of %d)", pct, ct.Count, ct.Max),
		Evidence:    []string{fmt.Sprintf("net.netfilter.nf_conntrack_count = %d, nf_conntrack_max = %d", ct.Count, ct.Max)},
		Explanation: "When the table is full the kernel drops new connections (dmesg: \"nf_conntrack: table full, dropping packet\"); Services and masqueraded traffic fail at random.",
		Fix:         fmt.Sprintf("raise the limit (sysctl -w net.netfilter.nf_conntrack_max=%d) and find what opens so many connections (conntrack -L | sort)", ct.Max*2),
	}}, ""
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return def
	}
	return n
}

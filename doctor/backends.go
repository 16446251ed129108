package doctor

import (
	"fmt"
	"strings"

	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nodestate"
)

// ruleCount counts the rules of a dump and names the tables holding them.
func ruleCount(rs *netfilter.Ruleset) (n int, where []string) {
	for _, t := range rs.Tables {
		k := 0
		for _, c := range t.Chains {
			k += len(c.Rules)
		}
		if k > 0 {
			where = append(where, fmt.Sprintf("%s: %d", t.Name, k))
		}
		n += k
	}
	return n, where
}

// checkBackendSplit (TW020): rules of one family in both iptables
// backends, per family (iptables, ip6tables).
func checkBackendSplit(e *env) ([]Finding, string) {
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	if len(e.iptBackends()) == 0 && len(e.ip6tBackends()) == 0 {
		return nil, e.iptUnavailable()
	}
	var out []Finding
	for _, fam := range e.families() {
		if f, ok := backendSplit(e, fam); ok {
			out = append(out, f)
		}
	}
	return out, ""
}

// backendSplit is TW020 for one family: a finding when both backends hold
// rules of it.
func backendSplit(e *env, fam ipFamily) (Finding, bool) {
	legacy, nft := fam.backend("legacy"), fam.backend(nodestate.BackendNft)
	if legacy == nil || nft == nil || legacy.Empty() || nft.Empty() {
		return Finding{}, false // one backend only: nothing can be split
	}
	nl, wl := ruleCount(legacy)
	nn, wn := ruleCount(nft)
	hint := "nft"
	if m := legacy.Table("mangle"); m != nil && (m.Chain("KUBE-IPTABLES-HINT") != nil || m.Chain("KUBE-KUBELET-CANARY") != nil) {
		hint = "legacy"
	}
	if m := nft.Table("mangle"); m != nil && (m.Chain("KUBE-IPTABLES-HINT") != nil || m.Chain("KUBE-KUBELET-CANARY") != nil) {
		hint = "nft"
	}
	other := map[string]string{"nft": "legacy", "legacy": "nft"}[hint]
	evidence := []string{
		fmt.Sprintf("%s-legacy-save: %d rules (%s)", fam.tool, nl, strings.Join(wl, ", ")),
		fmt.Sprintf("%s-nft-save: %d rules (%s)", fam.tool, nn, strings.Join(wn, ", ")),
		fmt.Sprintf("kubelet's hint chains say the node's backend is %s", hint),
	}
	return Finding{
		Severity: Error,
		Failure:  "F4",
		Title:    fam.tool + " rules are split across the legacy and nf_tables backends",
		Evidence: append(evidence, splitOutcomes(e.familyForward(fam))...),
		Explanation: "Both rule sets run, in an order nobody chose: an ACCEPT in one does not stop a DROP in the other, and tools that read only one backend show half the truth. " +
			"This happens when a container ships an iptables binary of the other backend than the host.",
		Fix: fmt.Sprintf("use one backend: find the component writing to %[3]s-%[1]s (%[3]s-%[1]s-save shows its chains), configure or upgrade it to use %[2]s (iptables-wrappers picks the host's backend), then flush the %[1]s tables", other, hint, fam.tool),
	}, true
}

// splitOutcomes says, per pod probe, what the FORWARD hook does when the
// backends' chains disagree: every possible outcome when it depends on the
// order of equal-priority hooks (which the kernel does not record), or the
// drop that wins whatever the order over an accept in the other backend.
func splitOutcomes(f *forward) []string {
	if f == nil {
		return nil
	}
	var out []string
	for _, hp := range f.hps {
		var orders []string
		for _, o := range hp.Outcomes {
			if o.Order != "" && o.By != nil {
				orders = append(orders, fmt.Sprintf("  if %s: %s by %s", o.Order, o.Verdict, o.By.Name()+": "+o.By.Where()))
			}
		}
		if len(orders) > 0 {
			out = append(out, fmt.Sprintf("FORWARD for %s depends on the order the kernel registered the equal-priority hooks, which it does not record:", hp.Probe))
			out = append(out, orders...)
			continue
		}
		for _, b := range hp.Blocked() {
			for _, a := range hp.Chains {
				if a.Verdict == "accept" && a.Priority == b.Priority && a.Backend != b.Backend && strings.HasPrefix(a.Backend, "iptables-") {
					out = append(out, fmt.Sprintf("FORWARD for %s: %s accepts, but %s %ss it whatever the order (%s)", hp.Probe, a.Name(), b.Name(), b.Verdict, b.Where()))
				}
			}
		}
	}
	return out
}

// guardChains are kube-proxy chains whose rules must never be unconditional
// ACCEPT/DROP/RETURN: when one is, the match was lost (FAILURES.md F4).
var guardChains = map[string]bool{
	"KUBE-FIREWALL": true, "KUBE-FORWARD": true, "KUBE-POSTROUTING": true,
	"KUBE-MARK-DROP": true, "KUBE-PROXY-FIREWALL": true, "KUBE-EXTERNAL-SERVICES": true,
}

// unconditional reports whether the rule matches every packet (only
// comments besides the target).
func unconditional(r *netfilter.Rule) bool {
	if r.Source.Set() || r.Destination.Set() || r.InIface.Set() || r.OutIface.Set() || r.Protocol.Set() || r.Fragment.Set() {
		return false
	}
	for _, m := range r.Matches {
		if m.Module != "comment" {
			return false
		}
	}
	return true
}

func checkLostMatch(e *env) ([]Finding, string) {
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	if len(e.iptBackends()) == 0 && len(e.ip6tBackends()) == 0 {
		return nil, e.iptUnavailable()
	}
	var out []Finding
	for _, fam := range e.families() {
		out = append(out, lostMatches(fam)...)
	}
	return out, ""
}

// lostMatches is TW021 for one family's backends.
func lostMatches(fam ipFamily) []Finding {
	var out []Finding
	for _, b := range fam.backends {
		for _, t := range b.rs.Tables {
			for _, c := range t.Chains {
				for _, r := range c.Rules {
					var what string
					switch {
					case guardChains[c.Name] && unconditional(r) && (r.Target == "DROP" || r.Target == "REJECT"):
						what = "drops every packet"
					case guardChains[c.Name] && unconditional(r) && r.Target == "ACCEPT":
						what = "accepts every packet"
					case guardChains[c.Name] && unconditional(r) && r.Target == "RETURN" && c.Name == "KUBE-POSTROUTING":
						what = "returns every packet (nothing is masqueraded)"
					case t.Name == "nat" && c.Name == "KUBE-SERVICES" && strings.HasPrefix(r.Target, "KUBE-SVC-") && r.Protocol.Set() && !hasDport(r):
						what = "matches every port of the Service IP"
					default:
						continue
					}
					out = append(out, Finding{
						Severity: Error,
						Failure:  "F4",
						Title:    fmt.Sprintf("%s-%s %s/%s rule %d %s: its match was lost", fam.tool, b.name, t.Name, c.Name, r.Num, what),
						Evidence: []string{fmt.Sprintf("%s-%s-save line %d: %s", fam.tool, b.name, r.Line, r.Text)},
						Explanation: "kube-proxy writes this rule with a mark or port match. An older iptables binary (for example 1.8.7 in a container on a 1.8.8+ host) " +
							"that did iptables-save | iptables-restore could not read the newer encoding and silently dropped the match. " +
							"A drop-all in KUBE-FIREWALL cuts the node off (even ping localhost fails); an accept-all in KUBE-FORWARD opens forwarding to everything.",
						Fix: "find the component with the older iptables binary (iptables -V in each hostNetwork container) and upgrade it to the host's version; " +
							"then restart kube-proxy so it rewrites its chains (or delete the rule: " + fam.tool + " -t " + t.Name + " -D " + c.Name + " " + fmt.Sprint(r.Num) + ")",
					})
				}
			}
		}
	}
	return out
}

func hasDport(r *netfilter.Rule) bool {
	for _, m := range r.Matches {
		for _, o := range m.Options {
			switch o.Name {
			case "--dport", "--destination-port", "--dports", "--destination-ports", "--ports":
				return true
			}
		}
	}
	return false
}

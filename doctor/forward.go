package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/nodestate"

	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/trace"
)

// forward is what trace's evaluator says the node's FORWARD hook does with
// the pod probes (trace.Host.PodProbes); computed once per run and shared by
// TW010, TW011 and TW020.
type forward struct {
	pods trace.PodProbes
	hps  []trace.HookProbe
	// why is set when nothing could be probed.
	why string
	// v6 says the probes are IPv6; network is the family's pod network
	// (invalid when unknown).
	v6      bool
	network netip.Prefix
}

func (e *env) forward() *forward {
	if e.fwd == nil {
		e.fwd = e.probeForward(false, trace.PodNetwork{Cluster: e.cluster, Subnet: e.subnet})
	}
	return e.fwd
}

// forward6 is forward for the node's IPv6 pod traffic (ip6tables, nft ip6
// and inet tables).
func (e *env) forward6() *forward {
	if e.fwd6 == nil {
		e.fwd6 = e.probeForward(true, trace.PodNetwork{Cluster: e.cluster6, Subnet: e.subnet6})
	}
	return e.fwd6
}

// forwards are the families' probe answers the forward checks look at:
// IPv4 unless the node is IPv6-only, and IPv6 when it runs IPv6 pods.
func (e *env) forwards() []*forward {
	var out []*forward
	if e.subnet.IsValid() || !e.runsIPv6() {
		out = append(out, e.forward())
	}
	if e.runsIPv6() {
		out = append(out, e.forward6())
	}
	return out
}

func (e *env) probeForward(v6 bool, n trace.PodNetwork) *forward {
	f := &forward{v6: v6, network: n.Cluster}
	h, err := trace.NewHostFamily(e.snap, v6, "FORWARD")
	if err != nil {
		f.why = err.Error()
		return f
	}
	if f.pods, err = h.PodProbes(n); err != nil {
		f.why = err.Error()
		return f
	}
	for _, p := range f.pods.Probes {
		f.hps = append(f.hps, h.ProbeHook("FORWARD", p))
	}
	return f
}

func checkForwardIptables(e *env) ([]Finding, string) {
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	if len(e.iptBackends()) == 0 {
		return nil, e.iptUnavailable()
	}
	return forwardFindings(e, false)
}

func checkForwardNft(e *env) ([]Finding, string) {
	if e.nft == nil {
		if err, ok := e.parseErr["nft"]; ok {
			return nil, fmt.Sprintf("nft rule set could not be parsed: %v", err)
		}
		if e.snap.Nftables.Err != "" {
			return nil, "nft: " + e.snap.Nftables.Err
		}
		return nil, ""
	}
	return forwardFindings(e, true)
}

// forwardFindings reports every place (firewall.PlacementsFor: iptables
// filter FORWARD per backend, native nft forward chains) that drops a pod
// probe, with the rule that decided, and the firewall's accepts there as
// the fix.
func forwardFindings(e *env, native bool) ([]Finding, string) {
	var out []Finding
	var why []string
	for _, f := range e.forwards() {
		if f.why != "" {
			why = append(why, f.why)
			continue
		}
		out = append(out, familyForwardFindings(f, native)...)
	}
	if len(out) == 0 && len(why) > 0 {
		return nil, strings.Join(why, "; ")
	}
	return out, ""
}

// familyForwardFindings is forwardFindings for one family's probes.
func familyForwardFindings(f *forward, native bool) []Finding {
	network, scope := f.network, "the pod network"
	if !network.IsValid() {
		network, scope = f.pods.Subnet, "this node's pod subnet (the cluster CIDR is unknown: pass --cluster-cidr to accept the whole pod network)"
	}
	family, tool := "", ""
	if f.v6 {
		family, tool = "IPv6 ", "ip6tables"
		scope = "the IPv6 " + strings.TrimPrefix(scope, "the ")
	}
	var out []Finding
	for _, pl := range firewall.PlacementsFor(f.hps) {
		if (pl.Backend == firewall.BackendNft) != native {
			continue
		}
		var evidence []string
		for _, a := range f.pods.Assumed {
			evidence = append(evidence, "assumed: "+a)
		}
		var first *trace.ChainVerdict
		for _, hp := range f.hps {
			for _, v := range hp.Blocked() {
				if v.Backend != pl.Backend || v.Family != pl.Family || v.Table != pl.Table || (native && v.Chain != pl.Chain) {
					continue
				}
				if first == nil {
					first = &v
				}
				evidence = append(evidence, verdictEvidence(hp.Probe, v)...)
			}
		}
		fix := fmt.Sprintf("accept %s where the drop is: %s (twill agent owns and re-asserts these)", scope, strings.Join(pl.Commands(network), "; "))
		finding := Finding{
			Severity: Error,
			Failure:  "F3",
			Evidence: evidence,
			Fix:      fix,
		}
		finding.Actions = []Action{{Kind: ActForwardAccept, Placement: &pl, Network: network}}
		if native {
			finding.Title = fmt.Sprintf("nftables chain %s %s %s (hook forward) drops %spod traffic", pl.Family, pl.Table, first.Chain, family)
			finding.Explanation = "Every base chain on the forward hook must accept a packet for it to pass; an accept in another table does not override this drop. " +
				"New connections between pods on different nodes (and between pods of this node, when bridge-nf-call-iptables=1) are dropped here."
		} else {
			backend := pl.Backend
			if f.v6 {
				backend = strings.Replace(backend, "iptables", tool, 1)
			}
			finding.Title = fmt.Sprintf("%s filter FORWARD drops %spod traffic (%s)", backend, family, shortVerdict(first.Decider()))
			finding.Explanation = "New connections between pods on different nodes (and from outside to pods, and between pods of this node when bridge-nf-call-iptables=1) are forwarded by this node and hit a DROP. " +
				"Docker sets the FORWARD policy to DROP; kube-proxy's KUBE-FORWARD only accepts marked or established packets. Traffic of the node itself still works, so it looks like a network partition between nodes."
		}
		out = append(out, finding)
	}
	return out
}

// verdictEvidence says what one base chain does with a probe, naming the
// rule, the jumps on the way and what could not be evaluated.
func verdictEvidence(p trace.Probe, v trace.ChainVerdict) []string {
	what := "dropped"
	if v.Verdict == "reject" {
		what = "rejected"
	}
	if v.Prob < 1 {
		what += fmt.Sprintf(" (with probability %.3g)", v.Prob)
	}
	lines := []string{fmt.Sprintf("%s: %s is %s by %s", v.Backend, p, what, v.Where())}
	if len(v.Jumps) > 0 {
		var via []string
		for _, j := range v.Jumps {
			via = append(via, fmt.Sprintf("%s rule %d -> %s", j.From, j.Rule, j.To))
		}
		lines = append(lines, "  via "+strings.Join(via, ", "))
	}
	for _, u := range v.Uncertain {
		lines = append(lines, "  uncertain: "+u)
	}
	return lines
}

func shortVerdict(d trace.Step) string {
	if d.Rule == 0 {
		return fmt.Sprintf("chain %s %s", d.Chain, d.Action)
	}
	verb, _, _ := strings.Cut(d.Action, " ")
	return fmt.Sprintf("%s rule %d, -j %s", d.Chain, d.Rule, verb)
}

// iptUnavailable explains why no iptables backend could be read.
func (e *env) iptUnavailable() string {
	var why []string
	for _, b := range []struct {
		name string
		err  string
	}{{nodestate.BackendIptablesLegacy, e.snap.Iptables.Legacy.Err}, {nodestate.BackendIptablesNFT, e.snap.Iptables.NFT.Err}} {
		if err, ok := e.parseErr[b.name]; ok {
			why = append(why, fmt.Sprintf("%s: %v", b.name, err))
		} else if b.err != "" {
			why = append(why, fmt.Sprintf("%s: %s", b.name, b.err))
		} else {
			why = append(why, b.name+": not captured")
		}
	}
	return "no iptables rules could be read (" + strings.Join(why, "; ") + ")"
}

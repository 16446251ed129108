package trace

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/twillnet/twill/nodestate"
)

// This file answers single questions about one node's netfilter rules with
// the simulator's own compiled rule sets and chain walkers: "what does the
// FORWARD hook of this node do with a new connection from a to b?". doctor's
// forward checks (TW010, TW011, TW020) and the firewall's placement of the
// pod-network accept ask it, so the rules are decoded and evaluated in one
// place.

// NewHost compiles one node snapshot for probing (ProbeHook, PodProbes).
// Given hooks, only the iptables tables attached to them are compiled
// (filter, mangle and security for FORWARD; not kube-proxy's nat table with
// thousands of Service rules), and only those hooks can be probed.
// Malformed rule dumps are errors naming the line.
func NewHost(s *nodestate.Snapshot, hooks ...string) (*Host, error) {
	return NewHostFamily(s, false, hooks...)
}

// NewHostFamily is NewHost for one family of the node: v6 false is the
// IPv4 half (iptables, nft ip and inet tables), true the IPv6 half
// (ip6tables, nft ip6 and inet tables, IPv6 routes and sysctls).
func NewHostFamily(s *nodestate.Snapshot, v6 bool, hooks ...string) (*Host, error) {
	if len(hooks) > 0 {
		c := *s
		c.Iptables.Legacy.Save = hookTables(s.Iptables.Legacy.Save, hooks)
		c.Iptables.NFT.Save = hookTables(s.Iptables.NFT.Save, hooks)
		c.Iptables.Legacy.Save6 = hookTables(s.Iptables.Legacy.Save6, hooks)
		c.Iptables.NFT.Save6 = hookTables(s.Iptables.NFT.Save6, hooks)
		s = &c
	}
	return compileHost(s, 0, v6)
}

// hookTables cuts an iptables-save dump down to the tables attached to one
// of hooks. Dropped lines are left empty, so line numbers in parse errors
// stay those of the dump.
func hookTables(save string, hooks []string) string {
	var b strings.Builder
	b.Grow(len(save) / 4)
	keep := true
	for len(save) > 0 {
		line, rest, _ := strings.Cut(save, "\n")
		save = rest
		if name, ok := strings.CutPrefix(line, "*"); ok {
			keep = false
			for _, hk := range iptHooks[strings.TrimSpace(name)] {
				keep = keep || slices.Contains(hooks, hk.chain)
			}
		}
		if keep {
			b.WriteString(line)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Probe is a packet to ask one hook about.
type Probe struct {
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	Proto string     `json:"proto"` // tcp, udp or icmp
	Sport uint16     `json:"sport,omitempty"`
	Dport uint16     `json:"dport,omitempty"`
	// In and Out are the input and output devices as the hook sees them
	// (-i, -o, iifname, oifname).
	In  string `json:"in,omitempty"`
	Out string `json:"out,omitempty"`
	// PhysIn and PhysOut are the bridge ports of a frame that crosses a
	// bridge with net.bridge.bridge-nf-call-iptables=1 (-m physdev); empty
	// for routed packets.
	PhysIn  string `json:"physIn,omitempty"`
	PhysOut string `json:"physOut,omitempty"`
	// CtState is the conntrack state the rules see; "" means NEW.
	CtState string `json:"ctstate,omitempty"`
}

func (p Probe) String() string {
	s := fmt.Sprintf("%s %s -> %s (in %s, out %s", p.Proto, p.Src, netip.AddrPortFrom(p.Dst, p.Dport), orDash(p.In), orDash(p.Out))
	if p.PhysIn != "" || p.PhysOut != "" {
		s += fmt.Sprintf(", bridged %s -> %s", orDash(p.PhysIn), orDash(p.PhysOut))
	}
	return s + ", ctstate " + cmp.Or(p.CtState, "NEW") + ")"
}

// Jump is a jump (or goto) a chain walk took.
type Jump struct {
	// From is the chain holding the rule, Rule its number (nft: handle).
	From string `json:"from"`
	Rule int    `json:"rule"`
	// To is the chain jumped to.
	To string `json:"to"`
}

// ChainVerdict is how one base chain of a hook ends for a probe, evaluated
// as if the packet reached it (every earlier chain accepted it).
type ChainVerdict struct {
	// Backend is iptables-legacy, iptables-nft or nft.
	Backend string `json:"backend"`
	// Family is the nftables family ("ip", "inet"); empty for iptables.
	Family string `json:"family,omitempty"`
	// Table is the iptables table ("filter") or the nftables table's name.
	Table string `json:"table"`
	// Chain is the base chain ("FORWARD", or the nft chain's name).
	Chain    string `json:"chain"`
	Priority int    `json:"priority"`
	// Verdict is accept, drop or reject; Reject says how (icmp-port-unreachable, tcp-reset).
	Verdict string `json:"verdict"`
	Reject  string `json:"reject,omitempty"`
	// Steps are the rules that acted on the way, the deciding one (or the
	// chain policy, with Rule 0) last.
	Steps []Step `json:"steps"`
	// Jumps are the jumps and gotos taken, in order.
	Jumps []Jump `json:"jumps,omitempty"`
	// Uncertain names the rules that could not be evaluated (assumed not to match).
	Uncertain []string `json:"uncertain,omitempty"`
	// Prob is the probability of this ending: below 1 only when statistic
	// or numgen rules fork the walk (the chain is then listed once per ending).
	Prob float64 `json:"prob"`
}

// Name names the base chain: "iptables-nft filter/FORWARD", "nft inet fw/forward".
func (v ChainVerdict) Name() string {
	t := v.Table
	if v.Family != "" {
		t = v.Family + " " + t
	}
	return fmt.Sprintf("%s %s/%s", v.Backend, t, v.Chain)
}

// Decider is the step that ended the walk: the deciding rule, or the policy.
func (v ChainVerdict) Decider() Step {
	if len(v.Steps) == 0 {
		return Step{Chain: v.Chain}
	}
	return v.Steps[len(v.Steps)-1]
}

// Where says what decided, naming the rule as dumped: "filter/FORWARD
// policy DROP", "filter/KUBE-FORWARD rule 2: -A KUBE-FORWARD ... -j DROP",
// "inet fw chain forward rule handle 4: ip saddr 10.0.0.0/8 drop".
func (v ChainVerdict) Where() string {
	d := v.Decider()
	at, rule := v.Table+"/"+d.Chain, "rule"
	if v.Backend == nodestate.BackendNft {
		at, rule = fmt.Sprintf("%s %s chain %s", v.Family, v.Table, d.Chain), "rule handle"
	}
	if d.Rule == 0 {
		return at + " " + d.Action
	}
	return fmt.Sprintf("%s %s %d: %s", at, rule, d.Rule, d.Text)
}

// HookOutcome is one way the whole hook can end for a probe.
type HookOutcome struct {
	// Verdict is accept, drop or reject.
	Verdict string `json:"verdict"`
	// By is the base chain that dropped or rejected; nil when accepted.
	By *ChainVerdict `json:"by,omitempty"`
	// Order is the order of equal-priority base chains this outcome
	// depends on; empty when every order gives it. The kernel runs hooks of
	// equal priority in the order they were registered, which a snapshot
	// does not record.
	Order string `json:"order,omitempty"`
	// Prob is below 1 only when statistic rules fork a walk.
	Prob float64 `json:"prob"`
}

// HookProbe is the answer to ProbeHook.
type HookProbe struct {
	Hook  string `json:"hook"`
	Probe Probe  `json:"probe"`
	// Chains are the hook's base chains of every backend in priority
	// order, each evaluated as if the packet reached it: a drop in one does
	// not hide a drop in another (both need an accept to let the packet pass).
	Chains []ChainVerdict `json:"chains"`
	// Outcomes are the possible ends of the hook: the first base chain in
	// priority order that does not accept decides. Several when chains of
	// equal priority disagree (their order is unknown) or rules are random.
	Outcomes []HookOutcome `json:"outcomes"`
}

// Blocked returns the base chains that drop or reject the probe (with some
// probability).
func (hp HookProbe) Blocked() []ChainVerdict {
	var out []ChainVerdict
	for _, c := range hp.Chains {
		if c.Verdict != "accept" {
			out = append(out, c)
		}
	}
	return out
}

// ProbeHook evaluates every base chain of hook (PREROUTING, INPUT,
// FORWARD, OUTPUT, POSTROUTING) on the node, of every backend, with the
// probe packet, and says how each chain and the hook as a whole end.
// Marks and NAT set by an accepting chain are seen by the chains after it.
func (h *Host) ProbeHook(hook string, p Probe) HookProbe {
	st := cmp.Or(p.CtState, "NEW")
	env := hookEnv{hook: hook, in: p.In, out: p.Out, physIn: p.PhysIn, physOut: p.PhysOut,
		bridged: p.PhysIn != "" || p.PhysOut != "", ctstate: st, allowNAT: st == "NEW",
		localOut: hook == "OUTPUT"}
	pkt := Packet{Src: p.Src, Dst: p.Dst, Proto: p.Proto, Sport: p.Sport, Dport: p.Dport}
	if pkt.Proto == "tcp" && st == "NEW" {
		pkt.Flags = "SYN"
	}
	hp := HookProbe{Hook: hook, Probe: p}
	chains := h.chains[hook]
	cur := hookOutcome{prob: 1, pkt: pkt, verdict: "accept"}
	for i := range chains {
		bc := &chains[i]
		outs := h.runChains(cur.pkt, env, chains[i:i+1], hookOutcome{prob: 1, pkt: cur.pkt, ctmark: cur.ctmark, verdict: "accept"})
		passed := false
		for _, o := range outs {
			hp.Chains = append(hp.Chains, chainVerdict(bc, o))
			if o.verdict == "accept" && !passed {
				cur, passed = o, true
			}
		}
	}
	whole := h.runChains(pkt, env, chains, hookOutcome{prob: 1, pkt: pkt, verdict: "accept"})
	hp.Outcomes = hookOutcomes(hp.Chains, whole)
	return hp
}

func chainVerdict(bc *baseChain, o hookOutcome) ChainVerdict {
	v := ChainVerdict{Backend: bc.backend, Table: bc.table, Chain: bc.chain, Priority: bc.prio,
		Verdict: o.verdict, Reject: o.reject, Steps: o.steps, Uncertain: o.uncertain, Prob: o.prob}
	if bc.nftT != nil {
		v.Family, v.Table = bc.nftT.family, bc.nftT.name
	}
	for _, s := range o.steps {
		for _, verb := range []string{"jump ", "goto "} {
			if to, ok := strings.CutPrefix(s.Action, verb); ok {
				v.Jumps = append(v.Jumps, Jump{From: s.Chain, Rule: s.Rule, To: to})
			}
		}
	}
	return v
}

// hookOutcomes turns the walk of the whole hook (runChains: the same code a
// trace runs, equal-priority orders included) into the probe's outcomes,
// pointing each drop at its chain in cs.
func hookOutcomes(cs []ChainVerdict, outs []hookOutcome) []HookOutcome {
	var res []HookOutcome
	for _, o := range outs {
		ho := HookOutcome{Verdict: o.verdict, Prob: o.prob}
		if o.verdict != "accept" {
			for i := range cs {
				if cs[i].Name() == o.by && cs[i].Verdict == o.verdict {
					ho.By = &cs[i]
					break
				}
			}
		}
		var orders []string
		for _, c := range o.assume {
			orders = append(orders, c.String())
		}
		ho.Order = strings.Join(orders, "; ")
		if k := slices.IndexFunc(res, func(r HookOutcome) bool {
			return r.Verdict == ho.Verdict && r.By == ho.By && r.Order == ho.Order
		}); k >= 0 {
			res[k].Prob += ho.Prob
			continue
		}
		res = append(res, ho)
	}
	return res
}

// PodNetwork is what a caller knows of a node's pod network.
type PodNetwork struct {
	// Cluster is the whole pod network (--cluster-cidr, the subnet file);
	// invalid when unknown.
	Cluster netip.Prefix
	// Subnet is this node's pod subnet; invalid: taken from the pod bridge's address.
	Subnet netip.Prefix
}

// probePort is the destination port of the pod probes.
const probePort = 8080

// PodProbes is the answer of Host.PodProbes.
type PodProbes struct {
	// Probes are the flows to ask the FORWARD hook about.
	Probes []Probe
	// Subnet is the node's pod subnet the probes use, and Bridge its bridge.
	Subnet netip.Prefix
	Bridge string
	// Assumed says in words what was inferred, for the evidence of a finding
	// ("pod subnet 10.244.1.0/24 inferred from cni0; cluster CIDR unknown").
	Assumed []string
}

// PodProbes returns the forwarded flows every pod network needs on this
// node, as new TCP connections to port 8080:
//
//   - from a pod on another node to a pod here, and back (when
//     n.Cluster is known): remote pods are behind a route into the cluster
//     network that is not this node's subnet, or just past it;
//   - between two pods on this node's bridge, when
//     net.bridge.bridge-nf-call-iptables=1 (then bridged frames pass
//     FORWARD) and the bridge has ports.
//
// Without n.Subnet the pod subnet is taken from the pod bridge (cni0, cbr0,
// or the only bridge other than docker0 with an IPv4 subnet inside
// n.Cluster); without n.Cluster only the same-node flow is probed. An
// error says why there is nothing to probe.
func (h *Host) PodProbes(n PodNetwork) (PodProbes, error) {
	br, local := h.podBridge(n.Cluster)
	var pp PodProbes
	switch {
	case n.Subnet.IsValid():
		local = n.Subnet.Masked()
	case local.IsValid() && n.Cluster.IsValid():
		pp.Assumed = append(pp.Assumed, fmt.Sprintf("pod subnet %s taken from %s's address", local, br))
	case local.IsValid():
		pp.Assumed = append(pp.Assumed, fmt.Sprintf("pod subnet %s inferred from %s; cluster CIDR unknown (only traffic between pods of this node was probed)", local, br))
	default:
		return pp, fmt.Errorf("%s pod network unknown (no subnet file, no pod bridge with an %s address): pass --cluster-cidr", h.family(), h.family())
	}
	if br == "" {
		br = "cni0"
	}
	pp.Subnet, pp.Bridge = local, br
	localPod := local.Addr().Next().Next()
	if n.Cluster.IsValid() && h.of(n.Cluster.Addr()) {
		remotePod, remoteDev := h.remotePod(n.Cluster.Masked(), local)
		pp.Probes = append(pp.Probes,
			Probe{Src: remotePod, Dst: localPod, Proto: "tcp", Dport: probePort, In: remoteDev, Out: br},
			Probe{Src: localPod, Dst: remotePod, Proto: "tcp", Dport: probePort, In: br, Out: remoteDev})
	}
	ports := h.bridgePorts(br)
	switch {
	case h.bridgeNF() && len(ports) > 0:
		pp.Probes = append(pp.Probes, Probe{Src: localPod, Dst: localPod.Next(), Proto: "tcp", Dport: probePort, In: br, Out: br, PhysIn: ports[0], PhysOut: ports[len(ports)-1]})
	case len(pp.Probes) > 0:
	case !h.bridgeNF():
		return pp, fmt.Errorf("the cluster CIDR is unknown and traffic between pods of this node is bridged without the iptables hooks (%s is not 1): nothing to probe; pass --cluster-cidr", h.bridgeNFKey())
	default:
		return pp, fmt.Errorf("the cluster CIDR is unknown and bridge %s has no pod ports: nothing to probe; pass --cluster-cidr", br)
	}
	return pp, nil
}

// podBridge finds the node's pod bridge and its subnet: cni0 or cbr0, else
// the only bridge (not docker0) with an IPv4 subnet inside cluster (any,
// when cluster is unknown).
func (h *Host) podBridge(cluster netip.Prefix) (string, netip.Prefix) {
	subnetOf := func(name string) netip.Prefix {
		for _, p := range h.addrs[name] {
			if p.Bits() < p.Addr().BitLen() && !p.Addr().IsLinkLocalUnicast() && (!cluster.IsValid() || cluster.Contains(p.Addr())) {
				return p.Masked()
			}
		}
		return netip.Prefix{}
	}
	for _, name := range []string{"cni0", "cbr0"} {
		if h.links[name] != nil {
			return name, subnetOf(name)
		}
	}
	var found []string
	for name, l := range h.links {
		if l.Kind == "bridge" && name != "docker0" && subnetOf(name).IsValid() {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		return "", netip.Prefix{}
	}
	return found[0], subnetOf(found[0])
}

// bridgePorts lists the ports of bridge br, sorted.
func (h *Host) bridgePorts(br string) []string {
	var ports []string
	for name, l := range h.links {
		if l.Master == br {
			ports = append(ports, name)
		}
	}
	slices.Sort(ports)
	return ports
}

// remotePod picks a pod address on another node and the device towards it:
// behind the first route into cluster that is not the local subnet, else
// just past the local subnet via the vxlan device (else the default
// route's, else eth0).
func (h *Host) remotePod(cluster, local netip.Prefix) (netip.Addr, string) {
	dev := "eth0"
	for _, r := range h.tables[nodestate.TableMain] {
		if cluster.Contains(r.Dst.Addr()) && !r.Dst.Overlaps(local) && r.Dev != "" {
			return r.Dst.Masked().Addr().Next().Next(), r.Dev
		}
		if r.Dst.Bits() == 0 && r.Dev != "" {
			dev = r.Dev
		}
	}
	for _, l := range h.Snap.Links {
		if l.Kind == "vxlan" && (l.Vxlan == nil || !l.Vxlan.Local.IsValid() || l.Vxlan.Local.Is6() == h.V6) {
			dev = l.Name
		}
	}
	if pod := lastAddr(local).Next().Next().Next(); cluster.Contains(pod) {
		return pod, dev
	}
	return cluster.Masked().Addr().Next().Next(), dev
}

// lastAddr is the last address of prefix p (all host bits set).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

package trace

import (
	"fmt"
	"slices"
)

// maxJumpDepth bounds chain nesting (a loop in a dump must not hang a trace).
const maxJumpDepth = 64

// maxSteps bounds the rules one base-chain walk may evaluate (all branches
// together): goto loops and forks inside loops must end.
const maxSteps = 100000

// maxBranches bounds the number of statistic branches one chain walk may fork into.
const maxBranches = 4096

// Step is one thing that acted on the packet: a rule that matched, a chain
// policy, a routing decision, a bridge hop, a NAT rewrite.
type Step struct {
	// Host is the node or pod the step happened in.
	Host string `json:"host"`
	// Netns is the network namespace (from the snapshot), when known.
	Netns string `json:"netns,omitempty"`
	// Stage is "route", "bridge", "hook", "conntrack", "vxlan", "deliver", "send", "wire".
	Stage string `json:"stage"`
	// Hook is the netfilter hook (PREROUTING, ...) for hook steps.
	Hook string `json:"hook,omitempty"`
	// Backend is iptables-legacy, iptables-nft or nft.
	Backend string `json:"backend,omitempty"`
	Table   string `json:"table,omitempty"`
	Chain   string `json:"chain,omitempty"`
	// Rule is the rule's position in its chain (iptables -L --line-numbers)
	// or its nft handle; 0 when a chain policy decided.
	Rule int `json:"rule,omitempty"`
	// Text is the rule as dumped, or what happened in words.
	Text string `json:"text,omitempty"`
	// Action is what the step did: ACCEPT, DROP, jump X, DNAT to ..., MARK ...
	Action string `json:"action,omitempty"`
	// Packet is the packet after the step, when the step changed it.
	Packet *Packet `json:"packet,omitempty"`
	// Note is a caveat (probability of a branch, an assumption).
	Note string `json:"note,omitempty"`
	// NoIPHooks is set on a bridge step whose frame was bridged without
	// the IP hooks (bridge-nf-call-iptables off): no iptables, no
	// conntrack, no NAT (FAILURES.md F1 when it is a Service reply).
	NoIPHooks bool `json:"noIPHooks,omitempty"`

	// nat is the kind of NAT the step applied (DNAT, SNAT, MASQUERADE,
	// REDIRECT), "" for none.
	nat string
}

// chainOutcome is one way a base chain can end for a packet.
type chainOutcome struct {
	prob      float64
	ctx       pktCtx
	verdict   string // "accept", "drop", "reject"
	reject    string
	nat       *natAction
	notrack   bool
	steps     []Step
	uncertain []string
}

type frame struct {
	c *iptChain
	i int
}

type iptWalk struct {
	rs    *iptRuleset
	table *iptTable
	base  *iptChain
	out   []chainOutcome
	steps int
}

// runIptChain walks base chain c of table t with the packet and returns
// every way it can end (one per statistic branch), with probabilities.
func runIptChain(rs *iptRuleset, t *iptTable, c *iptChain, ctx pktCtx) []chainOutcome {
	w := &iptWalk{rs: rs, table: t, base: c}
	w.walk(chainOutcome{prob: 1, ctx: ctx}, []frame{{c, 0}})
	return mergeOutcomes(w.out)
}

// mergeOutcomes joins branches that end the same way (same verdict, same
// packet, same NAT and the same deciding step), adding their
// probabilities, so that forks that do not matter do not multiply paths.
func mergeOutcomes(out []chainOutcome) []chainOutcome {
	if len(out) < 2 {
		return out
	}
	idx := map[string]int{}
	var merged []chainOutcome
	for _, o := range out {
		last := ""
		if n := len(o.steps); n > 0 {
			last = fmt.Sprintf("%s/%s/%d/%s", o.steps[n-1].Table, o.steps[n-1].Chain, o.steps[n-1].Rule, o.steps[n-1].Action)
		}
		key := fmt.Sprintf("%s|%s|%v|%d|%d|%v|%v|%s", o.verdict, o.reject, o.ctx.Packet, o.ctx.ctmark, len(o.uncertain), o.nat, o.notrack, last)
		if i, ok := idx[key]; ok {
			merged[i].prob += o.prob
			continue
		}
		idx[key] = len(merged)
		merged = append(merged, o)
	}
	return merged
}

func (w *iptWalk) step(o *chainOutcome, chain string, r *iptRule, action, note string) {
	s := Step{Stage: "hook", Hook: o.ctx.hook, Backend: w.rs.backend, Table: w.table.name, Chain: chain, Action: action, Note: note}
	if r != nil {
		s.Rule, s.Text = r.r.Num, r.r.Text
	}
	o.steps = append(o.steps, s)
}

func (o chainOutcome) clone() chainOutcome {
	o.steps = slices.Clip(o.steps)
	o.uncertain = slices.Clip(o.uncertain)
	return o
}

func (w *iptWalk) walk(o chainOutcome, stack []frame) {
	for {
		w.steps++
		if w.steps > maxSteps {
			o.verdict = "accept"
			o.uncertain = append(o.uncertain, fmt.Sprintf("%s/%s: more than %d rule evaluations (a goto loop?); assumed accepted", w.table.name, w.base.name, maxSteps))
			w.out = append(w.out, o)
			return
		}
		if len(w.out) >= maxBranches {
			o.verdict = "accept"
			o.uncertain = append(o.uncertain, fmt.Sprintf("%s/%s: more than %d statistic branches; the rest were not followed", w.table.name, w.base.name, maxBranches))
			w.out = append(w.out, o)
			return
		}
		top := &stack[len(stack)-1]
		idx := top.c.next(top.i, o.ctx.Dst)
		if idx >= len(top.c.rules) {
			// End of chain: implicit RETURN, or the policy of the base chain.
			if len(stack) == 1 {
				o.verdict = policyVerdict(top.c.policy)
				w.step(&o, top.c.name, nil, "policy "+top.c.policy, "")
				w.out = append(w.out, o)
				return
			}
			stack = stack[:len(stack)-1]
			continue
		}
		r := top.c.rules[idx]
		top.i = idx + 1
		// Every understood condition first: one that fails decides,
		// whatever the parts that cannot be evaluated would say.
		m := yes
		for _, c := range r.conds {
			x := c(&o.ctx)
			if x == no {
				m = no
				break
			}
			if x == unknown {
				m = unknown
			}
		}
		if m == no {
			continue
		}
		if r.unknown != "" {
			o.uncertain = append(o.uncertain, fmt.Sprintf("%s %s/%s rule %d (%s): %s, and every other condition of the rule matches; assumed not to match", w.rs.backend, w.table.name, top.c.name, r.r.Num, r.r.Text, r.unknown))
			continue
		}
		if m == unknown {
			o.uncertain = append(o.uncertain, fmt.Sprintf("%s %s/%s rule %d (%s): cannot be evaluated; assumed not to match", w.rs.backend, w.table.name, top.c.name, r.r.Num, r.r.Text))
			continue
		}
		note := r.note
		if r.prob < 1 {
			if r.prob > 0 {
				// Fork: the branch that matches, then continue with the one that does not.
				taken := o.clone()
				taken.prob *= r.prob
				st := slices.Clone(stack)
				pn := fmt.Sprintf("%s: taken with probability %.4g", r.probNote, r.prob)
				if w.apply(&taken, &st, r, pn) {
					w.walk(taken, st)
				}
			}
			o.prob *= 1 - r.prob
			continue
		}
		if !w.apply(&o, &stack, r, note) {
			return
		}
	}
}

func policyVerdict(p string) string {
	switch p {
	case "DROP":
		return "drop"
	}
	return "accept"
}

// apply runs a matched rule's target. It returns false when the walk has
// ended (the outcome was recorded).
func (w *iptWalk) apply(o *chainOutcome, stack *[]frame, r *iptRule, note string) bool {
	t := &r.tgt
	chain := (*stack)[len(*stack)-1].c.name
	if t.unknown != "" {
		o.uncertain = append(o.uncertain, fmt.Sprintf("%s %s/%s rule %d (%s): target %s", w.rs.backend, w.table.name, chain, r.r.Num, r.r.Text, t.unknown))
		return true
	}
	end := func(verdict string, action string) bool {
		o.verdict = verdict
		w.step(o, chain, r, action, note)
		w.out = append(w.out, *o)
		return false
	}
	switch t.name {
	case "":
		return true // counting rule
	case "ACCEPT":
		return end("accept", "ACCEPT")
	case "DROP":
		return end("drop", "DROP")
	case "REJECT":
		o.reject = t.reject
		return end("reject", "REJECT "+t.reject)
	case "QUEUE", "NFQUEUE":
		o.uncertain = append(o.uncertain, fmt.Sprintf("%s/%s rule %d (%s): queued to user space; what the program decides is unknown", w.table.name, chain, r.r.Num, r.r.Text))
		return end("accept", t.name+" (assumed accepted)")
	case "RETURN":
		w.step(o, chain, r, "RETURN", note)
		if len(*stack) == 1 {
			base := (*stack)[0].c
			o.verdict = policyVerdict(base.policy)
			w.step(o, base.name, nil, "policy "+base.policy, "")
			w.out = append(w.out, *o)
			return false
		}
		*stack = (*stack)[:len(*stack)-1]
		return true
	case "DNAT", "SNAT", "MASQUERADE", "REDIRECT":
		if w.table.name != "nat" {
			o.uncertain = append(o.uncertain, fmt.Sprintf("%s/%s rule %d: %s outside the nat table", w.table.name, chain, r.r.Num, t.name))
			return true
		}
		o.nat = t.nat
		if t.nat.note != "" {
			if note != "" {
				note += "; "
			}
			note += t.nat.note
		}
		return end("accept", t.nat.String())
	case "MARK", "CONNMARK":
		before := o.ctx.Mark
		switch {
		case t.connSave:
			o.ctx.ctmark = (o.ctx.ctmark &^ t.ctmask) | (o.ctx.Mark & t.nfmask)
		case t.connRestore:
			o.ctx.Mark = (o.ctx.Mark &^ t.nfmask) | (o.ctx.ctmark & t.ctmask)
		case t.markOn == "ctmark":
			o.ctx.ctmark = (o.ctx.ctmark & t.markAnd) ^ t.markXor
		default:
			o.ctx.Mark = (o.ctx.Mark & t.markAnd) ^ t.markXor
		}
		act := fmt.Sprintf("%s: mark 0x%x -> 0x%x", t.name, before, o.ctx.Mark)
		if t.markOn == "ctmark" && !t.connRestore {
			act = fmt.Sprintf("%s: ctmark 0x%x", t.name, o.ctx.ctmark)
		}
		w.step(o, chain, r, act, note)
		return true
	case "LOG", "NFLOG", "TRACE", "TCPMSS", "CHECKSUM", "DSCP", "CT-other", "AUDIT", "CLASSIFY":
		w.step(o, chain, r, t.name+" (continues)", note)
		return true
	case "NOTRACK", "CT":
		o.notrack = true
		o.ctx.ctstate = "UNTRACKED"
		w.step(o, chain, r, "NOTRACK: no conntrack, no NAT", note)
		return true
	}
	next := w.table.chains[t.name]
	if next == nil {
		o.uncertain = append(o.uncertain, fmt.Sprintf("%s/%s rule %d (%s): target %q is neither a known target nor a chain", w.table.name, chain, r.r.Num, r.r.Text, t.name))
		return true
	}
	if len(*stack) >= maxJumpDepth {
		o.uncertain = append(o.uncertain, fmt.Sprintf("%s/%s rule %d: jumps nest deeper than %d (a loop?)", w.table.name, chain, r.r.Num, maxJumpDepth))
		return true
	}
	verb := "jump "
	if t.isGoto {
		verb = "goto "
		*stack = (*stack)[:len(*stack)-1]
		if len(*stack) == 0 {
			// goto from the base chain: the base chain's policy applies at the end.
			*stack = append(*stack, frame{c: &iptChain{name: w.base.name, policy: w.base.policy}})
		}
	}
	w.step(o, chain, r, verb+t.name, note)
	*stack = append(*stack, frame{c: next})
	return true
}

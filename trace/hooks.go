package trace

import (
	"fmt"
	"github.com/twillnet/twill/nodestate"
	"slices"
	"strings"
)

// baseChain is one chain attached to a netfilter hook, of any backend.
type baseChain struct {
	backend string // iptables-legacy, iptables-nft, nft
	table   string
	chain   string
	hook    string // PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING
	prio    int
	nat     bool
	order   int // listing order at equal priority (not the kernel's: see runTied)

	ipt  *iptRuleset
	iptT *iptTable
	iptC *iptChain
	nftT *nftTable
	nftC *nftChain
}

func (b *baseChain) name() string {
	return fmt.Sprintf("%s %s/%s", b.backend, b.table, b.chain)
}

// iptHooks lists, per iptables table, its built-in chains and priorities.
var iptHooks = map[string][]struct {
	chain string
	prio  int
}{
	"raw":      {{"PREROUTING", -300}, {"OUTPUT", -300}},
	"mangle":   {{"PREROUTING", -150}, {"INPUT", -150}, {"FORWARD", -150}, {"OUTPUT", -150}, {"POSTROUTING", -150}},
	"nat":      {{"PREROUTING", -100}, {"INPUT", 100}, {"OUTPUT", -100}, {"POSTROUTING", 100}},
	"filter":   {{"INPUT", 0}, {"FORWARD", 0}, {"OUTPUT", 0}},
	"security": {{"INPUT", 50}, {"FORWARD", 50}, {"OUTPUT", 50}},
}

// nftHookNames maps nft hook names to the IPv4 hook names used here.
var nftHookNames = map[string]string{
	"prerouting": "PREROUTING", "input": "INPUT", "forward": "FORWARD", "output": "OUTPUT", "postrouting": "POSTROUTING",
}

// compileNetfilter parses and compiles the node's rule sets and lists the
// base chains of every hook.
func (h *Host) compileNetfilter() error {
	h.chains = map[string][]baseChain{}
	s := h.Snap
	tool, legacyText, nftText := "iptables", s.Iptables.Legacy.Save, s.Iptables.NFT.Save
	if h.V6 {
		tool, legacyText, nftText = "ip6tables", s.Iptables.Legacy.Save6, s.Iptables.NFT.Save6
	}
	legacy, err := parseIpt(tool+"-legacy-save", legacyText)
	if err != nil {
		return err
	}
	nft, err := parseIpt(tool+"-nft-save", nftText)
	if err != nil {
		return err
	}
	for order, b := range []struct {
		name string
		rs   *iptRuleset
		raw  bool
	}{{nodestate.BackendIptablesLegacy, nil, legacy != nil}, {nodestate.BackendIptablesNFT, nil, nft != nil}} {
		src := legacy
		if order == 1 {
			src = nft
		}
		// At equal priority the kernel runs hooks in registration order,
		// which a snapshot does not record; runTied follows every order
		// where it matters. prioOrder only makes the listing deterministic.
		prioOrder := 1 - order
		if !b.raw {
			continue
		}
		rs := compileIpt(b.name, src)
		if order == 0 {
			h.legacy = rs
		} else {
			h.nft = rs
		}
		for tname, t := range rs.tables {
			for _, hk := range iptHooks[tname] {
				c := t.chains[hk.chain]
				if c == nil {
					continue
				}
				h.chains[hk.chain] = append(h.chains[hk.chain], baseChain{
					backend: b.name, table: tname, chain: hk.chain, hook: hk.chain, prio: hk.prio, nat: tname == "nat",
					order: prioOrder, ipt: rs, iptT: t, iptC: c,
				})
			}
		}
	}
	// Native nftables: every table except those iptables-nft owns (they are
	// evaluated from iptables-nft-save above, with iptables semantics).
	if strings.TrimSpace(s.Nftables.JSON) != "" {
		owned := map[string]bool{}
		fam := "ip"
		if h.V6 {
			fam = "ip6"
		}
		if h.nft != nil {
			for name := range h.nft.tables {
				owned[fam+" "+name] = true
			}
		}
		nrs, warn, err := compileNft(s.Nftables.JSON, owned, fam)
		if err != nil {
			return err
		}
		h.Warnings = append(h.Warnings, warn...)
		h.native = nrs
		for _, t := range nrs.tables {
			for _, c := range t.chains {
				if c.hook == "" {
					continue
				}
				hook, ok := nftHookNames[c.hook]
				if !ok {
					continue
				}
				h.chains[hook] = append(h.chains[hook], baseChain{
					backend: nodestate.BackendNft, table: t.family + " " + t.name, chain: c.name, hook: hook, prio: c.prio,
					nat: c.typ == "nat", order: 2, nftT: t, nftC: c,
				})
			}
		}
	}
	for hook := range h.chains {
		slices.SortStableFunc(h.chains[hook], func(a, b baseChain) int {
			if a.prio != b.prio {
				return a.prio - b.prio
			}
			if a.order != b.order {
				return a.order - b.order
			}
			return strings.Compare(a.table, b.table)
		})
	}
	return nil
}

// hookEnv is what a hook needs beside the packet.
type hookEnv struct {
	hook      string
	in, out   string
	physIn    string
	physOut   string
	bridged   bool
	localOut  bool
	nexthop   string // for MASQUERADE: the out device's address towards it
	allowNAT  bool   // first packet of a tracked connection, no binding yet of this kind
	ctstate   string
	ctreply   bool
	ctdnat    bool
	ctsnat    bool
	ctmark    uint32
	skipTable string // unused hook tables (e.g. "" )
}

// hookOutcome is one way a hook can end.
type hookOutcome struct {
	prob      float64
	pkt       Packet
	ctmark    uint32
	verdict   string // accept, drop, reject
	reject    string
	by        string // base chain that dropped
	dnat      *natAction
	snat      *natAction
	notrack   bool
	steps     []Step
	uncertain []string
	// assume lists the orders of equal-priority base chains this outcome
	// depends on (empty when the order made no difference). Orders already
	// in the start outcome are kept: a packet meets the same order every
	// time it passes the same hook.
	assume []orderChoice
}

// runHook passes the packet through every base chain of the hook in
// priority order. Each returned outcome either accepts (all chains
// accepted) or names the chain that dropped or rejected.
func (h *Host) runHook(p Packet, env hookEnv) []hookOutcome {
	return h.runChains(p, env, h.chains[env.hook], hookOutcome{prob: 1, pkt: p, ctmark: env.ctmark, verdict: "accept"})
}

// runChains passes the packet through the given base chains in order,
// starting from outcome start. Base chains of equal priority run in the
// order the kernel registered them, which it does not expose: where that
// order changes the outcome, every order is followed (runTied).
func (h *Host) runChains(p Packet, env hookEnv, chains []baseChain, start hookOutcome) []hookOutcome {
	cur := []hookOutcome{start}
	for i := 0; i < len(chains); {
		j := i + 1
		for j < len(chains) && chains[j].prio == chains[i].prio {
			j++
		}
		var next []hookOutcome
		for _, o := range cur {
			switch {
			case o.verdict != "accept":
				next = append(next, o)
			case j-i == 1:
				next = append(next, h.runChain(env, &chains[i], o)...)
			default:
				next = append(next, h.runTied(env, chains[i:j], o)...)
			}
		}
		cur = next
		i = j
	}
	for i := range cur {
		for k := range cur[i].steps {
			cur[i].steps[k].Host = h.Name
			cur[i].steps[k].Netns = h.Snap.Netns
		}
	}
	return cur
}

// runSeq runs base chains one after the other, in the order given.
func (h *Host) runSeq(env hookEnv, chains []*baseChain, o hookOutcome) []hookOutcome {
	cur := []hookOutcome{o}
	for _, bc := range chains {
		var next []hookOutcome
		for _, x := range cur {
			if x.verdict != "accept" {
				next = append(next, x)
				continue
			}
			next = append(next, h.runChain(env, bc, x)...)
		}
		cur = next
	}
	return cur
}

// runChain passes outcome o (which accepted so far) through base chain bc.
func (h *Host) runChain(env hookEnv, bc *baseChain, o hookOutcome) []hookOutcome {
	if bc.nat && (!env.allowNAT || o.notrack || o.dnat != nil || o.snat != nil) {
		return []hookOutcome{o}
	}
	ctx := pktCtx{Packet: o.pkt, ctmark: o.ctmark, ctstate: env.ctstate, ctdnat: env.ctdnat || o.dnat != nil,
		ctsnat: env.ctsnat, ctreply: env.ctreply, in: env.in, out: env.out, physIn: env.physIn, physOut: env.physOut,
		bridged: env.bridged, hook: env.hook, host: h, localOut: env.localOut}
	if o.notrack {
		ctx.ctstate = "UNTRACKED"
	}
	var cos []chainOutcome
	if bc.ipt != nil {
		cos = runIptChain(bc.ipt, bc.iptT, bc.iptC, ctx)
	} else {
		cos = runNftChain(bc, ctx)
	}
	out := make([]hookOutcome, 0, len(cos))
	for _, co := range cos {
		n := o
		n.steps = append(slices.Clip(o.steps), co.steps...)
		n.uncertain = append(slices.Clip(o.uncertain), co.uncertain...)
		n.prob = o.prob * co.prob
		n.pkt = co.ctx.Packet
		n.ctmark = co.ctx.ctmark
		n.notrack = o.notrack || co.notrack
		n.verdict = co.verdict
		if co.verdict != "accept" {
			n.by = bc.name()
			n.reject = co.reject
		}
		if co.nat != nil && co.verdict == "accept" {
			h.applyNAT(&n, co.nat, env, bc)
		}
		out = append(out, n)
	}
	return out
}

// maxOrders bounds the orders of one group of equal-priority base chains
// that are followed (4 chains: all 24).
const maxOrders = 24

// orderChoice is one assumed order of the base chains that hook in at the
// same hook and priority on a host.
type orderChoice struct {
	host, hook string
	prio       int
	chains     []string // chain names (baseChain.name) in the assumed order
}

func (c orderChoice) key() string { return fmt.Sprintf("%s|%s|%d", c.host, c.hook, c.prio) }

// String says the order in words: "node2 FORWARD (priority 0): iptables-legacy
// filter/FORWARD first, then iptables-nft filter/FORWARD".
func (c orderChoice) String() string {
	return fmt.Sprintf("%s %s (priority %d): %s first, then %s", c.host, c.hook, c.prio, c.chains[0], strings.Join(c.chains[1:], ", then "))
}

// tie says why the order is unknown, naming every chain of the group.
func (c orderChoice) tie() string {
	names := slices.Clone(c.chains)
	slices.Sort(names)
	both := "all"
	if len(names) == 2 {
		both = "both"
	}
	return fmt.Sprintf("%s: %s %s hook %s at priority %d; the kernel runs hooks of equal priority in the order they were registered, which a snapshot does not record: every order is followed",
		c.host, strings.Join(names, " and "), both, c.hook, c.prio)
}

// runTied runs a group of base chains of equal priority. When the packet
// passes all of them unchanged in one order, any order gives the same and
// that is the answer. Otherwise every order (up to maxOrders) is run, and
// when orders end differently each outcome carries the order it assumes.
// An order met before on this path (o.assume) is kept.
func (h *Host) runTied(env hookEnv, group []baseChain, o hookOutcome) []hookOutcome {
	key := orderChoice{host: h.Name, hook: env.hook, prio: group[0].prio}.key()
	for _, c := range o.assume {
		if c.key() == key {
			return h.runSeq(env, arrangeChains(group, c.chains), o)
		}
	}
	ptrs := make([]*baseChain, len(group))
	for i := range group {
		ptrs[i] = &group[i]
	}
	def := h.runSeq(env, ptrs, o)
	if passedUnchanged(def, o) {
		return def
	}
	type alt struct {
		order []*baseChain
		outs  []hookOutcome
		sig   string
	}
	var alts []alt
	perms, all := permutations(len(group), maxOrders)
	for pi, pm := range perms {
		order := make([]*baseChain, len(pm))
		for k, x := range pm {
			order[k] = ptrs[x]
		}
		outs := def // perms[0] is the listed order
		if pi > 0 {
			outs = h.runSeq(env, order, o)
		}
		sig := outcomeSetKey(outs)
		if slices.ContainsFunc(alts, func(a alt) bool { return a.sig == sig }) {
			continue
		}
		alts = append(alts, alt{order, outs, sig})
	}
	if len(alts) == 1 {
		return def
	}
	var res []hookOutcome
	for _, a := range alts {
		c := orderChoice{host: h.Name, hook: env.hook, prio: group[0].prio}
		for _, bc := range a.order {
			c.chains = append(c.chains, bc.name())
		}
		for _, x := range a.outs {
			x.assume = append(slices.Clip(x.assume), c)
			if !all {
				x.uncertain = append(slices.Clip(x.uncertain), fmt.Sprintf("%s %s: %d base chains at priority %d; only %d of their orders were followed", h.Name, env.hook, len(group), group[0].prio, maxOrders))
			}
			res = append(res, x)
		}
	}
	return res
}

// arrangeChains returns the chains of group in the order of names.
func arrangeChains(group []baseChain, names []string) []*baseChain {
	out := make([]*baseChain, 0, len(group))
	for _, n := range names {
		for i := range group {
			if group[i].name() == n {
				out = append(out, &group[i])
				break
			}
		}
	}
	return out
}

// passedUnchanged reports whether every outcome accepted the packet of o
// without changing it, its marks, conntrack or NAT: then the chains saw
// the same packet whatever their order, and their order cannot matter.
func passedUnchanged(outs []hookOutcome, o hookOutcome) bool {
	for _, x := range outs {
		if x.verdict != "accept" || x.pkt != o.pkt || x.ctmark != o.ctmark || x.notrack != o.notrack || x.dnat != o.dnat || x.snat != o.snat {
			return false
		}
	}
	return true
}

// outcomeSetKey identifies the set of ways a group of chains ended: the
// verdict, the deciding rule, the packet, marks and NAT of every outcome.
func outcomeSetKey(outs []hookOutcome) string {
	keys := make([]string, 0, len(outs))
	for _, x := range outs {
		last := ""
		if n := len(x.steps); n > 0 && x.verdict != "accept" {
			s := x.steps[n-1]
			last = fmt.Sprintf("%s/%s/%s/%d/%s", s.Backend, s.Table, s.Chain, s.Rule, s.Action)
		}
		keys = append(keys, fmt.Sprintf("%s|%s|%s|%s|%v|%d|%v|%v|%v|%.6g", x.verdict, x.reject, x.by, last, x.pkt, x.ctmark, x.notrack, x.dnat, x.snat, x.prob))
	}
	slices.Sort(keys)
	return strings.Join(keys, "\n")
}

// permutations lists the orders of n items, the identity first, at most
// limit of them; all is false when some were left out.
func permutations(n, limit int) (perms [][]int, all bool) {
	cur := make([]int, n)
	for i := range cur {
		cur[i] = i
	}
	total := 1
	for i := 2; i <= n && total <= limit; i++ {
		total *= i
	}
	var rec func(k int)
	rec = func(k int) {
		if len(perms) >= limit {
			return
		}
		if k == n {
			perms = append(perms, slices.Clone(cur))
			return
		}
		for i := k; i < n; i++ {
			cur[k], cur[i] = cur[i], cur[k]
			rec(k + 1)
			cur[k], cur[i] = cur[i], cur[k]
		}
	}
	rec(0)
	return perms, total <= limit
}

// applyNAT applies a NAT target to the packet of an outcome.
func (h *Host) applyNAT(o *hookOutcome, n *natAction, env hookEnv, bc *baseChain) {
	switch n.kind {
	case "DNAT", "REDIRECT":
		if env.hook != "PREROUTING" && env.hook != "OUTPUT" {
			o.uncertain = append(o.uncertain, fmt.Sprintf("%s: %s at %s is not modelled", bc.name(), n.kind, env.hook))
			return
		}
		a := n.addr
		if n.kind == "REDIRECT" {
			if env.localOut {
				a = localhost
			} else {
				a = h.primaryAddr(env.in, o.pkt.Src)
			}
		}
		o.pkt.Dst = a
		if n.port != 0 {
			o.pkt.Dport = n.port
		}
		o.dnat = n
	case "SNAT", "MASQUERADE":
		if env.hook != "POSTROUTING" && env.hook != "INPUT" {
			o.uncertain = append(o.uncertain, fmt.Sprintf("%s: %s at %s is not modelled", bc.name(), n.kind, env.hook))
			return
		}
		a := n.addr
		if n.kind == "MASQUERADE" {
			a = h.primaryAddr(env.out, parseAddrOr(env.nexthop, o.pkt.Dst))
		}
		o.pkt.Src = a
		if n.port != 0 {
			o.pkt.Sport = n.port
		}
		o.snat = n
	}
	pk := o.pkt
	if len(o.steps) > 0 {
		o.steps[len(o.steps)-1].Packet = &pk
		o.steps[len(o.steps)-1].nat = n.kind
	}
}

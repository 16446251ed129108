package trace

import (
	"fmt"
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
	order   int // tie-break: legacy before nft before native

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
	legacy, err := parseIpt("iptables-legacy-save", s.Iptables.Legacy.Save)
	if err != nil {
		return err
	}
	nft, err := parseIpt("iptables-nft-save", s.Iptables.NFT.Save)
	if err != nil {
		return err
	}
	for order, b := range []struct {
		name string
		rs   *iptRuleset
		raw  bool
	}{{"iptables-legacy", nil, legacy != nil}, {"iptables-nft", nil, nft != nil}} {
		src := legacy
		if order == 1 {
			src = nft
		}
		// At equal priority the kernel runs hooks in registration order,
		// which a snapshot does not record. iptables-nft is assumed first
		// (it is the host's backend; legacy tables appear later, F4).
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
		if h.nft != nil {
			for name := range h.nft.tables {
				owned["ip "+name] = true
			}
		}
		nrs, warn, err := compileNft(s.Nftables.JSON, owned)
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
					backend: "nft", table: t.family + " " + t.name, chain: c.name, hook: hook, prio: c.prio,
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
}

// runHook passes the packet through every base chain of the hook in
// priority order. Each returned outcome either accepts (all chains
// accepted) or names the chain that dropped or rejected.
func (h *Host) runHook(p Packet, env hookEnv) []hookOutcome {
	return h.runChains(p, env, h.chains[env.hook], hookOutcome{prob: 1, pkt: p, ctmark: env.ctmark, verdict: "accept"})
}

// runChains passes the packet through the given base chains in order,
// starting from outcome start.
func (h *Host) runChains(p Packet, env hookEnv, chains []baseChain, start hookOutcome) []hookOutcome {
	cur := []hookOutcome{start}
	for i := range chains {
		bc := &chains[i]
		var next []hookOutcome
		for _, o := range cur {
			if o.verdict != "accept" {
				next = append(next, o)
				continue
			}
			if bc.nat && (!env.allowNAT || o.notrack || o.dnat != nil || o.snat != nil) {
				next = append(next, o)
				continue
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
					if tie := h.sameRank(env.hook, bc); tie != "" {
						n.uncertain = append(n.uncertain, fmt.Sprintf("%s decided, but %s hooks in at the same priority %d: their order is the order the tables were registered (not in a snapshot); assumed iptables-nft first (F4)", bc.name(), tie, bc.prio))
					}
				}
				if co.nat != nil && co.verdict == "accept" {
					h.applyNAT(&n, co.nat, env, bc)
				}
				next = append(next, n)
			}
		}
		cur = next
	}
	for i := range cur {
		for k := range cur[i].steps {
			cur[i].steps[k].Host = h.Name
			cur[i].steps[k].Netns = h.Snap.Netns
		}
	}
	return cur
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
	}
}

// sameRank names another iptables backend's base chain with rules at the
// same hook and priority as bc, whose relative order is undefined.
func (h *Host) sameRank(hook string, bc *baseChain) string {
	for i := range h.chains[hook] {
		o := &h.chains[hook][i]
		if o.ipt != nil && bc.ipt != nil && o.backend != bc.backend && o.prio == bc.prio && (len(o.iptC.rules) > 0 || o.iptC.policy == "DROP") {
			return o.name()
		}
	}
	return ""
}

package trace

import (
	"fmt"
	"net/netip"
	"strings"
)

// ctPass is the conntrack view of a packet during one pass through a node.
type ctPass struct {
	host    string
	idx     int // index in flow.ct[host], -1 for none
	orig    bool
	state   string
	created bool
	notrack bool
}

// hook runs one netfilter hook on h with conntrack: the entry is looked up
// (or created) at PREROUTING/OUTPUT, existing NAT bindings are applied
// (reverse NAT for replies), the base chains run, and new NAT bindings are
// recorded. next is called for every outcome that accepts.
func (r *run) hook(f *flow, h *Host, env hookEnv, next func(*flow)) {
	r.walks++
	if r.walks > maxWalks {
		f.uncertain = append(f.uncertain, fmt.Sprintf("more than %d hook evaluations in one trace: the remaining branches were not followed", maxWalks))
		r.finish(f, Outcome{Kind: Lost, Where: "simulation cut short (too many branches)"})
		return
	}
	newPass := env.hook == "PREROUTING" || env.hook == "OUTPUT" || f.pass.host != h.Name
	if newPass {
		f.pass = ctPass{host: h.Name, idx: -1}
	}
	chains := h.chains[env.hook]
	if !newPass {
		r.hookTracked(f, h, env, chains, next)
		return
	}
	// Chains before conntrack (raw, priority < -200) see no connection yet
	// and may switch tracking off (NOTRACK).
	k := 0
	for k < len(chains) && chains[k].prio < -200 {
		k++
	}
	if k == 0 {
		r.conntrackIn(f, h, env)
		r.hookTracked(f, h, env, chains, next)
		return
	}
	rawEnv := env
	rawEnv.ctstate, rawEnv.allowNAT = "INVALID", false
	r.runPart(f, h, rawEnv, chains[:k], func(g *flow) {
		r.conntrackIn(g, h, env)
		r.hookTracked(g, h, env, chains[k:], next)
	})
}

// runPart runs some base chains of a hook and calls next per accepting outcome.
func (r *run) runPart(f *flow, h *Host, env hookEnv, chains []baseChain, next func(*flow)) {
	start := hookOutcome{prob: 1, pkt: f.pkt, verdict: "accept", notrack: f.pass.notrack, assume: f.assume}
	for _, o := range h.runChains(f.pkt, env, chains, start) {
		g := f.clone()
		g.prob *= o.prob
		g.steps = append(g.steps, hostSteps(h, o.steps)...)
		g.uncertain = append(g.uncertain, o.uncertain...)
		g.assume = o.assume
		g.pkt = o.pkt
		g.pass.notrack = o.notrack
		if o.verdict != "accept" {
			r.hookDrop(g, h, env, o)
			continue
		}
		next(g)
	}
}

func hostSteps(h *Host, steps []Step) []Step {
	for i := range steps {
		steps[i].Host, steps[i].Netns = h.Name, h.Snap.Netns
	}
	return steps
}

// conntrackIn looks the packet up in the flow's conntrack entries of h (the
// kernel's conntrack at priority -200) and applies existing NAT bindings
// (reverse NAT for replies).
func (r *run) conntrackIn(f *flow, h *Host, env hookEnv) {
	pass := &f.pass
	if pass.notrack {
		pass.state = "UNTRACKED"
		return
	}
	e, orig := f.ct.lookup(h.Name, f.pkt)
	if f.icmpKey != nil {
		e, orig = f.ct.lookupTuple(h.Name, *f.icmpKey)
		if e != nil && !orig {
			pass.state, pass.orig = "RELATED", false
			pass.idx = indexOf(f.ct[h.Name], e)
			return
		}
		pass.state, pass.orig = "INVALID", true
		return
	}
	switch {
	case e == nil && ((f.pkt.Proto == "tcp" && f.pkt.Flags != "SYN" && f.pkt.Flags != "ACK") || (f.pkt.Proto == "icmp" && f.pkt.Flags == "echo-reply")):
		// conntrack only starts TCP connections on a SYN (or picks up an
		// ACK): a SYN-ACK or RST it has no entry for is INVALID, and so is an
		// ICMP echo reply without its request. INVALID packets are not NATed.
		pass.state, pass.orig = "INVALID", true
		f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "conntrack", Hook: env.hook, Text: fmt.Sprintf("conntrack: no entry for this %s packet (the connection was not tracked here): ctstate INVALID", f.pkt.Flags)})
	case e == nil:
		pass.state, pass.created, pass.orig = "NEW", true, true
	case orig:
		pass.orig, pass.state = true, "NEW"
		if e.replied {
			pass.state = "ESTABLISHED"
		} else if f.pkt.Flags == "ACK" {
			// An ACK for a connection whose SYN-ACK this node never saw:
			// TCP conntrack (SYN_SENT + ACK) calls it INVALID.
			pass.state = "INVALID"
			f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "conntrack", Hook: env.hook, Text: fmt.Sprintf("conntrack: ACK for %s, whose reply never passed this node: ctstate INVALID", e)})
		}
	default:
		pass.state = "ESTABLISHED"
		e.replied = true
	}
	if e != nil {
		pass.idx = indexOf(f.ct[h.Name], e)
	}
}

// hookTracked runs the chains of a hook after conntrack: existing bindings
// are applied, NAT chains run for new connections, new bindings recorded.
func (r *run) hookTracked(f *flow, h *Host, env hookEnv, chains []baseChain, next func(*flow)) {
	pass := &f.pass
	e := f.entry()
	if e != nil && !pass.created && pass.state != "INVALID" {
		before := f.pkt
		switch {
		case f.icmpKey != nil:
			// An ICMP error: the embedded packet is translated; the outer
			// destination follows a reverse SNAT.
			if (env.hook == "PREROUTING" || env.hook == "OUTPUT") && e.snat {
				f.pkt.Dst = e.orig.src
				f.icmpKey.dst, f.icmpKey.dport = e.orig.src, e.orig.sport
			}
			if (env.hook == "POSTROUTING" || env.hook == "INPUT") && e.dnat {
				f.icmpKey.src, f.icmpKey.sport = e.orig.dst, e.orig.dport
			}
		case env.hook == "PREROUTING" || env.hook == "OUTPUT":
			if pass.orig && e.dnat {
				f.pkt.Dst, f.pkt.Dport = e.cur.dst, e.cur.dport
			}
			if !pass.orig && e.snat {
				f.pkt.Dst, f.pkt.Dport = e.orig.src, e.orig.sport
			}
		case env.hook == "POSTROUTING" || env.hook == "INPUT":
			if pass.orig && e.snat {
				f.pkt.Src, f.pkt.Sport = e.cur.src, e.cur.sport
			}
			if !pass.orig && e.dnat {
				f.pkt.Src, f.pkt.Sport = e.orig.dst, e.orig.dport
			}
		}
		if f.pkt != before {
			dir := "reply"
			if pass.orig {
				dir = "original direction"
			}
			f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "conntrack", Hook: env.hook,
				Text: fmt.Sprintf("conntrack (%s of %s): %s rewritten to %s", dir, e, endpoints(before), endpoints(f.pkt))})
		} else if env.hook == "PREROUTING" && !pass.orig {
			f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "conntrack", Hook: env.hook, Text: fmt.Sprintf("conntrack: reply of %s (ESTABLISHED)", e)})
		}
	}
	env.ctstate = pass.state
	env.ctreply = !pass.orig
	if e != nil {
		env.ctdnat, env.ctsnat = e.dnat, e.snat
	}
	if pass.notrack {
		env.ctstate = "UNTRACKED"
	}
	env.allowNAT = pass.created && !pass.notrack
	before := f.pkt
	start := hookOutcome{prob: 1, pkt: f.pkt, verdict: "accept", notrack: pass.notrack, assume: f.assume}
	for _, o := range h.runChains(f.pkt, env, chains, start) {
		g := f.clone()
		g.prob *= o.prob
		g.steps = append(g.steps, hostSteps(h, o.steps)...)
		g.uncertain = append(g.uncertain, o.uncertain...)
		g.assume = o.assume
		g.pkt = o.pkt
		g.pass.notrack = o.notrack
		if o.verdict != "accept" {
			r.hookDrop(g, h, env, o)
			continue
		}
		// Record the connection and its new bindings.
		if !g.pass.notrack && (env.hook == "PREROUTING" || env.hook == "OUTPUT") && g.pass.created && g.pass.idx < 0 {
			ne := &ctEntry{orig: before.tuple(), cur: g.pkt.tuple()}
			ne.dnat = o.dnat != nil
			g.ct[h.Name] = append(g.ct[h.Name], ne)
			g.pass.idx = len(g.ct[h.Name]) - 1
			if ne.dnat {
				g.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "conntrack", Hook: env.hook, Text: fmt.Sprintf("conntrack: new connection %s, DNAT recorded: replies get source %s", endpoints(before), netip.AddrPortFrom(before.Dst, before.Dport))})
			}
		}
		if ge := g.entry(); ge != nil && g.pass.created {
			if o.snat != nil {
				ge.snat = true
				ge.cur.src, ge.cur.sport = g.pkt.Src, g.pkt.Sport
			}
		}
		next(g)
	}
}

func indexOf(es []*ctEntry, e *ctEntry) int {
	for i, x := range es {
		if x == e {
			return i
		}
	}
	return -1
}

// entry returns the conntrack entry of the current pass, or nil.
func (f *flow) entry() *ctEntry {
	if f.pass.idx < 0 || f.pass.host == "" {
		return nil
	}
	es := f.ct[f.pass.host]
	if f.pass.idx >= len(es) {
		return nil
	}
	return es[f.pass.idx]
}

func endpoints(p Packet) string {
	if p.Proto == "icmp" {
		return fmt.Sprintf("%s -> %s", p.Src, p.Dst)
	}
	return fmt.Sprintf("%s -> %s", netip.AddrPortFrom(p.Src, p.Sport), netip.AddrPortFrom(p.Dst, p.Dport))
}

// hookDrop ends a path whose packet a base chain dropped or rejected.
func (r *run) hookDrop(f *flow, h *Host, env hookEnv, o hookOutcome) {
	where := fmt.Sprintf("%s: %s %s", h.Name, env.hook, o.by)
	if n := len(o.steps); n > 0 {
		s := o.steps[n-1]
		if s.Rule > 0 {
			where = fmt.Sprintf("%s: %s %s %s/%s rule %d: %s", h.Name, env.hook, s.Backend, s.Table, s.Chain, s.Rule, s.Text)
		} else {
			where = fmt.Sprintf("%s: %s %s %s/%s %s", h.Name, env.hook, s.Backend, s.Table, s.Chain, s.Action)
		}
	}
	f.decided = &nfDecision{verdict: o.verdict}
	if n := len(o.steps); n > 0 {
		f.decided.step = o.steps[n-1]
	}
	kind := Dropped
	if o.verdict == "reject" {
		kind = Unreachable
		if o.reject == "" || strings.Contains(o.reject, "port-unreach") || strings.Contains(o.reject, "tcp-reset") || strings.Contains(o.reject, "port-unreachable") {
			kind = Refused
		}
	}
	if !f.reply && o.verdict == "reject" && strings.Contains(o.reject, "tcp-reset") && env.physIn != "" {
		// br_netfilter: a reset for a frame that came in over a bridge port
		// is sent straight out of that port, without ip_local_out and NAT.
		if e := f.entry(); e != nil && e.dnat && f.pass.host == h.Name {
			f.add(Step{Host: h.Name, Stage: "hook", Text: fmt.Sprintf("the TCP reset is sent from %s, the address after DNAT, not the Service address the client called: the client ignores it and keeps waiting", netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport))})
			r.finish(f, Outcome{Kind: Reset, Cause: CauseNetfilter, Where: where + " (reset from the DNAT target address, ignored by the client)", ReplyFrom: netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport)})
			return
		}
	}
	if f.reply {
		out := f.seen
		out.Kind, out.Cause = ReplyDropped, CauseNetfilter
		out.Where = where
		switch {
		case f.rejectKind != "":
			out.Kind, out.Where = Dropped, "the answer to the client was lost: "+where
		case f.ack:
			out.Kind, out.Where = Dropped, "the client's handshake ACK was lost: "+where+" (the client thinks it is connected; the server never accepts)"
		case kind != Dropped:
			out.Where += " (rejected)"
		}
		r.finish(f, out)
		return
	}
	if kind == Dropped {
		r.finish(f, Outcome{Kind: kind, Cause: CauseNetfilter, Where: where})
		return
	}
	r.answerClient(f, h, kind, where, o.reject, nil)
}

// answerClient sends the answer of a REJECT (a TCP reset or an ICMP error)
// from h back to the client and follows it: it is NATed back by conntrack
// where the connection was tracked, and it can be lost on the way.
func (r *run) answerClient(f *flow, h *Host, kind, where, with string, send func(*flow)) {
	g := f
	g.seen = Outcome{Where: where}
	g.reply, g.rejectKind, g.hops = true, kind, 0
	g.fwd, g.steps = g.steps, nil
	p := f.pkt
	if strings.Contains(with, "tcp-reset") && p.Proto == "tcp" {
		g.pkt = Packet{Src: p.Dst, Dst: p.Src, Proto: "tcp", Sport: p.Dport, Dport: p.Sport, Flags: "RST"}
	} else {
		rt := h.lookup(Packet{Dst: p.Src}, "")
		key := p.tuple().reverse()
		g.icmpKey = &key
		g.pkt = Packet{Src: rt.src, Dst: p.Src, Proto: "icmp", Flags: "dest-unreachable"}
		if !g.pkt.Src.IsValid() {
			g.pkt.Src = h.primaryAddr("", p.Src)
		}
	}
	g.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "send", Text: fmt.Sprintf("%s answers the client: %s (%s)", h.Name, g.pkt, orDash(with))})
	if send != nil {
		send(g)
		return
	}
	r.localOut(g, h)
}

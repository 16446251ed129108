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
	pass := &f.pass
	if env.hook == "PREROUTING" || env.hook == "OUTPUT" || pass.host != h.Name {
		*pass = ctPass{host: h.Name, idx: -1}
		e, orig := f.ct.lookup(h.Name, f.pkt)
		switch {
		case e == nil && f.pkt.Proto == "tcp" && f.pkt.Flags != "SYN":
			// conntrack only starts TCP connections on a SYN: a SYN-ACK or
			// RST it has no entry for is INVALID (and not NATed).
			pass.state, pass.orig = "INVALID", true
			f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "conntrack", Hook: env.hook, Text: fmt.Sprintf("conntrack: no entry for this %s packet (the connection was not tracked here): ctstate INVALID", f.pkt.Flags)})
		case e == nil:
			pass.state, pass.created, pass.orig = "NEW", true, true
		case orig:
			pass.orig, pass.state = true, "NEW"
			if e.replied {
				pass.state = "ESTABLISHED"
			}
		default:
			pass.state = "ESTABLISHED"
			e.replied = true
		}
		if e != nil {
			pass.idx = indexOf(f.ct[h.Name], e)
		}
	}
	e := f.entry()
	// Existing bindings: dst manip at PREROUTING/OUTPUT, src manip at POSTROUTING/INPUT.
	if e != nil && !pass.created {
		before := f.pkt
		switch env.hook {
		case "PREROUTING", "OUTPUT":
			if pass.orig && e.dnat {
				f.pkt.Dst, f.pkt.Dport = e.cur.dst, e.cur.dport
			}
			if !pass.orig && e.snat {
				f.pkt.Dst, f.pkt.Dport = e.orig.src, e.orig.sport
			}
		case "POSTROUTING", "INPUT":
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
				Text: fmt.Sprintf("conntrack (%s of %s): %s -> %s", dir, e, endpoints(before), endpoints(f.pkt))})
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
	for _, o := range h.runHook(f.pkt, env) {
		g := f
		if len(h.chains[env.hook]) > 0 {
			g = f.clone()
		}
		g.prob *= o.prob
		g.steps = append(g.steps, o.steps...)
		g.uncertain = append(g.uncertain, o.uncertain...)
		g.pkt = o.pkt
		if o.notrack {
			g.pass.notrack = true
		}
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
				g.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "conntrack", Hook: env.hook, Text: fmt.Sprintf("conntrack: new connection %s, DNAT recorded: replies get source %s", endpoints(before), endpoints(before)[strings.Index(endpoints(before), "-> ")+3:])})
			}
		}
		if ge := g.entry(); ge != nil && g.pass.created {
			if o.snat != nil {
				ge.snat = true
				ge.cur.src, ge.cur.sport = g.pkt.Src, g.pkt.Sport
			}
			if o.dnat != nil && env.hook == "OUTPUT" {
				ge.cur.dst, ge.cur.dport = g.pkt.Dst, g.pkt.Dport
			}
		}
		next(g)
		if g == f {
			return
		}
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
	kind := Dropped
	if o.verdict == "reject" {
		kind = Unreachable
		if o.reject == "" || strings.Contains(o.reject, "port-unreach") || strings.Contains(o.reject, "tcp-reset") || strings.Contains(o.reject, "port-unreachable") {
			kind = Refused
		}
	}
	if f.reply {
		out := f.seen
		out.Kind = ReplyDropped
		out.Where = where
		if kind != Dropped {
			out.Where += " (rejected)"
		}
		r.finish(f, out)
		return
	}
	r.finish(f, Outcome{Kind: kind, Where: where})
}

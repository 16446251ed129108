package picture

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twillnet/twill/trace"
)

// hop is one box of the diagram: one step of the trace, or the
// consecutive netfilter rules of one hook on one host (every backend and
// table, in the order the kernel ran them).
type hop struct {
	Host  string
	Stage string // trace's Step.Stage; "verdict" for a path's end
	// Title and Sub are the two lines drawn in the box.
	Title, Sub string
	// Rules are the full lines behind the box (every rule with its text).
	Rules []string
	// Notes are the steps' caveats (a branch's probability, an assumption).
	Notes []string
	// Rewrite names the change made to the packet here ("DNAT", "SNAT",
	// "MARK", "reverse NAT"), empty when none; After is the packet after it.
	Rewrite string
	After   string
	// Bypass is true for a frame bridged without the IP hooks: no
	// iptables, no conntrack, no NAT.
	Bypass bool
	// Uncertain is true when a rule of this hop could not be evaluated.
	Uncertain bool
	// Drop is true when the hop ended the packet (DROP, REJECT, policy drop).
	Drop  bool
	Reply bool
	// hooks are the hooks merged into a quiet hop.
	hooks []string
	// Outcome is set on verdict hops.
	Outcome *trace.Outcome
	Prob    float64

	key string
}

// bypassesConntrack reports whether the trace says this bridge step passed
// the frame without the IP hooks (trace decides; the picture only reads
// Step.NoIPHooks).
func bypassesConntrack(s trace.Step) bool {
	return s.Stage == "bridge" && s.NoIPHooks
}

// stepLine is a step in one line, as the text rendering shows it.
func stepLine(s trace.Step) string {
	if s.Stage == "hook" {
		rule := s.Action
		if s.Rule > 0 {
			rule = fmt.Sprintf("rule %d: %s => %s", s.Rule, s.Text, s.Action)
		} else if s.Text != "" && s.Action == "" {
			rule = s.Text
		}
		line := strings.TrimSpace(fmt.Sprintf("%s %s %s/%s %s", s.Hook, s.Backend, s.Table, s.Chain, rule))
		if s.Chain == "" {
			line = strings.TrimSpace(s.Hook + " " + rule)
		}
		if s.Note != "" {
			line += " (" + s.Note + ")"
		}
		return line
	}
	line := s.Stage + ": " + s.Text
	if s.Note != "" {
		line += " (" + s.Note + ")"
	}
	return line
}

// decisive is the step of a hook group that says what the group did: a
// rewrite or a verdict, else the last step.
func decisive(steps []trace.Step) trace.Step {
	for _, s := range steps {
		a := strings.ToUpper(s.Action)
		for _, w := range []string{"DNAT", "SNAT", "MASQUERADE", "REDIRECT", "MARK", "DROP", "REJECT"} {
			if strings.Contains(a, w) {
				return s
			}
		}
	}
	return steps[len(steps)-1]
}

func isDrop(s trace.Step) bool {
	a := strings.ToUpper(s.Action)
	return strings.Contains(a, "DROP") || strings.Contains(a, "REJECT")
}

// uncertainStep reports whether one of the path's uncertainties names the
// step's rule, or the step says it assumed its verdict.
func uncertainStep(s trace.Step, uncertain []string) bool {
	if strings.Contains(s.Action, "assumed") {
		return true
	}
	if s.Rule == 0 {
		return false
	}
	ref := fmt.Sprintf("%s/%s rule %d", s.Table, s.Chain, s.Rule)
	for _, u := range uncertain {
		if strings.Contains(u, ref) {
			return true
		}
	}
	return false
}

// rewriteOf names the rewrite a hook group applied ("DNAT", "SNAT",
// "MASQUERADE", "MARK"), "" when none.
func rewriteOf(group []trace.Step) string {
	var what []string
	for _, s := range group {
		a := strings.ToUpper(s.Action)
		for _, w := range []string{"DNAT", "SNAT", "MASQUERADE", "REDIRECT", "MARK"} {
			if strings.HasPrefix(a, w) || (w == "MARK" && strings.Contains(a, "MARK")) {
				if !slices.Contains(what, w) {
					what = append(what, w)
				}
				break
			}
		}
	}
	return strings.Join(what, "+")
}

// addrsChanged reports whether the packet's addresses or ports changed.
func addrsChanged(before, after *trace.Packet) bool {
	return before != nil && after != nil && (before.Src != after.Src || before.Dst != after.Dst || before.Sport != after.Sport || before.Dport != after.Dport)
}

// hopsOf turns one direction's steps into hops.
func hopsOf(steps []trace.Step, uncertain []string, reply bool) []hop {
	var out []hop
	var prev *trace.Packet
	for i := 0; i < len(steps); {
		s := steps[i]
		j := i + 1
		if s.Stage == "hook" && s.Chain != "" {
			for j < len(steps) && steps[j].Stage == "hook" && steps[j].Host == s.Host && steps[j].Hook == s.Hook && steps[j].Chain != "" {
				j++
			}
		}
		group := steps[i:j]
		h := hop{Host: s.Host, Stage: s.Stage, Reply: reply}
		var key strings.Builder
		for _, g := range group {
			line := stepLine(g)
			h.Rules = append(h.Rules, line)
			key.WriteString(line)
			if g.Packet != nil {
				key.WriteString(g.Packet.String())
			}
			key.WriteByte('\n')
			if g.Note != "" {
				h.Notes = append(h.Notes, g.Note)
			}
			if uncertainStep(g, uncertain) {
				h.Uncertain = true
			}
		}
		h.key = key.String()
		var after *trace.Packet
		for _, g := range group {
			if g.Packet != nil {
				after = g.Packet
			}
		}
		switch {
		case s.Stage == "hook":
			h.Rewrite = rewriteOf(group)
		case s.Stage == "conntrack" && addrsChanged(prev, after):
			h.Rewrite = "conntrack NAT"
			if reply {
				h.Rewrite = "reverse NAT"
			}
		}
		if h.Rewrite != "" && after != nil {
			h.After = after.String()
		}
		switch {
		case s.Stage == "vxlan":
			prev = nil // the outer packet's hooks follow; the inner one comes back at decapsulation
		case after != nil:
			prev = after
		}
		switch {
		case s.Stage == "hook" && s.Chain != "":
			d := decisive(group)
			var tables []string
			for _, g := range group {
				if t := g.Table + " " + g.Backend; !slices.Contains(tables, t) {
					tables = append(tables, t)
				}
			}
			h.Title = s.Hook + " · " + strings.Join(tables, ", ")
			if d.Rule > 0 {
				h.Sub = fmt.Sprintf("%s #%d: %s", d.Chain, d.Rule, d.Action)
			} else {
				h.Sub = fmt.Sprintf("%s: %s", d.Chain, d.Action)
			}
			h.Drop = isDrop(d) && d == group[len(group)-1]
		case s.Stage == "conntrack":
			h.Title = "conntrack"
			h.Sub = strings.TrimPrefix(s.Text, "conntrack: ")
		default:
			h.Title = s.Stage
			if s.Hook != "" {
				h.Title += " · " + s.Hook
			}
			h.Sub = s.Text
			h.Bypass = bypassesConntrack(s)
		}
		if n := len(out); n > 0 && quiet(out[n-1]) && quiet(h) && out[n-1].Host == h.Host {
			out[n-1] = mergeQuiet(out[n-1], h)
		} else {
			out = append(out, h)
		}
		i = j
	}
	return out
}

// quiet reports whether a hook hop only let the packet through: no
// rewrite, no drop, nothing uncertain, no note.
func quiet(h hop) bool {
	return h.Stage == "hook" && h.Rewrite == "" && !h.Drop && !h.Uncertain && len(h.Notes) == 0
}

// mergeQuiet folds quiet hook hop b into a: consecutive hooks that only
// accept are drawn as one box (their rules stay in the tooltip).
func mergeQuiet(a, b hop) hop {
	hooks := a.hooks
	if len(hooks) == 0 {
		hooks = []string{hookOf(a)}
	}
	hooks = append(hooks, hookOf(b))
	a.hooks = hooks
	a.Title = strings.Join(hooks, " → ") + " · accepted"
	a.Rules = append(a.Rules, b.Rules...)
	a.Sub = fmt.Sprintf("%d rules and policies, none rewrote or dropped", len(a.Rules))
	a.key += b.key
	return a
}

// hookOf is the hook named in a hook hop's title.
func hookOf(h hop) string {
	name, _, _ := strings.Cut(h.Title, " · ")
	return name
}

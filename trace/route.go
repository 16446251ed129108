package trace

import (
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/nodestate"
)

var localhost = netip.AddrFrom4([4]byte{127, 0, 0, 1})

func parseAddrOr(s string, def netip.Addr) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a
	}
	return def
}

// routeResult is the outcome of a route lookup.
type routeResult struct {
	// typ is "local", "unicast", "blackhole", "unreachable", "prohibit" or "none".
	typ     string
	dev     string
	nexthop netip.Addr
	src     netip.Addr
	route   *nodestate.Route
	rule    *nodestate.Rule
	table   int
}

func (r routeResult) describe() string {
	if r.route == nil {
		return "no route"
	}
	rt := r.route
	s := ""
	if rt.Type != "" && rt.Type != "unicast" {
		s = rt.Type + " "
	}
	s += rt.Dst.String()
	if rt.Gateway.IsValid() {
		s += " via " + rt.Gateway.String()
	}
	if rt.Dev != "" {
		s += " dev " + rt.Dev
	}
	if rt.Onlink {
		s += " onlink"
	}
	if rt.Src.IsValid() {
		s += " src " + rt.Src.String()
	}
	if rt.Metric != 0 {
		s += fmt.Sprintf(" metric %d", rt.Metric)
	}
	s += " table " + tableName(r.table)
	if r.rule != nil && r.rule.Priority != 0 && r.rule.Priority != 32766 {
		s += fmt.Sprintf(" (ip rule %d)", r.rule.Priority)
	}
	return s
}

func tableName(t int) string {
	switch t {
	case nodestate.TableLocal:
		return "local"
	case nodestate.TableMain:
		return "main"
	case 253:
		return "default"
	}
	return fmt.Sprint(t)
}

// lookup does the kernel's FIB lookup: policy rules by priority, then the
// longest matching prefix (lowest metric among equals) in the rule's table.
// iif is the input device ("" for locally generated packets).
func (h *Host) lookup(p Packet, iif string) routeResult {
	for i := range h.rules {
		ru := &h.rules[i]
		if !ruleMatches(ru, p, iif) {
			continue
		}
		switch ru.Action {
		case "blackhole", "unreachable", "prohibit":
			return routeResult{typ: ru.Action, rule: ru}
		case "", "lookup":
		default:
			continue // goto/nop: not modelled beyond skipping
		}
		for k := range h.tables[ru.Table] {
			rt := &h.tables[ru.Table][k]
			if !rt.Dst.Contains(p.Dst) || !h.of(rt.Dst.Addr()) {
				continue
			}
			if rt.Dev != "" {
				if l := h.links[rt.Dev]; l != nil && !l.Up {
					continue
				}
			}
			switch rt.Type {
			case "throw":
				goto nextRule
			case "broadcast", "multicast", "anycast":
				if rt.Type == "broadcast" && rt.Dst.IsSingleIP() {
					return routeResult{typ: "local", dev: rt.Dev, route: rt, rule: ru, table: ru.Table}
				}
				continue
			}
			res := routeResult{typ: rt.Type, dev: rt.Dev, route: rt, rule: ru, table: ru.Table, src: rt.Src}
			if res.typ == "" {
				res.typ = "unicast"
			}
			res.nexthop = p.Dst
			if rt.Gateway.IsValid() {
				res.nexthop = rt.Gateway
			}
			switch {
			case res.src.IsValid():
			case res.typ == "unicast":
				res.src = h.primaryAddr(rt.Dev, res.nexthop)
			case res.typ == "local":
				// A local destination without a preferred source: the
				// kernel takes the destination itself (IPv4 output routing
				// of an RTN_LOCAL route; IPv6 source selection, rule 1 of
				// RFC 6724, "prefer same address"). IPv6 local routes never
				// carry one: [::1] is called from ::1.
				res.src = p.Dst
			}
			return res
		}
	nextRule:
	}
	return routeResult{typ: "none"}
}

func ruleMatches(ru *nodestate.Rule, p Packet, iif string) bool {
	m := true
	if ru.Src.IsValid() && !ru.Src.Contains(p.Src) {
		m = false
	}
	if ru.Dst.IsValid() && !ru.Dst.Contains(p.Dst) {
		m = false
	}
	if ru.Mask != 0 || ru.Mark != 0 {
		mask := ru.Mask
		if mask == 0 {
			mask = 0xffffffff
		}
		if p.Mark&mask != ru.Mark {
			m = false
		}
	}
	if ru.IifName != "" {
		name := iif
		if name == "" {
			name = "lo" // locally generated packets have iif lo
		}
		if name != ru.IifName {
			m = false
		}
	}
	if ru.Invert {
		m = !m
	}
	return m
}

package trace

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twillnet/twill/netfilter"
)

// compileMatch adds one -m module to a compiled rule. Modules that cannot be
// evaluated from a snapshot make the rule unknown, with the reason.
func compileMatch(cr *iptRule, m *netfilter.Match) {
	fail := func(format string, a ...any) {
		if cr.unknown == "" {
			cr.unknown = fmt.Sprintf("-m "+m.Module+": "+format, a...)
		}
	}
	for _, o := range m.Options {
		if o.Unknown {
			fail("option %s is not known", o.Name)
			return
		}
	}
	val := func(o netfilter.Option) string {
		if len(o.Values) == 0 {
			return ""
		}
		return o.Values[0]
	}
	add := func(c cond) { cr.conds = append(cr.conds, c) }
	switch m.Module {
	case "comment", "nfacct":
		// No effect on the packet.
	case "mark", "connmark":
		onCT := m.Module == "connmark"
		for _, o := range m.Options {
			v, mask, err := parseMark(val(o))
			if err != nil {
				fail("%v", err)
				return
			}
			neg := o.Negated
			add(func(c *pktCtx) tri {
				x := c.Mark
				if onCT {
					x = c.ctmark
				}
				return boolTri(x&mask == v).neg(neg)
			})
		}
	case "conntrack", "state":
		for _, o := range m.Options {
			neg := o.Negated
			switch o.Name {
			case "--ctstate", "--state":
				states := strings.Split(val(o), ",")
				add(func(c *pktCtx) tri { return boolTri(ctStateIn(c, states)).neg(neg) })
			case "--ctproto":
				p := strings.ToLower(val(o))
				add(func(c *pktCtx) tri { return boolTri(c.Proto == p).neg(neg) })
			case "--ctdir":
				reply := strings.EqualFold(val(o), "REPLY")
				add(func(c *pktCtx) tri { return boolTri(c.ctreply == reply).neg(neg) })
			default:
				fail("%s is not evaluated (conntrack details beyond state and direction are not modelled)", o.Name)
				return
			}
		}
	case "addrtype":
		for _, o := range m.Options {
			neg := o.Negated
			switch o.Name {
			case "--src-type", "--dst-type":
				types := strings.Split(strings.ToUpper(val(o)), ",")
				dst := o.Name == "--dst-type"
				add(func(c *pktCtx) tri {
					a := c.Src
					if dst {
						a = c.Dst
					}
					t := c.host.addrType(a)
					for _, x := range types {
						if x == t {
							return boolTri(true).neg(neg)
						}
					}
					return boolTri(false).neg(neg)
				})
			default:
				fail("%s is not evaluated", o.Name)
				return
			}
		}
	case "statistic":
		mode := ""
		if o := m.Option("--mode"); o != nil {
			mode = val(*o)
		}
		switch mode {
		case "random":
			o := m.Option("--probability")
			if o == nil {
				fail("random without --probability")
				return
			}
			p, err := strconv.ParseFloat(val(*o), 64)
			if err != nil || p < 0 || p > 1 {
				fail("probability %q", val(*o))
				return
			}
			if o.Negated {
				p = 1 - p
			}
			cr.prob *= p
			cr.probNote = "statistic random " + val(*o)
		case "nth":
			o := m.Option("--every")
			if o == nil {
				fail("nth without --every")
				return
			}
			n, err := strconv.Atoi(val(*o))
			if err != nil || n < 1 {
				fail("--every %q", val(*o))
				return
			}
			p := 1 / float64(n)
			if o.Negated {
				p = 1 - p
			}
			cr.prob *= p
			cr.probNote = fmt.Sprintf("statistic nth every %d (1 packet in %d; which one depends on the counter)", n, n)
		default:
			fail("mode %q", mode)
		}
	case "tcp", "udp", "sctp":
		proto := m.Module
		add(func(c *pktCtx) tri { return boolTri(c.Proto == proto) })
		for _, o := range m.Options {
			neg := o.Negated
			switch o.Name {
			case "--dport", "--destination-port", "--sport", "--source-port":
				pr, err := parsePorts(val(o))
				if err != nil {
					fail("%v", err)
					return
				}
				dst := o.Name == "--dport" || o.Name == "--destination-port"
				add(func(c *pktCtx) tri {
					p := c.Sport
					if dst {
						p = c.Dport
					}
					return boolTri(inPorts(p, pr)).neg(neg)
				})
			case "--syn":
				if proto != "tcp" {
					fail("%s is a tcp option", o.Name)
					return
				}
				add(func(c *pktCtx) tri { return boolTri(c.Flags == "SYN").neg(neg) })
			case "--tcp-flags":
				if len(o.Values) < 2 {
					fail("--tcp-flags needs mask and flags")
					return
				}
				mask, set := flagSet(o.Values[0]), flagSet(o.Values[1])
				add(func(c *pktCtx) tri {
					f := flagSet(c.Flags)
					return boolTri(f&mask == set).neg(neg)
				})
			default:
				fail("%s is not evaluated", o.Name)
				return
			}
		}
	case "icmp", "icmp6":
		want := map[string]string{"icmp": "icmp", "icmp6": "icmpv6"}[m.Module]
		add(func(c *pktCtx) tri { return boolTri(c.proto() == want) })
		for _, o := range m.Options {
			want := icmpTypeName(val(o))
			neg := o.Negated
			add(func(c *pktCtx) tri { return boolTri(want == "any" || c.Flags == want).neg(neg) })
		}
	case "multiport":
		for _, o := range m.Options {
			pr, err := parsePorts(val(o))
			if err != nil {
				fail("%v", err)
				return
			}
			neg := o.Negated
			name := o.Name
			add(func(c *pktCtx) tri {
				if c.Proto != "tcp" && c.Proto != "udp" && c.Proto != "sctp" {
					return no
				}
				var ok bool
				switch name {
				case "--dports", "--destination-ports":
					ok = inPorts(c.Dport, pr)
				case "--sports", "--source-ports":
					ok = inPorts(c.Sport, pr)
				default:
					ok = inPorts(c.Dport, pr) || inPorts(c.Sport, pr)
				}
				return boolTri(ok).neg(neg)
			})
		}
	case "physdev":
		for _, o := range m.Options {
			neg := o.Negated
			switch o.Name {
			case "--physdev-in", "--physdev-out":
				pat := val(o)
				in := o.Name == "--physdev-in"
				add(func(c *pktCtx) tri {
					n := c.physOut
					if in {
						n = c.physIn
					}
					return ifaceMatch(pat, n).neg(neg)
				})
			case "--physdev-is-in":
				add(func(c *pktCtx) tri { return boolTri(c.physIn != "").neg(neg) })
			case "--physdev-is-out":
				add(func(c *pktCtx) tri { return boolTri(c.physOut != "").neg(neg) })
			case "--physdev-is-bridged":
				add(func(c *pktCtx) tri { return boolTri(c.bridged).neg(neg) })
			}
		}
	case "pkttype":
		for _, o := range m.Options {
			want := strings.ToLower(val(o))
			neg := o.Negated
			add(func(c *pktCtx) tri {
				t := "unicast"
				switch c.host.addrType(c.Dst) {
				case "BROADCAST":
					t = "broadcast"
				case "MULTICAST":
					t = "multicast"
				}
				return boolTri(t == want).neg(neg)
			})
		}
	case "iprange":
		for _, o := range m.Options {
			lo, hi, ok := strings.Cut(val(o), "-")
			a, err1 := parsePrefix(lo)
			b, err2 := parsePrefix(hi)
			if !ok || err1 != nil || err2 != nil {
				fail("range %q", val(o))
				return
			}
			neg, dst := o.Negated, o.Name == "--dst-range"
			add(func(c *pktCtx) tri {
				x := c.Src
				if dst {
					x = c.Dst
				}
				return boolTri(x.Compare(a.Addr()) >= 0 && x.Compare(b.Addr()) <= 0).neg(neg)
			})
		}
	case "limit", "hashlimit":
		cr.note = "-m " + m.Module + ": assumed under the rate (one packet)"
	case "set":
		fail("ipset contents are not part of the snapshot")
	case "mac":
		fail("MAC addresses of senders are not modelled")
	case "recent":
		fail("the recent list's content is not part of the snapshot")
	default:
		fail("module is not evaluated by the simulator")
	}
}

// ctStateIn reports whether the packet's conntrack state is in states
// (which may include the virtual states SNAT and DNAT).
func ctStateIn(c *pktCtx, states []string) bool {
	for _, s := range states {
		switch strings.ToUpper(s) {
		case c.ctstate:
			return true
		case "DNAT":
			if c.ctdnat {
				return true
			}
		case "SNAT":
			if c.ctsnat {
				return true
			}
		}
	}
	return false
}

// flagSet turns "SYN,ACK" into a bit set.
func flagSet(s string) uint8 {
	var f uint8
	for _, x := range strings.Split(strings.ToUpper(s), ",") {
		switch x {
		case "FIN":
			f |= 1
		case "SYN":
			f |= 2
		case "RST":
			f |= 4
		case "PSH":
			f |= 8
		case "ACK":
			f |= 16
		case "URG":
			f |= 32
		case "ALL":
			f |= 63
		}
	}
	return f
}

func icmpTypeName(s string) string {
	switch strings.ToLower(s) {
	case "8", "128", "echo-request":
		return "echo-request"
	case "0", "129", "echo-reply":
		return "echo-reply"
	case "any", "255":
		return "any"
	}
	return strings.ToLower(s)
}

package doctor

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/twillnet/twill/netfilter"
)

// probe is a synthetic packet used to ask "what would the rules do with
// this?". It is deliberately small: the full simulator is package trace.
type probe struct {
	src, dst netip.Addr
	proto    string // "tcp", "udp", "icmp"
	dport    int
	in, out  string
	ctstate  string // "NEW", "ESTABLISHED", ...
	mark     uint32
	// bridged is true for a frame crossing a bridge (physdev matches apply).
	bridged bool
	// local are the node's own addresses (for -m addrtype).
	local map[netip.Addr]bool
}

func (p probe) String() string {
	return fmt.Sprintf("%s %s -> %s:%d (in %s, out %s, ctstate %s)", p.proto, p.src, p.dst, p.dport, p.in, p.out, p.ctstate)
}

// tri is a three-valued match result.
type tri int

const (
	no tri = iota
	yes
	unknown
)

// verdict is the outcome of walking a built-in chain.
type verdict struct {
	// action is "ACCEPT", "DROP" or "REJECT".
	action string
	// chain and rule decided; rule is nil when the built-in chain's policy decided.
	chain string
	rule  *netfilter.Rule
	// path lists "CHAIN#num" for every rule that jumped on the way.
	path []string
	// uncertain lists rules whose matches could not be evaluated and that
	// were assumed not to match.
	uncertain []*netfilter.Rule
}

// describe renders where the verdict came from.
func (v verdict) describe(table string) string {
	if v.rule == nil {
		return fmt.Sprintf("%s/%s policy %s", table, v.chain, v.action)
	}
	return fmt.Sprintf("%s/%s rule %d: %s", table, v.chain, v.rule.Num, v.rule.Text)
}

// standardTarget lists the built-in iptables targets: never chain names,
// so no chain lookup is needed for them.
var standardTarget = map[string]bool{
	"": true, "ACCEPT": true, "DROP": true, "REJECT": true, "RETURN": true, "DNAT": true, "SNAT": true,
	"MASQUERADE": true, "REDIRECT": true, "MARK": true, "CONNMARK": true, "LOG": true, "NFLOG": true,
	"CT": true, "NOTRACK": true, "TRACE": true, "AUDIT": true, "CLASSIFY": true, "DSCP": true,
	"TCPMSS": true, "CHECKSUM": true, "ULOG": true, "SET": true, "NFQUEUE": true, "TPROXY": true,
}

// maxJumpDepth bounds chain recursion (the kernel limits it too; a loop in a
// dump must not hang doctor).
const maxJumpDepth = 64

// evalBuiltin walks a built-in chain of a table with the probe.
func evalBuiltin(t *netfilter.Table, chain string, p probe) (verdict, error) {
	c := t.Chain(chain)
	if c == nil {
		return verdict{action: "ACCEPT", chain: chain}, nil
	}
	v := verdict{chain: chain}
	res, err := walkChain(t, c, &p, &v, 0)
	if err != nil {
		return v, err
	}
	if res == "" || res == "RETURN" {
		v.action, v.chain, v.rule = c.Policy, chain, nil
		return v, nil
	}
	v.action = res
	return v, nil
}

// walkChain returns "ACCEPT", "DROP", "REJECT", "RETURN" or "" (fell off the end).
func walkChain(t *netfilter.Table, c *netfilter.Chain, p *probe, v *verdict, depth int) (string, error) {
	if depth > maxJumpDepth {
		return "", fmt.Errorf("chain %s: jumps nested deeper than %d (a loop?)", c.Name, maxJumpDepth)
	}
	for _, r := range c.Rules {
		m := matchRule(r, p)
		if m == unknown {
			v.uncertain = append(v.uncertain, r)
			continue
		}
		if m == no {
			continue
		}
		switch r.Target {
		case "ACCEPT", "DROP", "REJECT":
			v.chain, v.rule = c.Name, r
			return r.Target, nil
		case "RETURN":
			return "RETURN", nil
		case "MARK":
			applyMark(r, p)
			continue
		case "", "LOG", "NFLOG", "CONNMARK", "CT", "NOTRACK", "TRACE", "AUDIT", "CLASSIFY", "DSCP", "TCPMSS", "CHECKSUM", "ULOG":
			continue
		}
		sub := t.Chain(r.Target)
		if sub == nil {
			// A target we do not model (and not a chain): cannot know.
			v.uncertain = append(v.uncertain, r)
			continue
		}
		v.path = append(v.path, fmt.Sprintf("%s#%d", c.Name, r.Num))
		res, err := walkChain(t, sub, p, v, depth+1)
		if err != nil {
			return "", err
		}
		if res != "" && res != "RETURN" {
			return res, nil
		}
		if r.Goto {
			return "RETURN", nil
		}
	}
	return "", nil
}

func applyMark(r *netfilter.Rule, p *probe) {
	for _, o := range r.TargetOptions {
		if len(o.Values) == 0 {
			continue
		}
		val, mask := parseMark(o.Values[0])
		switch o.Name {
		case "--set-xmark":
			p.mark = (p.mark &^ mask) ^ val
		case "--set-mark":
			p.mark = (p.mark &^ mask) | val
		case "--or-mark":
			p.mark |= val
		case "--and-mark":
			p.mark &= val
		case "--xor-mark":
			p.mark ^= val
		}
	}
}

// parseMark parses "0x4000/0x4000" or "0x4000" (mask all ones).
func parseMark(s string) (val, mask uint32) {
	v, m, hasMask := strings.Cut(s, "/")
	a, _ := strconv.ParseUint(v, 0, 32)
	mask = 0xffffffff
	if hasMask {
		b, _ := strconv.ParseUint(m, 0, 32)
		mask = uint32(b)
	}
	return uint32(a), mask
}

func matchRule(r *netfilter.Rule, p *probe) tri {
	res := yes
	and := func(t tri) {
		if t == no {
			res = no
		} else if t == unknown && res == yes {
			res = unknown
		}
	}
	and(neg(r.Source, func(s string) tri { return matchAddr(s, p.src) }))
	and(neg(r.Destination, func(s string) tri { return matchAddr(s, p.dst) }))
	and(neg(r.InIface, func(s string) tri { return matchIface(s, p.in) }))
	and(neg(r.OutIface, func(s string) tri { return matchIface(s, p.out) }))
	and(neg(r.Protocol, func(s string) tri { return boolTri(protoIs(s, p.proto)) }))
	if r.Fragment.Set() {
		and(neg(r.Fragment, func(string) tri { return no }))
	}
	for i := range r.Matches {
		if res == no {
			return no
		}
		and(matchModule(&r.Matches[i], p))
	}
	return res
}

func neg(v netfilter.Value, f func(string) tri) tri {
	if !v.Set() {
		return yes
	}
	t := f(v.Value)
	if v.Negated {
		switch t {
		case yes:
			return no
		case no:
			return yes
		}
	}
	return t
}

func boolTri(b bool) tri {
	if b {
		return yes
	}
	return no
}

func matchAddr(s string, a netip.Addr) tri {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return boolTri(pfx.Contains(a))
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return boolTri(ip == a)
	}
	return unknown // host names or address/mask forms
}

func matchIface(pattern, name string) tri {
	if strings.HasSuffix(pattern, "+") {
		return boolTri(strings.HasPrefix(name, strings.TrimSuffix(pattern, "+")))
	}
	return boolTri(pattern == name)
}

func protoIs(s, proto string) bool {
	switch strings.ToLower(s) {
	case "all", "0":
		return true
	case "6":
		return proto == "tcp"
	case "17":
		return proto == "udp"
	case "1":
		return proto == "icmp"
	}
	return strings.EqualFold(s, proto)
}

func matchModule(m *netfilter.Match, p *probe) tri {
	res := yes
	and := func(t tri) {
		if t == no {
			res = no
		} else if t == unknown && res == yes {
			res = unknown
		}
	}
	switch m.Module {
	case "comment":
		return yes
	case "mark":
		for _, o := range m.Options {
			if o.Name == "--mark" && len(o.Values) > 0 {
				val, mask := parseMark(o.Values[0])
				and(negOpt(o, boolTri(p.mark&mask == val)))
			}
		}
		return res
	case "conntrack", "state":
		for _, o := range m.Options {
			if (o.Name == "--ctstate" || o.Name == "--state") && len(o.Values) > 0 {
				states := strings.Split(o.Values[0], ",")
				hit := false
				for _, s := range states {
					if s == p.ctstate {
						hit = true
					}
				}
				and(negOpt(o, boolTri(hit)))
				continue
			}
			return unknown // ctorigdst, ctstatus, ...: not modelled here
		}
		return res
	case "tcp", "udp":
		for _, o := range m.Options {
			switch o.Name {
			case "--dport", "--destination-port":
				and(negOpt(o, portIn(o.Values, p.dport)))
			case "--sport", "--source-port":
				return unknown // probe has no fixed source port
			default:
				return unknown // tcp flags and friends
			}
		}
		and(boolTri(p.proto == m.Module))
		return res
	case "multiport":
		for _, o := range m.Options {
			switch o.Name {
			case "--dports", "--destination-ports", "--ports":
				if len(o.Values) > 0 {
					and(negOpt(o, portIn(strings.Split(o.Values[0], ","), p.dport)))
				}
			default:
				return unknown
			}
		}
		return res
	case "addrtype":
		for _, o := range m.Options {
			if len(o.Values) == 0 {
				return unknown
			}
			var a netip.Addr
			switch o.Name {
			case "--dst-type":
				a = p.dst
			case "--src-type":
				a = p.src
			default:
				return unknown
			}
			switch o.Values[0] {
			case "LOCAL":
				and(negOpt(o, boolTri(p.local[a])))
			case "UNICAST":
				and(negOpt(o, boolTri(!p.local[a])))
			default:
				return unknown
			}
		}
		return res
	case "physdev":
		if !p.bridged {
			// A routed packet has no physdev: any positive physdev test fails.
			for _, o := range m.Options {
				if !o.Negated {
					return no
				}
			}
			return yes
		}
		return unknown
	case "pkttype":
		for _, o := range m.Options {
			if o.Name == "--pkt-type" && len(o.Values) > 0 {
				and(negOpt(o, boolTri(o.Values[0] == "unicast")))
			}
		}
		return res
	}
	return unknown
}

func negOpt(o netfilter.Option, t tri) tri {
	if !o.Negated || t == unknown {
		return t
	}
	if t == yes {
		return no
	}
	return yes
}

// portIn matches a port against "80", "1000:2000" values.
func portIn(values []string, port int) tri {
	for _, v := range values {
		lo, hi, isRange := strings.Cut(v, ":")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return unknown // named ports
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return unknown
			}
		}
		if port >= a && port <= b {
			return yes
		}
	}
	return no
}

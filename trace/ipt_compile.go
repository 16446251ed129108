package trace

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/twillnet/twill/netfilter"
)

// iptRuleset is one backend's iptables dump compiled for evaluation.
type iptRuleset struct {
	backend string // "iptables-legacy" or "iptables-nft"
	tables  map[string]*iptTable
}

type iptTable struct {
	name   string
	chains map[string]*iptChain
}

type iptChain struct {
	name   string
	policy string
	rules  []*iptRule
	// index: for long chains, rule positions per exact destination address
	// (-d a/32) and the positions of every other rule, both ascending.
	byDst map[netip.Addr][]int
	wild  []int
}

// cond is one compiled match.
type cond func(*pktCtx) tri

// iptRule is one rule compiled for evaluation.
type iptRule struct {
	r     *netfilter.Rule
	conds []cond
	// prob is the probability a statistic match matches (1 without one).
	prob     float64
	probNote string
	// unknown says why the rule cannot be evaluated ("" when it can).
	unknown string
	// note is a caveat that does not stop evaluation (limit assumed under rate).
	note   string
	dstKey netip.Addr // exact -d address, for the chain index
	tgt    target
}

// target is a compiled -j target.
type target struct {
	name   string // ACCEPT, DROP, REJECT, RETURN, DNAT, ..., a chain name, "" for none
	isGoto bool
	nat    *natAction
	// mark ops: new = (old & and) ^ xor   (covers set-xmark, set-mark, or, and, xor)
	markAnd, markXor uint32
	markOn           string // "mark" or "ctmark"
	connSave         bool
	connRestore      bool
	nfmask, ctmask   uint32
	reject           string
	unknown          string
}

// natAction is a NAT target.
type natAction struct {
	kind string // DNAT, SNAT, MASQUERADE, REDIRECT
	addr netip.Addr
	port uint16 // 0 keeps the port
	note string
}

func (n *natAction) String() string {
	switch n.kind {
	case "MASQUERADE":
		return "MASQUERADE"
	case "REDIRECT":
		if n.port != 0 {
			return fmt.Sprintf("REDIRECT to port %d", n.port)
		}
		return "REDIRECT"
	}
	if n.port != 0 {
		return fmt.Sprintf("%s to %s", n.kind, netip.AddrPortFrom(n.addr, n.port))
	}
	return fmt.Sprintf("%s to %s", n.kind, n.addr)
}

const chainIndexMin = 32

func compileIpt(backend string, rs *netfilter.Ruleset) *iptRuleset {
	out := &iptRuleset{backend: backend, tables: map[string]*iptTable{}}
	for _, t := range rs.Tables {
		ct := &iptTable{name: t.Name, chains: map[string]*iptChain{}}
		for _, c := range t.Chains {
			cc := &iptChain{name: c.Name, policy: c.Policy}
			for _, r := range c.Rules {
				cc.rules = append(cc.rules, compileIptRule(r))
			}
			if len(cc.rules) >= chainIndexMin {
				cc.byDst = map[netip.Addr][]int{}
				for i, r := range cc.rules {
					if r.dstKey.IsValid() {
						cc.byDst[r.dstKey] = append(cc.byDst[r.dstKey], i)
					} else {
						cc.wild = append(cc.wild, i)
					}
				}
			}
			ct.chains[c.Name] = cc
		}
		out.tables[t.Name] = ct
	}
	return out
}

// next returns the position of the first rule at or after i that may match
// a packet to dst.
func (c *iptChain) next(i int, dst netip.Addr) int {
	if c.byDst == nil {
		return i
	}
	best := len(c.rules)
	if l := c.byDst[dst]; len(l) > 0 {
		if k := sort.SearchInts(l, i); k < len(l) {
			best = l[k]
		}
	}
	if k := sort.SearchInts(c.wild, i); k < len(c.wild) && c.wild[k] < best {
		best = c.wild[k]
	}
	return best
}

func compileIptRule(r *netfilter.Rule) *iptRule {
	cr := &iptRule{r: r, prob: 1}
	if r.Unknown {
		cr.unknown = "the rule has a module, option or target this simulator does not know"
	}
	if r.Protocol.Set() {
		p := strings.ToLower(r.Protocol.Value)
		switch p {
		case "6":
			p = "tcp"
		case "17":
			p = "udp"
		case "1":
			p = "icmp"
		case "132":
			p = "sctp"
		case "58", "ipv6-icmp", "icmpv6":
			p = "icmpv6"
		}
		neg := r.Protocol.Negated
		cr.conds = append(cr.conds, func(c *pktCtx) tri { return boolTri(p == "all" || c.proto() == p).neg(neg) })
	}
	for _, v := range []struct {
		val netfilter.Value
		dst bool
	}{{r.Source, false}, {r.Destination, true}} {
		if !v.val.Set() {
			continue
		}
		pfx, err := parsePrefixList(v.val.Value)
		if err != nil {
			cr.unknown = err.Error()
			continue
		}
		neg, isDst := v.val.Negated, v.dst
		if isDst && !neg && len(pfx) == 1 && pfx[0].IsSingleIP() {
			cr.dstKey = pfx[0].Addr()
		}
		cr.conds = append(cr.conds, func(c *pktCtx) tri {
			a := c.Src
			if isDst {
				a = c.Dst
			}
			for _, p := range pfx {
				if p.Contains(a) {
					return boolTri(true).neg(neg)
				}
			}
			return boolTri(false).neg(neg)
		})
	}
	if r.InIface.Set() {
		v := r.InIface
		cr.conds = append(cr.conds, func(c *pktCtx) tri { return ifaceMatch(v.Value, c.in).neg(v.Negated) })
	}
	if r.OutIface.Set() {
		v := r.OutIface
		cr.conds = append(cr.conds, func(c *pktCtx) tri { return ifaceMatch(v.Value, c.out).neg(v.Negated) })
	}
	if r.Fragment.Set() {
		neg := r.Fragment.Negated
		cr.conds = append(cr.conds, func(*pktCtx) tri { return boolTri(false).neg(neg) })
	}
	for i := range r.Matches {
		compileMatch(cr, &r.Matches[i])
	}
	cr.tgt = compileTarget(r)
	return cr
}

// ifaceMatch matches an interface name with iptables' trailing + wildcard.
// An empty name (no interface at this hook) never matches a pattern.
func ifaceMatch(pat, name string) tri {
	if name == "" {
		return no
	}
	if strings.HasSuffix(pat, "+") {
		return boolTri(strings.HasPrefix(name, strings.TrimSuffix(pat, "+")))
	}
	return boolTri(pat == name)
}

func parsePrefixList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		p, err := parsePrefix(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		a, bits, _ := strings.Cut(s, "/")
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("address %q: %v", s, err)
		}
		if n, err := strconv.Atoi(bits); err == nil {
			return netip.PrefixFrom(addr, n).Masked(), nil
		}
		m, err := netip.ParseAddr(bits)
		if err != nil || !m.Is4() {
			return netip.Prefix{}, fmt.Errorf("address %q: bad mask", s)
		}
		b := m.As4()
		n := 0
		for _, x := range b {
			for k := 7; k >= 0; k-- {
				if x&(1<<k) != 0 {
					n++
				}
			}
		}
		return netip.PrefixFrom(addr, n).Masked(), nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: %v (host names are not resolved)", s, err)
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// parseMark parses "0x4000" or "0x4000/0x4000" into value and mask.
func parseMark(s string) (v, m uint32, err error) {
	a, b, hasMask := strings.Cut(s, "/")
	x, err := strconv.ParseUint(a, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("mark %q: %v", s, err)
	}
	m = 0xffffffff
	if hasMask {
		y, err := strconv.ParseUint(b, 0, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("mark %q: %v", s, err)
		}
		m = uint32(y)
	}
	return uint32(x), m, nil
}

// portRange is an inclusive port range.
type portRange struct{ lo, hi uint16 }

func parsePorts(s string) ([]portRange, error) {
	var out []portRange
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, ":")
		lo, err := parsePort(a, 0)
		if err != nil {
			return nil, err
		}
		hi := lo
		if isRange {
			if hi, err = parsePort(b, 65535); err != nil {
				return nil, err
			}
		}
		out = append(out, portRange{lo, hi})
	}
	return out, nil
}

func parsePort(s string, def uint16) (uint16, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		if p, ok := servicePorts[s]; ok {
			return p, nil
		}
		return 0, fmt.Errorf("port %q: not a number", s)
	}
	return uint16(n), nil
}

// servicePorts are the service names iptables-save may print.
var servicePorts = map[string]uint16{"http": 80, "https": 443, "ssh": 22, "domain": 53, "ntp": 123}

func inPorts(p uint16, rs []portRange) bool {
	for _, r := range rs {
		if p >= r.lo && p <= r.hi {
			return true
		}
	}
	return false
}

func compileTarget(r *netfilter.Rule) target {
	t := target{name: r.Target, isGoto: r.Goto}
	opt := func(name string) (string, bool) {
		for _, o := range r.TargetOptions {
			if o.Name == name && len(o.Values) > 0 {
				return o.Values[0], true
			}
		}
		return "", false
	}
	has := func(name string) bool {
		for _, o := range r.TargetOptions {
			if o.Name == name {
				return true
			}
		}
		return false
	}
	switch r.Target {
	case "DNAT", "SNAT":
		key := "--to-destination"
		if r.Target == "SNAT" {
			key = "--to-source"
		}
		v, ok := opt(key)
		if !ok {
			t.unknown = r.Target + " without " + key
			break
		}
		n := &natAction{kind: r.Target}
		addr, port := splitNATTo(v)
		if a, _, isRange := strings.Cut(addr, "-"); isRange {
			addr = a
			n.note = "address range: the first address is shown"
		}
		if p, _, isRange := strings.Cut(port, "-"); isRange {
			port = p
			n.note = "port range: the first port is shown"
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			t.unknown = fmt.Sprintf("%s %s: %v", r.Target, v, err)
			break
		}
		n.addr = a
		if port != "" {
			pn, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				t.unknown = fmt.Sprintf("%s %s: bad port", r.Target, v)
				break
			}
			n.port = uint16(pn)
		}
		t.nat = n
	case "MASQUERADE":
		t.nat = &natAction{kind: "MASQUERADE"}
	case "REDIRECT":
		n := &natAction{kind: "REDIRECT"}
		if v, ok := opt("--to-ports"); ok {
			p, _, _ := strings.Cut(v, "-")
			pn, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				t.unknown = "REDIRECT --to-ports " + v
			}
			n.port = uint16(pn)
		}
		t.nat = n
	case "MARK", "CONNMARK":
		t.markOn = "mark"
		if r.Target == "CONNMARK" {
			t.markOn = "ctmark"
		}
		t.markAnd, t.markXor = 0xffffffff, 0
		t.nfmask, t.ctmask = 0xffffffff, 0xffffffff
		for _, o := range r.TargetOptions {
			if len(o.Values) == 0 {
				switch o.Name {
				case "--save-mark":
					t.connSave = true
				case "--restore-mark":
					t.connRestore = true
				default:
					t.unknown = r.Target + " " + o.Name
				}
				continue
			}
			v, m, err := parseMark(o.Values[0])
			if err != nil {
				t.unknown = err.Error()
				continue
			}
			switch o.Name {
			case "--set-xmark":
				t.markAnd, t.markXor = ^m, v
			case "--set-mark":
				t.markAnd, t.markXor = ^(m | v), v
			case "--or-mark":
				t.markAnd, t.markXor = ^v, v
			case "--and-mark":
				t.markAnd = v
			case "--xor-mark":
				t.markXor = v
			case "--nfmask":
				t.nfmask = v
			case "--ctmask":
				t.ctmask = v
			case "--mask":
				t.nfmask, t.ctmask = v, v
			default:
				t.unknown = r.Target + " " + o.Name
			}
		}
	case "REJECT":
		t.reject = "icmp-port-unreachable"
		if v, ok := opt("--reject-with"); ok {
			t.reject = v
		}
	case "CT":
		if !has("--notrack") {
			t.name = "CT-other"
		}
	}
	return t
}

// splitNATTo splits a DNAT/SNAT --to value into address (range) and port
// (range): "10.0.0.1:80", "10.0.0.1", "[fd00::1]:80", "[fd00::1]",
// "fd00::1" (an IPv6 address without brackets has no port).
func splitNATTo(v string) (addr, port string) {
	if rest, ok := strings.CutPrefix(v, "["); ok {
		a, after, _ := strings.Cut(rest, "]")
		// a range of IPv6 addresses is written [a]-[b]: keep the first
		a, _, _ = strings.Cut(a, "]")
		if p, ok := strings.CutPrefix(after, ":"); ok {
			return a, p
		}
		return a, ""
	}
	if strings.Count(v, ":") > 1 {
		return v, ""
	}
	if i := strings.LastIndex(v, ":"); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, ""
}

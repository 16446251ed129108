package trace

import (
	"cmp"
	"encoding/json"
	"fmt"
	"github.com/twillnet/twill/nodestate"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// nval is the value of an nft expression for one packet.
type nval struct {
	addr   netip.Addr
	num    uint64
	isNum  bool
	str    string
	states []string // ct state: a flag set
	parts  []nval   // concatenation
}

func (v nval) canon() string {
	switch {
	case v.parts != nil:
		var p []string
		for _, x := range v.parts {
			p = append(p, x.canon())
		}
		return strings.Join(p, " . ")
	case v.addr.IsValid():
		return v.addr.String()
	case v.isNum:
		return strconv.FormatUint(v.num, 10)
	}
	return canonWord(v.str)
}

// errAbsent marks an expression with no value for this packet (tcp dport of
// a udp packet): the match fails, as in the kernel.
type errAbsent struct{}

func (errAbsent) Error() string { return "absent" }

var protoNum = map[string]uint64{"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "ipv6-icmp": 58, "icmpv6": 58}

// l4num is the packet's layer-4 protocol number; an "icmp" packet of IPv6
// is ICMPv6 (58).
func (c *pktCtx) l4num() uint64 {
	if c.Proto == "icmp" && c.Src.Is6() {
		return 58
	}
	return protoNum[c.Proto]
}

// nftExpr evaluates a left-hand expression.
func nftExpr(raw json.RawMessage, c *pktCtx) (nval, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nval{}, fmt.Errorf("expression %s", compact(raw))
	}
	for k, v := range m {
		switch k {
		case "payload":
			var p struct{ Protocol, Field string }
			_ = json.Unmarshal(v, &p)
			v6 := c.Src.Is6()
			if (p.Protocol == "ip" && v6) || (p.Protocol == "ip6" && !v6) {
				return nval{}, errAbsent{} // the other family's header: no match, as in an inet table
			}
			switch p.Protocol + " " + p.Field {
			case "ip saddr", "ip6 saddr":
				return nval{addr: c.Src}, nil
			case "ip daddr", "ip6 daddr":
				return nval{addr: c.Dst}, nil
			case "ip protocol", "ip6 nexthdr":
				return nval{num: c.l4num(), isNum: true}, nil
			}
			if p.Field == "sport" || p.Field == "dport" {
				if (p.Protocol == "th" && c.Proto != "icmp") || p.Protocol == c.Proto {
					if p.Field == "sport" {
						return nval{num: uint64(c.Sport), isNum: true}, nil
					}
					return nval{num: uint64(c.Dport), isNum: true}, nil
				}
				return nval{}, errAbsent{}
			}
			return nval{}, fmt.Errorf("payload %s %s is not evaluated", p.Protocol, p.Field)
		case "meta":
			var p struct{ Key string }
			_ = json.Unmarshal(v, &p)
			switch p.Key {
			case "l4proto", "protocol":
				if p.Key == "protocol" {
					if c.Src.Is6() {
						return nval{str: "ip6"}, nil
					}
					return nval{str: "ip"}, nil
				}
				return nval{num: c.l4num(), isNum: true}, nil
			case "iifname", "iif":
				if c.in == "" {
					return nval{}, errAbsent{}
				}
				return nval{str: c.in}, nil
			case "oifname", "oif":
				if c.out == "" {
					return nval{}, errAbsent{}
				}
				return nval{str: c.out}, nil
			case "mark":
				return nval{num: uint64(c.Mark), isNum: true}, nil
			case "nfproto":
				if c.Src.Is6() {
					return nval{str: "ipv6"}, nil
				}
				return nval{str: "ipv4"}, nil
			case "pkttype":
				return nval{str: "host"}, nil
			}
			return nval{}, fmt.Errorf("meta %s is not evaluated", p.Key)
		case "ct":
			var p struct{ Key, Dir string }
			_ = json.Unmarshal(v, &p)
			switch p.Key {
			case "state":
				st := strings.ToLower(c.ctstate)
				if st == "untracked" {
					return nval{states: []string{"untracked"}}, nil
				}
				return nval{states: []string{st}}, nil
			case "mark":
				return nval{num: uint64(c.ctmark), isNum: true}, nil
			case "direction":
				if c.ctreply {
					return nval{str: "reply"}, nil
				}
				return nval{str: "original"}, nil
			case "status":
				var s []string
				if c.ctdnat {
					s = append(s, "dnat")
				}
				if c.ctsnat {
					s = append(s, "snat")
				}
				return nval{states: s}, nil
			}
			return nval{}, fmt.Errorf("ct %s is not evaluated", p.Key)
		case "fib":
			var p struct {
				Result string   `json:"result"`
				Flags  []string `json:"flags"`
			}
			_ = json.Unmarshal(v, &p)
			if p.Result == "type" && slices.Equal(p.Flags, []string{"daddr"}) {
				return nval{str: strings.ToLower(c.host.addrType(c.Dst))}, nil
			}
			if p.Result == "type" && slices.Equal(p.Flags, []string{"saddr"}) {
				return nval{str: strings.ToLower(c.host.addrType(c.Src))}, nil
			}
			return nval{}, fmt.Errorf("fib %s %v is not evaluated", p.Result, p.Flags)
		case "&", "|", "^":
			var ops []json.RawMessage
			if json.Unmarshal(v, &ops) != nil || len(ops) != 2 {
				return nval{}, fmt.Errorf("binary op %s", compact(v))
			}
			a, err := nftExpr(ops[0], c)
			if err != nil {
				return nval{}, err
			}
			b, err := nftNumber(ops[1])
			if err != nil || !a.isNum {
				return nval{}, fmt.Errorf("binary op %s", compact(v))
			}
			switch k {
			case "&":
				return nval{num: a.num & b, isNum: true}, nil
			case "|":
				return nval{num: a.num | b, isNum: true}, nil
			}
			return nval{num: a.num ^ b, isNum: true}, nil
		case "concat":
			var ops []json.RawMessage
			_ = json.Unmarshal(v, &ops)
			out := nval{parts: []nval{}}
			for _, o := range ops {
				x, err := nftExpr(o, c)
				if err != nil {
					return nval{}, err
				}
				out.parts = append(out.parts, x)
			}
			return out, nil
		}
		return nval{}, fmt.Errorf("expression %s is not evaluated", k)
	}
	return nval{}, fmt.Errorf("empty expression")
}

func nftNumber(raw json.RawMessage) (uint64, error) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return strconv.ParseUint(string(n), 10, 64)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strconv.ParseUint(s, 0, 64)
	}
	return 0, fmt.Errorf("not a number: %s", compact(raw))
}

// nftMatchRight reports whether v matches the right-hand side (a literal,
// prefix, range, anonymous set, or @named set).
func nftMatchRight(v nval, right json.RawMessage, t *nftTable) (bool, error) {
	if v.states != nil {
		for _, s := range v.states {
			ok, err := nftMatchRight(nval{str: s}, right, t)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
	var s string
	if json.Unmarshal(right, &s) == nil {
		if strings.HasPrefix(s, "@") {
			set := t.sets[s[1:]]
			if set == nil {
				return false, fmt.Errorf("set %s not found", s)
			}
			_, ok, err := set.lookup(v, t)
			return ok, err
		}
		if v.isNum {
			if n, ok := protoNum[s]; ok {
				return v.num == n, nil
			}
			n, err := strconv.ParseUint(s, 0, 64)
			if err != nil {
				return false, nil
			}
			return v.num == n, nil
		}
		return v.canon() == canonWord(s), nil
	}
	var n json.Number
	if json.Unmarshal(right, &n) == nil {
		x, _ := strconv.ParseUint(string(n), 10, 64)
		return v.isNum && v.num == x, nil
	}
	var list []json.RawMessage
	if json.Unmarshal(right, &list) == nil {
		for _, e := range list {
			if ok, err := nftMatchRight(v, e, t); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(right, &m) != nil {
		return false, fmt.Errorf("right side %s", compact(right))
	}
	for k, x := range m {
		switch k {
		case "prefix":
			var p struct {
				Addr string `json:"addr"`
				Len  int    `json:"len"`
			}
			_ = json.Unmarshal(x, &p)
			a, err := netip.ParseAddr(p.Addr)
			if err != nil {
				return false, fmt.Errorf("prefix %s", compact(x))
			}
			return v.addr.IsValid() && netip.PrefixFrom(a, p.Len).Masked().Contains(v.addr), nil
		case "range":
			var r []json.RawMessage
			if json.Unmarshal(x, &r) != nil || len(r) != 2 {
				return false, fmt.Errorf("range %s", compact(x))
			}
			if v.addr.IsValid() {
				var a, b string
				_ = json.Unmarshal(r[0], &a)
				_ = json.Unmarshal(r[1], &b)
				lo, e1 := netip.ParseAddr(a)
				hi, e2 := netip.ParseAddr(b)
				if e1 != nil || e2 != nil {
					return false, fmt.Errorf("range %s", compact(x))
				}
				return v.addr.Compare(lo) >= 0 && v.addr.Compare(hi) <= 0, nil
			}
			lo, e1 := nftNumber(r[0])
			hi, e2 := nftNumber(r[1])
			if e1 != nil || e2 != nil || !v.isNum {
				return false, fmt.Errorf("range %s", compact(x))
			}
			return v.num >= lo && v.num <= hi, nil
		case "set":
			return nftMatchRight(v, x, t)
		case "concat":
			var parts []json.RawMessage
			_ = json.Unmarshal(x, &parts)
			if len(parts) != len(v.parts) {
				return false, nil
			}
			for i := range parts {
				if ok, err := nftMatchRight(v.parts[i], parts[i], t); err != nil || !ok {
					return ok, err
				}
			}
			return true, nil
		}
	}
	return false, fmt.Errorf("right side %s is not evaluated", compact(right))
}

// lookup finds v in a set or map: the map value, whether found.
func (s *nftSet) lookup(v nval, t *nftTable) (json.RawMessage, bool, error) {
	if val, ok := s.exact[v.canon()]; ok {
		return val, true, nil
	}
	for _, e := range s.other {
		ok, err := nftMatchRight(v, e.key, t)
		if err != nil {
			return nil, false, err
		}
		if ok {
			return e.val, true, nil
		}
	}
	return nil, false, nil
}

// nftNoEffect are the statements that do not change the packet or the
// verdict (limit: assumed under the rate).
var nftNoEffect = map[string]bool{"counter": true, "comment": true, "log": true, "set": true, "limit": true, "quota": true}

type nftFrame struct {
	t *nftTable
	c *nftChain
	i int
}

type nftWalk struct {
	bc    *baseChain
	out   []chainOutcome
	steps int
}

// runNftChain walks a native nft base chain.
func runNftChain(bc *baseChain, ctx pktCtx) []chainOutcome {
	w := &nftWalk{bc: bc}
	w.walk(chainOutcome{prob: 1, ctx: ctx}, []nftFrame{{bc.nftT, bc.nftC, 0}})
	return mergeOutcomes(w.out)
}

func (w *nftWalk) step(o *chainOutcome, c *nftChain, r *nftRuleC, action, note string) {
	s := Step{Stage: "hook", Hook: o.ctx.hook, Backend: nodestate.BackendNft, Table: w.bc.table, Chain: c.name, Action: action, Note: note}
	if r != nil {
		s.Rule, s.Text = r.r.Handle, r.text
	}
	o.steps = append(o.steps, s)
}

func (w *nftWalk) policy(o chainOutcome) {
	p := w.bc.nftC.policy
	if p == "" {
		p = "accept"
	}
	o.verdict = p
	w.step(&o, w.bc.nftC, nil, "policy "+p, "")
	w.out = append(w.out, o)
}

func (w *nftWalk) walk(o chainOutcome, stack []nftFrame) {
	for {
		w.steps++
		if w.steps > maxSteps || len(w.out) >= maxBranches {
			if w.steps == maxSteps+1 || len(w.out) < maxBranches {
				o.verdict = "accept"
				o.uncertain = append(o.uncertain, fmt.Sprintf("nft %s/%s: more than %d rule evaluations or %d branches; assumed accepted", w.bc.table, w.bc.chain, maxSteps, maxBranches))
				w.out = append(w.out, o)
			}
			return
		}
		top := &stack[len(stack)-1]
		rules := top.c.compiled()
		if top.i >= len(rules) {
			if len(stack) == 1 {
				w.policy(o)
				return
			}
			stack = stack[:len(stack)-1]
			continue
		}
		r := rules[top.i]
		top.i++
		if !w.rule(&o, &stack, top.c, r) {
			return
		}
	}
}

// rule runs one rule's statements in order; false when the walk ended.
func (w *nftWalk) rule(o *chainOutcome, stack *[]nftFrame, c *nftChain, r *nftRuleC) bool {
	t := (*stack)[len(*stack)-1].t
	unc := func(why string) bool {
		o.uncertain = append(o.uncertain, fmt.Sprintf("nft %s chain %s handle %d (%s): %s; rule skipped", w.bc.table, c.name, r.r.Handle, r.text, why))
		return true
	}
	// pending is a match that cannot be evaluated: the later matches are
	// still evaluated, and one that fails decides (the rule does not
	// apply); the rule is uncertain only when it gets to act.
	pending := ""
	for si, st := range r.stmts {
		for k, v := range st {
			if pending != "" && k != "match" && !nftNoEffect[k] {
				return unc(pending + ", and every other match of the rule matches")
			}
			switch k {
			case "match":
				var m struct {
					Op    string          `json:"op"`
					Left  json.RawMessage `json:"left"`
					Right json.RawMessage `json:"right"`
				}
				if err := json.Unmarshal(v, &m); err != nil {
					pending = cmp.Or(pending, "bad match")
					continue
				}
				lv, err := nftExpr(m.Left, &o.ctx)
				if _, absent := err.(errAbsent); absent {
					return true
				}
				if err != nil {
					pending = cmp.Or(pending, err.Error())
					continue
				}
				var ok bool
				switch m.Op {
				case "==", "in", "!=":
					ok, err = nftMatchRight(lv, m.Right, t)
					if m.Op == "!=" {
						ok = !ok
					}
				case "<", ">", "<=", ">=":
					n, e := nftNumber(m.Right)
					if e != nil || !lv.isNum {
						pending = cmp.Or(pending, "comparison "+m.Op)
						continue
					}
					switch m.Op {
					case "<":
						ok = lv.num < n
					case ">":
						ok = lv.num > n
					case "<=":
						ok = lv.num <= n
					default:
						ok = lv.num >= n
					}
				default:
					pending = cmp.Or(pending, "operator "+m.Op)
					continue
				}
				if err != nil {
					pending = cmp.Or(pending, err.Error())
					continue
				}
				if !ok {
					return true
				}
			case "counter", "comment", "log", "set", "limit", "quota":
				// No effect on the verdict (limit: assumed under the rate);
				// see nftNoEffect.
			case "accept", "drop":
				o.verdict = k
				w.step(o, c, r, strings.ToUpper(k), "")
				w.out = append(w.out, *o)
				return false
			case "reject":
				o.verdict, o.reject = "reject", "port-unreachable"
				var rj struct {
					Type string `json:"type"`
					Expr string `json:"expr"`
				}
				_ = json.Unmarshal(v, &rj)
				if rj.Type == "tcp reset" {
					o.reject = "tcp-reset"
				} else if rj.Expr != "" {
					o.reject = rj.Expr
				}
				w.step(o, c, r, "REJECT "+o.reject, "")
				w.out = append(w.out, *o)
				return false
			case "continue":
				return true
			case "return":
				w.step(o, c, r, "RETURN", "")
				if len(*stack) == 1 {
					w.policy(*o)
					return false
				}
				*stack = (*stack)[:len(*stack)-1]
				return true
			case "jump", "goto":
				var tg struct {
					Target string `json:"target"`
				}
				_ = json.Unmarshal(v, &tg)
				return w.jump(o, stack, c, r, k, tg.Target)
			case "vmap":
				var vm struct {
					Key  json.RawMessage `json:"key"`
					Data json.RawMessage `json:"data"`
				}
				_ = json.Unmarshal(v, &vm)
				return w.vmap(o, stack, c, r, t, vm.Key, vm.Data, si)
			case "dnat", "snat", "masquerade", "redirect":
				n, err := nftNAT(k, v)
				if err != nil {
					return unc(err.Error())
				}
				o.nat = n
				o.verdict = "accept"
				w.step(o, c, r, n.String(), "")
				w.out = append(w.out, *o)
				return false
			case "mangle":
				var mg struct {
					Key   json.RawMessage `json:"key"`
					Value json.RawMessage `json:"value"`
				}
				_ = json.Unmarshal(v, &mg)
				key := exprText(mg.Key)
				val, err := nftNumber(mg.Value)
				if err != nil {
					x, e := nftExpr(mg.Value, &o.ctx)
					if e != nil || !x.isNum {
						return unc("mangle value " + compact(mg.Value))
					}
					val = x.num
				}
				switch key {
				case "meta mark":
					o.ctx.Mark = uint32(val)
					w.step(o, c, r, fmt.Sprintf("MARK: mark -> 0x%x", o.ctx.Mark), "")
				case "ct mark":
					o.ctx.ctmark = uint32(val)
					w.step(o, c, r, fmt.Sprintf("ct mark -> 0x%x", o.ctx.ctmark), "")
				default:
					return unc("mangle " + key)
				}
			case "notrack":
				o.notrack = true
				o.ctx.ctstate = "UNTRACKED"
				w.step(o, c, r, "NOTRACK", "")
			default:
				return unc("statement " + k + " is not evaluated")
			}
		}
	}
	// Matches only (pending or not): the rule changes nothing either way.
	return true
}

func (w *nftWalk) jump(o *chainOutcome, stack *[]nftFrame, c *nftChain, r *nftRuleC, verb, target string) bool {
	t := (*stack)[len(*stack)-1].t
	next := t.chains[target]
	if next == nil {
		o.uncertain = append(o.uncertain, fmt.Sprintf("nft %s: chain %s not found", w.bc.table, target))
		return true
	}
	if len(*stack) >= maxJumpDepth {
		o.uncertain = append(o.uncertain, fmt.Sprintf("nft %s: jumps nest deeper than %d", w.bc.table, maxJumpDepth))
		return true
	}
	w.step(o, c, r, verb+" "+target, "")
	if verb == "goto" {
		*stack = (*stack)[:len(*stack)-1]
		if len(*stack) == 0 {
			*stack = append(*stack, nftFrame{t, &nftChain{name: w.bc.nftC.name, policy: w.bc.nftC.policy}, 0})
		}
	}
	*stack = append(*stack, nftFrame{t, next, 0})
	return true
}

// vmap dispatches on a verdict map; numgen random keys fork the walk.
func (w *nftWalk) vmap(o *chainOutcome, stack *[]nftFrame, c *nftChain, r *nftRuleC, t *nftTable, key, data json.RawMessage, si int) bool {
	var set *nftSet
	var name string
	if json.Unmarshal(data, &name) == nil && strings.HasPrefix(name, "@") {
		set = t.sets[name[1:]]
	} else {
		var anon struct {
			Set []json.RawMessage `json:"set"`
		}
		if json.Unmarshal(data, &anon) == nil {
			set = compileNftSetElems(anon.Set)
		}
	}
	if set == nil {
		o.uncertain = append(o.uncertain, fmt.Sprintf("nft %s chain %s handle %d: verdict map %s not found", w.bc.table, c.name, r.r.Handle, compact(data)))
		return true
	}
	var ng struct {
		Numgen *struct {
			Mode   string `json:"mode"`
			Mod    uint64 `json:"mod"`
			Offset uint64 `json:"offset"`
		} `json:"numgen"`
	}
	if json.Unmarshal(key, &ng) == nil && ng.Numgen != nil && ng.Numgen.Mode == "random" && ng.Numgen.Mod > 0 {
		mod := ng.Numgen.Mod
		var miss float64
		for i := uint64(0); i < mod; i++ {
			val, ok, _ := set.lookup(nval{num: i + ng.Numgen.Offset, isNum: true}, t)
			if !ok {
				miss++
				continue
			}
			b := o.clone()
			b.prob *= 1 / float64(mod)
			st := slices.Clone(*stack)
			note := fmt.Sprintf("numgen random mod %d = %d: taken with probability %.4g", mod, i, 1/float64(mod))
			if w.verdictValue(&b, &st, c, r, val, note) {
				w.walk(b, st)
			}
		}
		if miss == 0 {
			return false
		}
		o.prob *= miss / float64(mod)
		return true
	}
	kv, err := nftExpr(key, &o.ctx)
	if _, absent := err.(errAbsent); absent {
		return true
	}
	if err != nil {
		o.uncertain = append(o.uncertain, fmt.Sprintf("nft %s chain %s handle %d (%s): %v", w.bc.table, c.name, r.r.Handle, r.text, err))
		return true
	}
	val, ok, err := set.lookup(kv, t)
	if err != nil {
		o.uncertain = append(o.uncertain, fmt.Sprintf("nft %s chain %s handle %d: %v", w.bc.table, c.name, r.r.Handle, err))
		return true
	}
	if !ok {
		return true
	}
	return w.verdictValue(o, stack, c, r, val, "")
}

func compileNftSetElems(elems []json.RawMessage) *nftSet {
	s := &nftSet{isMap: true, exact: map[string]json.RawMessage{}}
	for _, e := range elems {
		var pair []json.RawMessage
		if json.Unmarshal(e, &pair) != nil || len(pair) != 2 {
			continue
		}
		if k, ok := canonLiteral(pair[0]); ok {
			s.exact[k] = pair[1]
			s.keys = append(s.keys, k)
		} else {
			s.other = append(s.other, nftElem{key: pair[0], val: pair[1]})
		}
	}
	return s
}

// verdictValue applies a verdict taken from a map.
func (w *nftWalk) verdictValue(o *chainOutcome, stack *[]nftFrame, c *nftChain, r *nftRuleC, val json.RawMessage, note string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(val, &m) != nil {
		return true
	}
	for k, v := range m {
		switch k {
		case "accept", "drop":
			o.verdict = k
			w.step(o, c, r, strings.ToUpper(k), note)
			w.out = append(w.out, *o)
			return false
		case "jump", "goto":
			var tg struct {
				Target string `json:"target"`
			}
			_ = json.Unmarshal(v, &tg)
			ok := w.jump(o, stack, c, r, k, tg.Target)
			if note != "" && len(o.steps) > 0 {
				o.steps[len(o.steps)-1].Note = note
			}
			return ok
		case "return":
			if len(*stack) == 1 {
				w.policy(*o)
				return false
			}
			*stack = (*stack)[:len(*stack)-1]
			return true
		case "continue":
			return true
		}
	}
	return true
}

// nftNAT compiles a nat statement with a literal address.
func nftNAT(kind string, v json.RawMessage) (*natAction, error) {
	n := &natAction{kind: map[string]string{"dnat": "DNAT", "snat": "SNAT", "masquerade": "MASQUERADE", "redirect": "REDIRECT"}[kind]}
	var st struct {
		Addr json.RawMessage `json:"addr"`
		Port json.RawMessage `json:"port"`
	}
	if string(v) != "null" {
		_ = json.Unmarshal(v, &st)
	}
	if len(st.Addr) > 0 {
		var s string
		if json.Unmarshal(st.Addr, &s) != nil {
			return nil, fmt.Errorf("%s address %s is not a literal", kind, compact(st.Addr))
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s address %q", kind, s)
		}
		n.addr = a
	} else if kind == "dnat" || kind == "snat" {
		return nil, fmt.Errorf("%s without an address", kind)
	}
	if len(st.Port) > 0 {
		p, err := nftNumber(st.Port)
		if err != nil {
			return nil, fmt.Errorf("%s port %s is not a literal", kind, compact(st.Port))
		}
		n.port = uint16(p)
	}
	return n, nil
}

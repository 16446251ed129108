package trace

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/twillnet/twill/netfilter"
)

// nftRuleset is the native nftables rule set compiled for evaluation.
type nftRuleset struct {
	tables []*nftTable
}

type nftTable struct {
	family, name string
	chains       map[string]*nftChain
	sets         map[string]*nftSet
}

type nftChain struct {
	name, hook, typ, policy string
	prio                    int
	// raw rules are compiled on first use (rules), so that loading a rule
	// set of tens of thousands of chains only pays for the chains a trace
	// visits.
	raw   []*netfilter.NftRule
	once  sync.Once
	rules []*nftRuleC
}

// compiled returns the chain's compiled rules.
func (c *nftChain) compiled() []*nftRuleC {
	c.once.Do(func() {
		for _, r := range c.raw {
			rc := &nftRuleC{r: r}
			for _, raw := range r.Expr {
				var m map[string]json.RawMessage
				if err := json.Unmarshal(raw, &m); err != nil || len(m) != 1 {
					m = map[string]json.RawMessage{"?": raw}
				}
				rc.stmts = append(rc.stmts, m)
			}
			rc.text = nftRuleText(rc)
			c.rules = append(c.rules, rc)
		}
	})
	return c.rules
}

type nftRuleC struct {
	r     *netfilter.NftRule
	stmts []map[string]json.RawMessage // each statement: one key -> value
	text  string
}

// nftSet is a named set or map with an exact-key index.
type nftSet struct {
	name  string
	isMap bool
	exact map[string]json.RawMessage // canonical key -> value (null for sets)
	other []nftElem                  // prefixes, ranges: scanned in order
	keys  []string                   // exact keys in order, for numgen
}

type nftElem struct {
	key json.RawMessage
	val json.RawMessage
}

// compileNft parses `nft -j list ruleset` and keeps the tables of family
// fam ("ip" or "ip6") and the inet tables that iptables-nft does not own
// (owned holds "ip filter", ...).
func compileNft(text string, owned map[string]bool, fam string) (*nftRuleset, []string, error) {
	rs, err := netfilter.ParseNftJSON("nft -j list ruleset", []byte(text))
	if err != nil {
		return nil, nil, err
	}
	out := &nftRuleset{}
	var warn []string
	for _, t := range rs.Tables {
		if owned[t.Family+" "+t.Name] {
			continue
		}
		switch t.Family {
		case fam, "inet":
		case "bridge":
			for _, c := range t.Chains {
				if c.Base() && len(c.Rules) > 0 {
					warn = append(warn, fmt.Sprintf("nft table bridge %s: bridge-family chains are not simulated", t.Name))
					break
				}
			}
			continue
		default:
			continue
		}
		ct := &nftTable{family: t.Family, name: t.Name, chains: map[string]*nftChain{}, sets: map[string]*nftSet{}}
		for _, s := range t.Sets {
			ct.sets[s.Name] = compileNftSet(s)
		}
		for _, c := range t.Chains {
			ct.chains[c.Name] = &nftChain{name: c.Name, hook: c.Hook, typ: c.Type, policy: c.Policy, prio: c.Priority, raw: c.Rules}
		}
		out.tables = append(out.tables, ct)
	}
	return out, warn, nil
}

func compileNftSet(s *netfilter.NftSet) *nftSet {
	ns := &nftSet{name: s.Name, isMap: s.Map != "", exact: map[string]json.RawMessage{}}
	for _, raw := range s.Elements {
		var key, val json.RawMessage = raw, nil
		var pair []json.RawMessage
		if ns.isMap && json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
			key, val = pair[0], pair[1]
		}
		// {"elem": {"val": ..., "timeout": ...}} wraps elements with options.
		var wrap struct {
			Elem *struct {
				Val json.RawMessage `json:"val"`
			} `json:"elem"`
		}
		if json.Unmarshal(key, &wrap) == nil && wrap.Elem != nil {
			key = wrap.Elem.Val
		}
		if k, ok := canonLiteral(key); ok {
			if _, dup := ns.exact[k]; !dup {
				ns.keys = append(ns.keys, k)
			}
			ns.exact[k] = val
			continue
		}
		ns.other = append(ns.other, nftElem{key: key, val: val})
	}
	return ns
}

// canonLiteral renders an exact literal key (address, number, string, or a
// concatenation of them) as a canonical string; ok is false for prefixes,
// ranges and anything else.
func canonLiteral(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return canonWord(s), true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if v, err := strconv.ParseUint(string(n), 10, 64); err == nil {
			return strconv.FormatUint(v, 10), true
		}
	}
	var c struct {
		Concat []json.RawMessage `json:"concat"`
	}
	if json.Unmarshal(raw, &c) == nil && c.Concat != nil {
		var parts []string
		for _, p := range c.Concat {
			x, ok := canonLiteral(p)
			if !ok {
				return "", false
			}
			parts = append(parts, x)
		}
		return strings.Join(parts, " . "), true
	}
	return "", false
}

// canonWord normalizes protocol names and addresses.
func canonWord(s string) string {
	switch s {
	case "tcp":
		return "6"
	case "udp":
		return "17"
	case "icmp":
		return "1"
	case "ipv6-icmp", "icmpv6":
		return "58"
	case "sctp":
		return "132"
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

// nftRuleText renders a rule roughly as nft prints it, for output.
func nftRuleText(rc *nftRuleC) string {
	var parts []string
	for _, st := range rc.stmts {
		for k, v := range st {
			switch k {
			case "counter":
				continue
			case "match":
				var m struct {
					Op    string          `json:"op"`
					Left  json.RawMessage `json:"left"`
					Right json.RawMessage `json:"right"`
				}
				_ = json.Unmarshal(v, &m)
				op := m.Op
				if op == "==" || op == "in" {
					op = ""
				} else {
					op += " "
				}
				parts = append(parts, exprText(m.Left)+" "+op+exprText(m.Right))
			case "accept", "drop", "return", "continue", "notrack":
				parts = append(parts, k)
			case "jump", "goto":
				var t struct {
					Target string `json:"target"`
				}
				_ = json.Unmarshal(v, &t)
				parts = append(parts, k+" "+t.Target)
			default:
				parts = append(parts, k+" "+compact(v))
			}
		}
	}
	if rc.r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", rc.r.Comment))
	}
	return strings.Join(parts, " ")
}

func compact(v json.RawMessage) string {
	s := string(v)
	if s == "null" {
		return ""
	}
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func exprText(raw json.RawMessage) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return compact(raw)
	}
	for k, v := range m {
		switch k {
		case "payload":
			var p struct{ Protocol, Field string }
			_ = json.Unmarshal(v, &p)
			return p.Protocol + " " + p.Field
		case "meta", "ct":
			var p struct{ Key string }
			_ = json.Unmarshal(v, &p)
			return k + " " + p.Key
		case "prefix":
			var p struct {
				Addr string
				Len  int
			}
			_ = json.Unmarshal(v, &p)
			return fmt.Sprintf("%s/%d", p.Addr, p.Len)
		}
	}
	return compact(raw)
}

package doctor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/netfilter"
)

// nftVerdict is the outcome of walking one nftables base chain.
type nftVerdict struct {
	action    string // "accept" or "drop"
	chain     string
	rule      *netfilter.NftRule // nil when the policy decided
	uncertain []*netfilter.NftRule
}

// evalNftChain walks a base chain with the probe. Statements this small
// evaluator does not model make the rule uncertain (assumed not to match).
func evalNftChain(t *netfilter.NftTable, c *netfilter.NftChain, p probe) nftVerdict {
	v := nftVerdict{chain: c.Name}
	res := walkNft(t, c, p, &v, 0)
	if res == "" || res == "return" {
		pol := c.Policy
		if pol == "" {
			pol = "accept"
		}
		v.action, v.chain, v.rule = pol, c.Name, nil
		return v
	}
	v.action = res
	return v
}

func nftChain(t *netfilter.NftTable, name string) *netfilter.NftChain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func walkNft(t *netfilter.NftTable, c *netfilter.NftChain, p probe, v *nftVerdict, depth int) string {
	if depth > maxJumpDepth {
		return ""
	}
	for _, r := range c.Rules {
		m := matchNftRule(r, p)
		if m == unknown {
			v.uncertain = append(v.uncertain, r)
			continue
		}
		if m == no {
			continue
		}
		verb, target, _ := strings.Cut(r.Verdict, " ")
		switch verb {
		case "accept", "drop":
			v.chain, v.rule = c.Name, r
			return verb
		case "reject":
			v.chain, v.rule = c.Name, r
			return "drop"
		case "return":
			return "return"
		case "jump", "goto":
			sub := nftChain(t, target)
			if sub == nil {
				v.uncertain = append(v.uncertain, r)
				continue
			}
			if res := walkNft(t, sub, p, v, depth+1); res != "" && res != "return" {
				return res
			}
			if verb == "goto" {
				return "return"
			}
		}
	}
	return ""
}

// matchNftRule evaluates the match statements of a rule.
func matchNftRule(r *netfilter.NftRule, p probe) tri {
	res := yes
	for _, raw := range r.Expr {
		var stmt map[string]json.RawMessage
		if err := json.Unmarshal(raw, &stmt); err != nil {
			return unknown
		}
		for key, body := range stmt {
			switch key {
			case "counter", "accept", "drop", "jump", "goto", "return", "continue", "log", "comment", "reject":
				continue
			case "match":
				t := matchNftMatch(body, p)
				if t == no {
					return no
				}
				if t == unknown {
					res = unknown
				}
			default:
				return unknown // mangle, nat, set updates, limits, ...
			}
		}
	}
	return res
}

type nftMatch struct {
	Op    string          `json:"op"`
	Left  json.RawMessage `json:"left"`
	Right json.RawMessage `json:"right"`
}

func matchNftMatch(body json.RawMessage, p probe) tri {
	var m nftMatch
	if err := json.Unmarshal(body, &m); err != nil {
		return unknown
	}
	var left struct {
		Payload *struct{ Protocol, Field string } `json:"payload"`
		Meta    *struct{ Key string }             `json:"meta"`
		Ct      *struct{ Key string }             `json:"ct"`
	}
	if err := json.Unmarshal(m.Left, &left); err != nil {
		return unknown
	}
	var t tri
	switch {
	case left.Payload != nil && left.Payload.Protocol == "ip" && (left.Payload.Field == "saddr" || left.Payload.Field == "daddr"):
		a := p.src
		if left.Payload.Field == "daddr" {
			a = p.dst
		}
		t = nftAddrIn(m.Right, a)
	case left.Meta != nil && (left.Meta.Key == "iifname" || left.Meta.Key == "oifname"):
		name := p.in
		if left.Meta.Key == "oifname" {
			name = p.out
		}
		t = nftStringIn(m.Right, name)
	case left.Ct != nil && left.Ct.Key == "state":
		t = nftStringIn(m.Right, strings.ToLower(p.ctstate))
	case left.Meta != nil && left.Meta.Key == "l4proto":
		t = nftStringIn(m.Right, p.proto)
	default:
		return unknown
	}
	switch m.Op {
	case "==", "in":
		return t
	case "!=":
		if t == unknown {
			return unknown
		}
		return boolTri(t == no)
	}
	return unknown
}

// nftAddrIn matches an address against a right-hand side: "10.0.0.1",
// {"prefix":{"addr":..,"len":..}}, or {"set":[...]}.
func nftAddrIn(right json.RawMessage, a netip.Addr) tri {
	var s string
	if json.Unmarshal(right, &s) == nil {
		return matchAddr(s, a)
	}
	var obj struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Set []json.RawMessage `json:"set"`
	}
	if json.Unmarshal(right, &obj) != nil {
		return unknown
	}
	if obj.Prefix != nil {
		return matchAddr(fmt.Sprintf("%s/%d", obj.Prefix.Addr, obj.Prefix.Len), a)
	}
	if obj.Set != nil {
		res := no
		for _, el := range obj.Set {
			switch nftAddrIn(el, a) {
			case yes:
				return yes
			case unknown:
				res = unknown
			}
		}
		return res
	}
	return unknown
}

// nftStringIn matches a name against "x", ["a","b"] or {"set":["a","b"]};
// "foo*" wildcards as nft prints them.
func nftStringIn(right json.RawMessage, name string) tri {
	var vals []string
	var s string
	if json.Unmarshal(right, &s) == nil {
		vals = []string{s}
	} else if json.Unmarshal(right, &vals) != nil {
		var obj struct {
			Set []string `json:"set"`
		}
		if json.Unmarshal(right, &obj) != nil || obj.Set == nil {
			return unknown
		}
		vals = obj.Set
	}
	for _, v := range vals {
		if v == name || (strings.HasSuffix(v, "*") && strings.HasPrefix(name, strings.TrimSuffix(v, "*"))) {
			return yes
		}
	}
	return no
}

// iptablesNftTable reports whether an nft table is one that iptables-nft
// manages (and so is already evaluated through the iptables-nft dump).
func (e *env) iptablesNftTable(t *netfilter.NftTable) bool {
	if e.nftIpt == nil || (t.Family != "ip" && t.Family != "ip6") {
		return false
	}
	return e.nftIpt.Table(t.Name) != nil
}

func checkForwardNft(e *env) ([]Finding, string) {
	if e.nft == nil {
		if err, ok := e.parseErr["nft"]; ok {
			return nil, fmt.Sprintf("nft rule set could not be parsed: %v", err)
		}
		if e.snap.Nftables.Err != "" {
			return nil, "nft: " + e.snap.Nftables.Err
		}
		return nil, ""
	}
	probes, ok := e.podProbes()
	if !ok {
		return nil, "pod network unknown (no subnet file and no pod bridge address): pass --cluster-cidr"
	}
	var out []Finding
	for _, t := range e.nft.Tables {
		if (t.Family != "ip" && t.Family != "inet") || e.iptablesNftTable(t) {
			continue
		}
		for _, c := range t.Chains {
			if c.Hook != "forward" || c.Type != "filter" {
				continue
			}
			var evidence []string
			blocked := false
			for _, p := range probes {
				v := evalNftChain(t, c, p)
				if v.action == "accept" {
					continue
				}
				blocked = true
				where := fmt.Sprintf("%s %s chain %s policy drop", t.Family, t.Name, v.chain)
				if v.rule != nil {
					where = fmt.Sprintf("%s %s chain %s rule handle %d (%s)", t.Family, t.Name, v.chain, v.rule.Handle, v.rule.Verdict)
				}
				evidence = append(evidence, fmt.Sprintf("nftables: %s is dropped by %s", p, where))
				for _, u := range v.uncertain {
					evidence = append(evidence, fmt.Sprintf("  not evaluated (assumed not to match): chain %s handle %d", c.Name, u.Handle))
				}
			}
			if !blocked {
				continue
			}
			cidr := e.cluster.String()
			out = append(out, Finding{
				Severity: Error,
				Failure:  "F3",
				Title:    fmt.Sprintf("nftables chain %s %s %s (hook forward) drops pod traffic", t.Family, t.Name, c.Name),
				Evidence: evidence,
				Explanation: "Every base chain on the forward hook must accept a packet for it to pass; an accept in another table does not override this drop. " +
					"New connections between pods on different nodes are dropped here.",
				Fix: fmt.Sprintf("nft insert rule %[1]s %[2]s %[3]s ip saddr %[4]s accept; nft insert rule %[1]s %[2]s %[3]s ip daddr %[4]s accept", t.Family, t.Name, c.Name, cidr),
				Actions: []Action{
					{Kind: ActNft, Family: t.Family, Table: t.Name, Chain: c.Name, Rule: []string{"ip", "daddr", cidr, "accept", "comment", `"twill: accept the pod network"`}},
					{Kind: ActNft, Family: t.Family, Table: t.Name, Chain: c.Name, Rule: []string{"ip", "saddr", cidr, "accept", "comment", `"twill: accept the pod network"`}},
				},
			})
		}
	}
	return out, ""
}

package netfilter

import "encoding/json"

// NftRuleset is the structured form of `nft -j list ruleset`.
type NftRuleset struct {
	Tables []*NftTable `json:"tables"`
}

// NftTable is one nftables table with its chains and sets.
type NftTable struct {
	// Family is "ip", "ip6", "inet", "arp", "bridge" or "netdev".
	Family string      `json:"family"`
	Name   string      `json:"name"`
	Chains []*NftChain `json:"chains"`
	// Sets are the named sets and maps (a map has NftSet.Map set).
	Sets []*NftSet `json:"sets,omitempty"`

	// index maps a chain name to its position in Chains (filled by the
	// parser; Chain verifies every hit).
	index map[string]int
}

// Chain returns the chain with the given name, or nil.
func (t *NftTable) Chain(name string) *NftChain {
	if t == nil {
		return nil
	}
	return chainByName(t.Chains, t.index, name, func(c *NftChain) string { return c.Name })
}

// Set returns the named set or map, or nil.
func (t *NftTable) Set(name string) *NftSet {
	if t == nil {
		return nil
	}
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// NftChain is one chain. Base chains have a Hook; regular chains do not.
type NftChain struct {
	Name string `json:"name"`
	// Type is "filter", "nat" or "route" for base chains.
	Type string `json:"type,omitempty"`
	// Hook is "prerouting", "input", "forward", "output", "postrouting", ...
	Hook string `json:"hook,omitempty"`
	// Priority is the numeric base-chain priority.
	Priority int `json:"priority,omitempty"`
	// Policy is "accept" or "drop" for base chains.
	Policy string     `json:"policy,omitempty"`
	Rules  []*NftRule `json:"rules"`
}

// Base reports whether the chain is attached to a hook.
func (c *NftChain) Base() bool { return c.Hook != "" }

// NftRule is one rule: its handle, comment and expressions kept as raw JSON
// statements, plus the verdict when it ends in one.
type NftRule struct {
	Handle  int    `json:"handle"`
	Comment string `json:"comment,omitempty"`
	// Expr are the rule's statements, verbatim from nft's JSON.
	Expr []json.RawMessage `json:"expr"`
	// Verdict is the final verdict statement ("accept", "drop", "jump X",
	// "goto X", "return", "continue", or "reject" for the reject statement)
	// or "" when the rule has none (e.g. it ends in a vmap, nat or counter).
	Verdict string `json:"verdict,omitempty"`
}

// NftSet is one named set or map.
type NftSet struct {
	Name string `json:"name"`
	// Type is the key type, e.g. "ipv4_addr".
	Type string `json:"type"`
	// Map is the value type for maps ("verdict", "ipv4_addr"), empty for sets.
	Map string `json:"map,omitempty"`
	// Elements are the elements kept as raw JSON.
	Elements []json.RawMessage `json:"elements,omitempty"`
}

// Table returns the table of the given family and name, or nil.
func (r *NftRuleset) Table(family, name string) *NftTable {
	if r == nil {
		return nil
	}
	for _, t := range r.Tables {
		if t.Family == family && t.Name == name {
			return t
		}
	}
	return nil
}

package netfilter

import "fmt"

// Ruleset is the content of one iptables-save dump: its tables in order.
type Ruleset struct {
	Tables []*Table `json:"tables"`
}

// Table returns the table with the given name ("filter", "nat", "mangle",
// "raw", "security"), or nil.
func (r *Ruleset) Table(name string) *Table {
	if r == nil {
		return nil
	}
	for _, t := range r.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Empty reports whether the dump holds no rule and no built-in chain with a
// policy other than ACCEPT, i.e. whether this backend is effectively unused.
func (r *Ruleset) Empty() bool {
	if r == nil {
		return true
	}
	for _, t := range r.Tables {
		for _, c := range t.Chains {
			if len(c.Rules) > 0 || (c.Builtin() && c.Policy != "ACCEPT") || !c.Builtin() {
				return false
			}
		}
	}
	return true
}

// Table is one iptables table with its chains in dump order.
type Table struct {
	Name   string   `json:"name"`
	Chains []*Chain `json:"chains"`

	// index maps a chain name to its position in Chains. The parser fills it
	// so that lookups in tables with tens of thousands of chains stay O(1).
	// Chain uses it only while it has one entry per chain and verifies every
	// hit; after changing Chains by hand, call Reindex.
	index map[string]int
}

// Chain returns the chain with the given name, or nil.
func (t *Table) Chain(name string) *Chain {
	if t == nil {
		return nil
	}
	return chainByName(t.Chains, t.index, name, func(c *Chain) string { return c.Name })
}

// Reindex rebuilds the name index that makes Chain O(1). The parser calls
// it; call it again after building or changing Chains by hand, or after
// decoding a Table from JSON, when the table is large.
func (t *Table) Reindex() {
	t.index = make(map[string]int, len(t.Chains))
	for i, c := range t.Chains {
		if _, dup := t.index[c.Name]; !dup {
			t.index[c.Name] = i
		}
	}
}

// Chain is one chain. Built-in chains have a Policy ("ACCEPT" or "DROP");
// user-defined chains have Policy "-".
type Chain struct {
	Name     string   `json:"name"`
	Policy   string   `json:"policy"`
	Counters Counters `json:"counters"`
	Rules    []*Rule  `json:"rules"`
}

// Builtin reports whether the chain is a built-in chain (it has a policy).
func (c *Chain) Builtin() bool { return c.Policy != "-" && c.Policy != "" }

// Counters are packet and byte counters.
type Counters struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Rule is one `-A CHAIN ...` line.
type Rule struct {
	// Line is the 1-based line number in the dump.
	Line int `json:"line"`
	// Chain is the chain the rule is appended to.
	Chain string `json:"chain"`
	// Num is the 1-based position in its chain (as `iptables -L --line-numbers`).
	Num int `json:"num"`
	// Text is the rule as it appeared, without the leading counters.
	Text string `json:"text"`
	// Counters are the rule's counters when the dump had them (-c).
	Counters *Counters `json:"counters,omitempty"`

	// The generic matches, each possibly negated.
	Protocol    Value `json:"protocol,omitzero"` // -p
	Source      Value `json:"source,omitzero"`   // -s
	Destination Value `json:"destination,omitzero"`
	InIface     Value `json:"inIface,omitzero"`  // -i (a trailing + is a wildcard)
	OutIface    Value `json:"outIface,omitzero"` // -o
	Fragment    Value `json:"fragment,omitzero"` // -f (Value "1" when present)

	// Matches are the -m modules in order, with their options.
	Matches []Match `json:"matches,omitempty"`

	// Target is the -j (or -g) target: ACCEPT, DROP, RETURN, a chain name,
	// DNAT, MASQUERADE, ... Empty when the rule has none (counting rule).
	Target string `json:"target,omitempty"`
	// Goto is true for -g (goto) instead of -j (jump).
	Goto bool `json:"goto,omitempty"`
	// TargetOptions are the target's options (--to-destination, --set-xmark, ...).
	TargetOptions []Option `json:"targetOptions,omitempty"`

	// Extra are options that no match and no target of the rule claims
	// (e.g. a --option before any -m); they are kept verbatim and make the
	// rule Unknown.
	Extra []Option `json:"extra,omitempty"`

	// Unknown is true when a match module, a target or an option is not known
	// to this parser; the rule is kept with its text and the unknown parts.
	Unknown bool `json:"unknown,omitempty"`
}

// String returns the rule text as iptables-save prints it.
func (r *Rule) String() string { return r.Text }

// Match returns the first match of the module (e.g. "mark", "conntrack"), or nil.
func (r *Rule) Match(module string) *Match {
	for i := range r.Matches {
		if r.Matches[i].Module == module {
			return &r.Matches[i]
		}
	}
	return nil
}

// Value is an argument of a generic match, with its negation.
type Value struct {
	Value   string `json:"value"`
	Negated bool   `json:"negated,omitempty"`
}

// Set reports whether the match is present.
func (v Value) Set() bool { return v.Value != "" }

// String renders the value as "!value" when negated.
func (v Value) String() string {
	if v.Negated {
		return "! " + v.Value
	}
	return v.Value
}

// Match is one -m module with its options.
type Match struct {
	Module  string   `json:"module"`
	Options []Option `json:"options,omitempty"`
	// Known is false for modules this parser does not model; their options
	// are still kept verbatim.
	Known bool `json:"known"`
	// Implicit is true for a protocol match (tcp, udp, icmp) that the rule
	// uses through `-p tcp --dport 80` without writing `-m tcp`.
	Implicit bool `json:"implicit,omitempty"`
}

// Option returns the first option with the given name (e.g. "--mark"), or nil.
func (m *Match) Option(name string) *Option {
	for i := range m.Options {
		if m.Options[i].Name == name {
			return &m.Options[i]
		}
	}
	return nil
}

// Option is one --option with its values, possibly negated (`! --mark 0x1`).
//
// Values are the words that follow the option, unsplit: `--ctstate
// RELATED,ESTABLISHED` has the one value "RELATED,ESTABLISHED" and
// `--match-set KUBE-X dst,dst` the two values "KUBE-X" and "dst,dst".
type Option struct {
	Name    string   `json:"name"`
	Values  []string `json:"values,omitempty"`
	Negated bool     `json:"negated,omitempty"`
	// Unknown is true when the option's module or target is known but the
	// option is not (a newer iptables, a typo); its values are kept.
	Unknown bool `json:"unknown,omitempty"`
}

// ParseError is a malformed-input error with its position.
type ParseError struct {
	// Source names the input ("iptables-legacy", a file name).
	Source string
	// Line is the 1-based line number, 0 when not line based.
	Line int
	// Msg says what is wrong.
	Msg string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %s", e.Source, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Source, e.Msg)
}

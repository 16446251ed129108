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
}

// Chain returns the chain with the given name, or nil.
func (t *Table) Chain(name string) *Chain {
	if t == nil {
		return nil
	}
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
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

	// Unknown is true when a match module or target option is not known to
	// this parser; the rule is kept with its text and the unknown parts.
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
type Option struct {
	Name    string   `json:"name"`
	Values  []string `json:"values,omitempty"`
	Negated bool     `json:"negated,omitempty"`
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

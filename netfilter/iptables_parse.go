package netfilter

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseIptablesSave parses the output of iptables-save or ip6tables-save,
// of either backend (legacy or nft) and with or without -c counters, into
// a Ruleset. source names the input in errors ("iptables-nft-save", a file).
//
// Every `-A` rule is split into its generic matches (-p -s -d -i -o -f, with
// `!`), its -m modules with their options, and its target with the target's
// options. Unknown modules, targets and options are kept verbatim and flag
// the rule Unknown; they never fail the dump. Malformed input (a rule before
// any *table, a rule for an undeclared chain, an unterminated quote, a
// missing COMMIT, bad counters, an option without its value, ...) returns a
// *ParseError with the line number.
func ParseIptablesSave(source, text string) (*Ruleset, error) {
	p := &iptParser{source: source}
	return p.parse(text)
}

// iptParser holds the state of one ParseIptablesSave call.
type iptParser struct {
	source string
	lineNo int

	rs    *Ruleset
	table *Table // the open table, nil outside *table ... COMMIT
	tblAt int    // line of the open table's *name

	words []word   // reused per line
	slab  []string // backing store for option values
	rules []Rule   // backing store for rules
	mslab []Match  // backing store for rule matches
	oslab []Option // backing store for match and target options
	specs []optSpec
}

// optionSlots returns an empty option list with room for two options, cut
// from a shared slab (appending more reallocates as usual).
func (p *iptParser) optionSlots() []Option {
	if len(p.oslab)+2 > cap(p.oslab) {
		p.oslab = make([]Option, 0, 2048)
	}
	k := len(p.oslab)
	p.oslab = p.oslab[:k+2]
	return p.oslab[k : k : k+2]
}

func (p *iptParser) errorf(format string, args ...any) error {
	return &ParseError{Source: p.source, Line: p.lineNo, Msg: fmt.Sprintf(format, args...)}
}

func (p *iptParser) parse(text string) (*Ruleset, error) {
	p.rs = &Ruleset{}
	for len(text) > 0 {
		p.lineNo++
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		line = strings.TrimRight(line, " \t\r")
		if err := p.parseLine(line, text); err != nil {
			return nil, err
		}
	}
	if p.table != nil {
		p.lineNo = p.tblAt
		return nil, p.errorf("table %q is not closed: COMMIT missing at the end of the table (is the dump truncated?)", p.table.Name)
	}
	return p.rs, nil
}

// chain returns the open table's chain by name, or nil.
func (p *iptParser) chain(name string) *Chain {
	if i, ok := p.table.index[name]; ok {
		return p.table.Chains[i]
	}
	return nil
}

// parseLine parses one line; rest is the text after it.
func (p *iptParser) parseLine(line, rest string) error {
	trimmed := strings.TrimLeft(line, " \t\r")
	if trimmed == "" || trimmed[0] == '#' {
		return nil
	}
	switch trimmed[0] {
	case '*':
		return p.openTable(trimmed[1:], rest)
	case ':':
		return p.declareChain(trimmed[1:])
	case '[', '-':
		return p.parseRuleLine(trimmed)
	}
	if trimmed == "COMMIT" {
		if p.table == nil {
			return p.errorf("COMMIT without an open table (expected a *table line before it)")
		}
		p.table = nil
		return nil
	}
	return p.errorf("unknown line %q: expected *table, :CHAIN, -A rule, COMMIT or # comment", clip(trimmed))
}

func (p *iptParser) openTable(name, rest string) error {
	if p.table != nil {
		return p.errorf("table %q starts before table %q was closed: COMMIT missing", name, p.table.Name)
	}
	if name == "" || strings.ContainsAny(name, " \t") {
		return p.errorf("bad table line %q: expected *name", "*"+name)
	}
	if p.rs.Table(name) != nil {
		return p.errorf("table %q appears twice", name)
	}
	// Size the chain index for the table's chain lines, so that a table of
	// 30,000 chains does not rehash as it grows.
	body := rest
	if end := strings.Index(rest, "\nCOMMIT"); end >= 0 {
		body = rest[:end]
	}
	n := strings.Count(body, "\n:") + 1
	p.table = &Table{Name: name, index: make(map[string]int, n), Chains: make([]*Chain, 0, n)}
	p.tblAt = p.lineNo
	p.rs.Tables = append(p.rs.Tables, p.table)
	return nil
}

func (p *iptParser) declareChain(rest string) error {
	if p.table == nil {
		return p.errorf("chain line %q before any *table line", clip(":"+rest))
	}
	fields := strings.Fields(rest)
	if len(fields) < 2 || len(fields) > 3 {
		return p.errorf("bad chain line %q: expected :CHAIN POLICY [packets:bytes]", clip(":"+rest))
	}
	c := &Chain{Name: fields[0], Policy: fields[1]}
	switch c.Policy {
	case "ACCEPT", "DROP", "RETURN", "QUEUE", "-":
	default:
		return p.errorf("chain %s: bad policy %q (expected ACCEPT, DROP or - for a user chain)", c.Name, c.Policy)
	}
	if len(fields) == 3 {
		cnt, ok := parseCounters(fields[2])
		if !ok {
			return p.errorf("chain %s: bad counters %q (expected [packets:bytes])", c.Name, fields[2])
		}
		c.Counters = cnt
	}
	if p.chain(c.Name) != nil {
		return p.errorf("chain %s declared twice in table %s", c.Name, p.table.Name)
	}
	p.table.index[c.Name] = len(p.table.Chains)
	p.table.Chains = append(p.table.Chains, c)
	return nil
}

// parseCounters parses "[packets:bytes]".
func parseCounters(s string) (Counters, bool) {
	if len(s) < 5 || s[0] != '[' || s[len(s)-1] != ']' {
		return Counters{}, false
	}
	a, b, ok := strings.Cut(s[1:len(s)-1], ":")
	if !ok {
		return Counters{}, false
	}
	pk, err1 := strconv.ParseUint(a, 10, 64)
	by, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return Counters{}, false
	}
	return Counters{Packets: pk, Bytes: by}, true
}

func (p *iptParser) parseRuleLine(line string) error {
	if p.table == nil {
		return p.errorf("rule before any *table line")
	}
	var counters *Counters
	if line[0] == '[' {
		end := strings.IndexByte(line, ']')
		if end < 0 {
			return p.errorf("bad rule counters in %q (expected [packets:bytes] -A ...)", clip(line))
		}
		c, ok := parseCounters(line[:end+1])
		if !ok {
			return p.errorf("bad rule counters %q (expected [packets:bytes])", line[:end+1])
		}
		counters = &c
		line = strings.TrimLeft(line[end+1:], " \t\r")
	}
	words, err := splitWords(line, p.words[:0])
	p.words = words
	if err != nil {
		return p.errorf("%v", err)
	}
	if len(words) == 0 || words[0].quoted || (words[0].s != "-A" && words[0].s != "--append") {
		return p.errorf("unsupported command in %q: iptables-save dumps only -A (append) rules", clip(line))
	}
	if len(words) < 2 {
		return p.errorf("-A without a chain name")
	}
	chainName := words[1].s
	c := p.chain(chainName)
	if c == nil {
		return p.errorf("rule for chain %q, which is not declared in table %s (add a :%s line)", chainName, p.table.Name, chainName)
	}
	if len(p.rules) == cap(p.rules) {
		p.rules = make([]Rule, 0, 256)
	}
	p.rules = append(p.rules, Rule{})
	r := &p.rules[len(p.rules)-1]
	r.Line = p.lineNo
	r.Chain = chainName
	r.Num = len(c.Rules) + 1
	r.Text = line
	r.Counters = counters
	if err := p.parseRuleWords(r, words[2:]); err != nil {
		return err
	}
	c.Rules = append(c.Rules, r)
	return nil
}

// ruleState tracks where an option belongs while a rule is parsed.
type ruleState struct {
	cur      int     // index of the current -m match, -1 when none
	inTarget bool    // an option after -j/-g belongs to the target first
	tspec    optSpec // the target's options; nil for a chain or unknown target
	tchain   bool    // the target is a user chain of this table
}

func (p *iptParser) parseRuleWords(r *Rule, ws []word) error {
	st := ruleState{cur: -1}
	neg := false
	nm := 0
	for _, w := range ws {
		if w.s == "-m" || w.s == "--match" {
			nm++
		}
	}
	if nm > 0 {
		if len(p.mslab)+nm > cap(p.mslab) {
			p.mslab = make([]Match, 0, 1024+nm)
		}
		k := len(p.mslab)
		p.mslab = p.mslab[:k+nm]
		r.Matches = p.mslab[k : k : k+nm]
	}
	for i := 0; i < len(ws); {
		w := ws[i]
		i++
		if !w.quoted && w.s == "!" {
			if neg {
				return p.errorf("chain %s: two '!' in a row", r.Chain)
			}
			neg = true
			continue
		}
		if w.quoted || len(w.s) < 2 || w.s[0] != '-' {
			return p.errorf("chain %s: unexpected word %q where an option was expected", r.Chain, clip(w.s))
		}
		name := w.s
		// Generic options with exactly one value.
		var gv *Value
		switch name {
		case "-p", "--protocol":
			gv = &r.Protocol
		case "-s", "--source", "--src":
			gv = &r.Source
		case "-d", "--destination", "--dst":
			gv = &r.Destination
		case "-i", "--in-interface":
			gv = &r.InIface
		case "-o", "--out-interface":
			gv = &r.OutIface
		}
		if gv != nil {
			if i >= len(ws) {
				return p.errorf("chain %s: option %s needs a value", r.Chain, name)
			}
			*gv = Value{Value: ws[i].s, Negated: neg}
			i++
			neg = false
			continue
		}
		switch name {
		case "-f", "--fragment":
			r.Fragment = Value{Value: "1", Negated: neg}
			neg = false
			continue
		case "-m", "--match":
			if neg {
				return p.errorf("chain %s: '!' before %s (negate the module's option instead)", r.Chain, name)
			}
			if i >= len(ws) {
				return p.errorf("chain %s: %s needs a module name", r.Chain, name)
			}
			mod := ws[i].s
			i++
			_, known := matchSpecs[mod]
			r.Matches = append(r.Matches, Match{Module: mod, Known: known, Options: p.optionSlots()})
			if !known {
				r.Unknown = true
			}
			st.cur = len(r.Matches) - 1
			st.inTarget = false
			continue
		case "-j", "--jump", "-g", "--goto":
			if neg {
				return p.errorf("chain %s: '!' before %s", r.Chain, name)
			}
			if i >= len(ws) {
				return p.errorf("chain %s: %s needs a target", r.Chain, name)
			}
			if r.Target != "" {
				return p.errorf("chain %s: second target %q (a rule has one -j or -g)", r.Chain, ws[i].s)
			}
			r.Target = ws[i].s
			r.Goto = name == "-g" || name == "--goto"
			r.TargetOptions = p.optionSlots()
			i++
			st.inTarget = true
			st.tspec, st.tchain = nil, false
			if p.chain(r.Target) != nil {
				st.tchain = true
			} else if spec, ok := targetSpecs[r.Target]; ok {
				st.tspec = spec
			} else {
				r.Unknown = true // a target extension this parser does not model
			}
			continue
		case "-c", "--set-counters":
			if i+1 >= len(ws) {
				return p.errorf("chain %s: %s needs packets and bytes", r.Chain, name)
			}
			pk, err1 := strconv.ParseUint(ws[i].s, 10, 64)
			by, err2 := strconv.ParseUint(ws[i+1].s, 10, 64)
			if err1 != nil || err2 != nil {
				return p.errorf("chain %s: bad counters %q %q after %s", r.Chain, ws[i].s, ws[i+1].s, name)
			}
			r.Counters = &Counters{Packets: pk, Bytes: by}
			i += 2
			continue
		case "-A", "--append":
			return p.errorf("chain %s: second %s in one rule", r.Chain, name)
		}
		next, err := p.placeOption(r, &st, name, neg, ws, i)
		if err != nil {
			return err
		}
		i = next
		neg = false
	}
	if neg {
		return p.errorf("chain %s: '!' at the end of the rule negates nothing", r.Chain)
	}
	// Empty lists are nil, as a decoded JSON rule has them.
	if len(r.TargetOptions) == 0 {
		r.TargetOptions = nil
	}
	if len(r.Matches) == 0 {
		r.Matches = nil
	}
	for k := range r.Matches {
		if len(r.Matches[k].Options) == 0 {
			r.Matches[k].Options = nil
		}
	}
	return nil
}

// placeOption attaches the option `name` (values start at ws[i]) to the
// match or target that claims it and returns the index after its values.
// The order follows iptables: the target (after -j), the current module,
// an earlier module of the rule, the protocol's implicit module; what no
// one claims is kept as unknown.
func (p *iptParser) placeOption(r *Rule, st *ruleState, name string, neg bool, ws []word, i int) (int, error) {
	take := func(n int) ([]string, int, error) {
		if n < 0 { // unknown arity: every following value word
			j := i
			for j < len(ws) && isValueWord(ws[j]) {
				j++
			}
			n = j - i
		}
		if i+n > len(ws) {
			return nil, i, p.errorf("chain %s: option %s needs %d value(s), the rule ends first", r.Chain, name, n)
		}
		if n == 0 {
			return nil, i, nil
		}
		if len(p.slab)+n > cap(p.slab) {
			p.slab = make([]string, 0, 1024+n)
		}
		start := len(p.slab)
		for k := 0; k < n; k++ {
			p.slab = append(p.slab, ws[i+k].s)
		}
		return p.slab[start : start+n : start+n], i + n, nil
	}
	add := func(dst *[]Option, n int, unknown bool) (int, error) {
		vals, next, err := take(n)
		if err != nil {
			return i, err
		}
		*dst = append(*dst, Option{Name: name, Values: vals, Negated: neg, Unknown: unknown})
		if unknown {
			r.Unknown = true
		}
		return next, nil
	}

	if st.inTarget && st.tspec != nil {
		if n, ok := st.tspec[name]; ok {
			return add(&r.TargetOptions, n, false)
		}
	}
	if st.inTarget && st.tspec == nil && !st.tchain {
		// Unknown target extension: its options are its own.
		return add(&r.TargetOptions, -1, false)
	}
	if st.cur >= 0 {
		m := &r.Matches[st.cur]
		if !m.Known {
			return add(&m.Options, -1, false)
		}
		if n, ok := matchSpecs[m.Module][name]; ok {
			return add(&m.Options, n, false)
		}
	}
	for k := len(r.Matches) - 1; k >= 0; k-- {
		m := &r.Matches[k]
		if k == st.cur || !m.Known {
			continue
		}
		if n, ok := matchSpecs[m.Module][name]; ok {
			return add(&m.Options, n, false)
		}
	}
	if r.Protocol.Set() && !r.Protocol.Negated {
		if mod, ok := protoMatch[strings.ToLower(r.Protocol.Value)]; ok {
			if n, ok := matchSpecs[mod][name]; ok {
				r.Matches = append(r.Matches, Match{Module: mod, Known: true, Implicit: true})
				m := &r.Matches[len(r.Matches)-1]
				return add(&m.Options, n, false)
			}
		}
	}
	// Nobody claims it: keep it where it appeared.
	switch {
	case st.inTarget:
		return add(&r.TargetOptions, -1, true)
	case st.cur >= 0:
		return add(&r.Matches[st.cur].Options, -1, true)
	default:
		return add(&r.Extra, -1, true)
	}
}

// isValueWord reports whether w can be a value of an option of unknown
// arity: a quoted word, or a word that is neither "!" nor an option.
func isValueWord(w word) bool {
	if w.quoted {
		return true
	}
	if w.s == "!" {
		return false
	}
	if len(w.s) > 1 && w.s[0] == '-' && !(w.s[1] >= '0' && w.s[1] <= '9') {
		return false
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

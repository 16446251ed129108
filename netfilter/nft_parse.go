package netfilter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// ParseNftJSON parses the output of `nft -j list ruleset` (the
// {"nftables": [...]} list of metainfo, table, chain, rule, set and map
// objects) into an NftRuleset. source names the input in errors.
//
// Chains get their type, hook, numeric priority (a number, or a standard
// name such as "dstnat" or "filter + 10" as newer nft prints them) and
// policy; rules their handle, comment, raw statements and final verdict;
// sets and maps their key/value types and raw elements. Other objects
// (flowtables, counters, quotas, ...) are skipped. Invalid JSON, an object
// that is not a one-key object, or a chain, set or rule of a table or chain
// that is not listed gives a *ParseError naming the object's index.
func ParseNftJSON(source string, data []byte) (*NftRuleset, error) {
	var doc struct {
		Nftables *[]nftObject `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, locateNftError(source, data, err)
	}
	if doc.Nftables == nil {
		return nil, &ParseError{Source: source, Msg: `no "nftables" list (expected the output of ` + "`nft -j list ruleset`)"}
	}
	objs := *doc.Nftables
	p := &nftParser{source: source, rs: &NftRuleset{}, tables: map[string]*NftTable{}}

	// nft lists a table before its sets and chains, and those before the
	// rules; do it in that order anyway so a reordered dump still parses.
	for i := range objs {
		o := &objs[i]
		if n := o.kinds(); n > 1 {
			return nil, p.errorf(i, "want an object with one key (table, chain, rule, ...), got %d", n)
		}
		if o.Table != nil {
			if err := p.table(i, o.Table); err != nil {
				return nil, err
			}
		}
	}
	for i := range objs {
		var err error
		switch o := &objs[i]; {
		case o.Chain != nil:
			err = p.chain(i, o.Chain)
		case o.Set != nil:
			err = p.set(i, o.Set)
		case o.Map != nil:
			err = p.set(i, o.Map)
		}
		if err != nil {
			return nil, err
		}
	}
	for i := range objs {
		if o := &objs[i]; o.Rule != nil {
			if err := p.rule(i, o.Rule); err != nil {
				return nil, err
			}
		}
	}
	return p.rs, nil
}

// nftObject is one element of the "nftables" list; other kinds (metainfo,
// flowtable, counter, ...) leave every field nil.
type nftObject struct {
	Table *nftTableJSON `json:"table"`
	Chain *nftChainJSON `json:"chain"`
	Rule  *nftRuleJSON  `json:"rule"`
	Set   *nftSetJSON   `json:"set"`
	Map   *nftSetJSON   `json:"map"`
}

func (o *nftObject) kinds() int {
	n := 0
	for _, set := range []bool{o.Table != nil, o.Chain != nil, o.Rule != nil, o.Set != nil, o.Map != nil} {
		if set {
			n++
		}
	}
	return n
}

type nftTableJSON struct{ Family, Name string }

type nftChainJSON struct {
	Family, Table, Name string
	Type, Hook, Policy  string
	Prio                json.RawMessage
}

type nftSetJSON struct {
	Family, Table, Name string
	Type, Map           json.RawMessage
	Elem                []json.RawMessage
}

type nftRuleJSON struct {
	Family, Table, Chain string
	Handle               int
	Comment              string
	Expr                 []json.RawMessage
}

// locateNftError turns a decoding error into a *ParseError that names the
// offending object when the document itself is well-formed JSON.
func locateNftError(source string, data []byte, err error) error {
	var doc struct {
		Nftables []json.RawMessage `json:"nftables"`
	}
	if e := json.Unmarshal(data, &doc); e != nil {
		return &ParseError{Source: source, Msg: fmt.Sprintf("invalid JSON: %v (expected the output of `nft -j list ruleset`)", e)}
	}
	for i, raw := range doc.Nftables {
		var o nftObject
		if e := json.Unmarshal(raw, &o); e != nil {
			if te, ok := e.(*json.UnmarshalTypeError); ok {
				return &ParseError{Source: source, Msg: fmt.Sprintf("object %d: %s has the wrong type (JSON %s)", i, te.Field, te.Value)}
			}
			return &ParseError{Source: source, Msg: fmt.Sprintf("object %d: %v", i, e)}
		}
	}
	return &ParseError{Source: source, Msg: err.Error()}
}

type nftParser struct {
	source string
	rs     *NftRuleset
	tables map[string]*NftTable // "family name"
}

func (p *nftParser) errorf(idx int, format string, args ...any) error {
	return &ParseError{Source: p.source, Msg: fmt.Sprintf("object %d: ", idx) + fmt.Sprintf(format, args...)}
}

func (p *nftParser) lookupTable(idx int, kind, family, name string) (*NftTable, error) {
	t := p.tables[family+" "+name]
	if t == nil {
		return nil, p.errorf(idx, "%s in table %s %s, which is not listed (no table object for it)", kind, family, name)
	}
	return t, nil
}

func (p *nftParser) table(idx int, j *nftTableJSON) error {
	if j.Family == "" || j.Name == "" {
		return p.errorf(idx, "table without family or name")
	}
	key := j.Family + " " + j.Name
	if p.tables[key] != nil {
		return p.errorf(idx, "table %s listed twice", key)
	}
	t := &NftTable{Family: j.Family, Name: j.Name, Chains: []*NftChain{}}
	p.tables[key] = t
	p.rs.Tables = append(p.rs.Tables, t)
	return nil
}

func (p *nftParser) chain(idx int, j *nftChainJSON) error {
	t, err := p.lookupTable(idx, "chain "+j.Name, j.Family, j.Table)
	if err != nil {
		return err
	}
	if j.Name == "" {
		return p.errorf(idx, "chain without a name in table %s %s", j.Family, j.Table)
	}
	if t.index == nil {
		t.index = map[string]int{}
	}
	if _, dup := t.index[j.Name]; dup {
		return p.errorf(idx, "chain %s listed twice in table %s %s", j.Name, j.Family, j.Table)
	}
	c := &NftChain{Name: j.Name, Type: j.Type, Hook: j.Hook, Policy: j.Policy, Rules: []*NftRule{}}
	if len(j.Prio) > 0 {
		prio, err := nftPriority(j.Family, j.Prio)
		if err != nil {
			return p.errorf(idx, "chain %s: %v", j.Name, err)
		}
		c.Priority = prio
	}
	t.index[c.Name] = len(t.Chains)
	t.Chains = append(t.Chains, c)
	return nil
}

// nftStandardPriority gives the numeric value of nft's priority names;
// the bridge family has its own values.
func nftStandardPriority(family, name string) (int, bool) {
	if family == "bridge" {
		v, ok := map[string]int{"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}[name]
		return v, ok
	}
	v, ok := map[string]int{"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}[name]
	return v, ok
}

// nftPriority reads a chain priority: a JSON number, or a string with a
// number or a standard name and an optional "+ N" / "- N" offset.
func nftPriority(family string, raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] != '"' {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return 0, fmt.Errorf("priority %s is neither a number nor a name", raw)
		}
		v, err := strconv.Atoi(n.String())
		if err != nil {
			return 0, fmt.Errorf("priority %s is not an integer", raw)
		}
		return v, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("priority %s: %v", raw, err)
	}
	f := strings.Fields(s)
	if len(f) != 1 && len(f) != 3 {
		return 0, fmt.Errorf("priority %q: expected a number, a name (filter, dstnat, ...) or \"name + N\"", s)
	}
	base, ok := nftStandardPriority(family, f[0])
	if !ok {
		v, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, fmt.Errorf("priority %q: unknown name %q for family %s", s, f[0], family)
		}
		base = v
	}
	if len(f) == 3 {
		off, err := strconv.Atoi(f[2])
		if err != nil || (f[1] != "+" && f[1] != "-") {
			return 0, fmt.Errorf("priority %q: bad offset", s)
		}
		if f[1] == "-" {
			off = -off
		}
		base += off
	}
	return base, nil
}

// nftKeyType renders a set's "type"/"map" field: a string, or a list of
// strings for concatenations, joined as nft prints them ("a . b").
func nftKeyType(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", fmt.Errorf("type %s: want a string or a list of strings", raw)
	}
	return strings.Join(list, " . "), nil
}

func (p *nftParser) set(idx int, j *nftSetJSON) error {
	t, err := p.lookupTable(idx, "set "+j.Name, j.Family, j.Table)
	if err != nil {
		return err
	}
	s := &NftSet{Name: j.Name, Elements: j.Elem}
	if s.Type, err = nftKeyType(j.Type); err != nil {
		return p.errorf(idx, "set %s: %v", j.Name, err)
	}
	if s.Map, err = nftKeyType(j.Map); err != nil {
		return p.errorf(idx, "map %s: %v", j.Name, err)
	}
	t.Sets = append(t.Sets, s)
	return nil
}

func (p *nftParser) rule(idx int, j *nftRuleJSON) error {
	t, err := p.lookupTable(idx, "rule", j.Family, j.Table)
	if err != nil {
		return err
	}
	c := t.Chain(j.Chain)
	if c == nil {
		return p.errorf(idx, "rule (handle %d) in chain %q, which is not listed in table %s %s", j.Handle, j.Chain, j.Family, j.Table)
	}
	r := &NftRule{Handle: j.Handle, Comment: j.Comment, Expr: j.Expr}
	if r.Expr == nil {
		r.Expr = []json.RawMessage{}
	}
	r.Verdict, err = nftVerdict(r.Expr)
	if err != nil {
		return p.errorf(idx, "rule (handle %d) in chain %s: %v", j.Handle, j.Chain, err)
	}
	c.Rules = append(c.Rules, r)
	return nil
}

// nftVerdict returns the rule's last verdict statement as "accept",
// "drop", "continue", "return", "jump X", "goto X" or "reject", or "".
func nftVerdict(expr []json.RawMessage) (string, error) {
	for i := len(expr) - 1; i >= 0; i-- {
		key, val, err := stmtKey(expr[i])
		if err != nil {
			return "", fmt.Errorf("statement %d: %v", i, err)
		}
		switch key {
		case "accept", "drop", "continue", "return", "reject":
			return key, nil
		case "jump", "goto":
			var tgt struct{ Target string }
			if err := json.Unmarshal(val, &tgt); err != nil || tgt.Target == "" {
				return "", fmt.Errorf("statement %d: %s without a target chain", i, key)
			}
			return key + " " + tgt.Target, nil
		}
	}
	return "", nil
}

// stmtKey returns the key and value of a one-key statement object
// ({"accept": null}, {"jump": {...}}) without decoding the value. A key with
// escapes goes through encoding/json; a non-object statement has no key.
func stmtKey(st json.RawMessage) (string, json.RawMessage, error) {
	b := bytes.TrimSpace(st)
	if len(b) < 2 || b[0] != '{' {
		return "", nil, nil
	}
	rest := bytes.TrimLeft(b[1:], " \t\r\n")
	if len(rest) > 0 && rest[0] == '"' {
		if end := bytes.IndexByte(rest[1:], '"'); end >= 0 && bytes.IndexByte(rest[1:1+end], '\\') < 0 {
			key := string(rest[1 : 1+end])
			after := bytes.TrimLeft(rest[2+end:], " \t\r\n")
			if len(after) > 0 && after[0] == ':' {
				val := bytes.TrimSpace(after[1:])
				val = bytes.TrimSuffix(val, []byte("}"))
				return key, val, nil
			}
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return "", nil, err
	}
	for k, v := range m {
		if len(m) == 1 {
			return k, v, nil
		}
	}
	return "", nil, nil
}

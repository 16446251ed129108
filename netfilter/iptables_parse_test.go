package netfilter

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustParse(t *testing.T, name string) *Ruleset {
	t.Helper()
	rs, err := ParseIptablesSave(name, readTestdata(t, name))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	checkInvariants(t, rs)
	return rs
}

// checkInvariants asserts what every successful parse guarantees: each
// rule's chain is in its table, Num runs 1..n, Line points at the rule.
func checkInvariants(t testing.TB, rs *Ruleset) {
	t.Helper()
	for _, tb := range rs.Tables {
		for _, c := range tb.Chains {
			if tb.Chain(c.Name) != c {
				t.Fatalf("table %s: Chain(%q) does not find the chain", tb.Name, c.Name)
			}
			for i, r := range c.Rules {
				if r.Chain != c.Name || r.Num != i+1 {
					t.Fatalf("table %s chain %s: rule %d has Chain %q Num %d", tb.Name, c.Name, i+1, r.Chain, r.Num)
				}
			}
		}
	}
}

func rule(t *testing.T, tb *Table, chain string, num int) *Rule {
	t.Helper()
	c := tb.Chain(chain)
	if c == nil || num > len(c.Rules) {
		t.Fatalf("table %s: no rule %d in chain %s", tb.Name, num, chain)
	}
	return c.Rules[num-1]
}

func TestParseDockerKubeFlannelNode(t *testing.T) {
	for _, name := range []string{"docker-kube-flannel.legacy-save.txt", "docker-kube-flannel.nft-save.txt", "docker-kube-flannel.nft-save-c.txt"} {
		t.Run(name, func(t *testing.T) {
			text := readTestdata(t, name)
			rs := mustParse(t, name)
			lines := strings.Split(text, "\n")
			var names []string
			for _, tb := range rs.Tables {
				names = append(names, tb.Name)
				for _, c := range tb.Chains {
					for _, r := range c.Rules {
						if r.Unknown {
							t.Errorf("rule not fully understood: %s", r.Text)
						}
						if !strings.HasSuffix(lines[r.Line-1], r.Text) || !strings.HasPrefix(r.Text, "-A "+c.Name+" ") {
							t.Errorf("rule Line %d / Text %q do not match the dump line %q", r.Line, r.Text, lines[r.Line-1])
						}
					}
				}
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"filter", "mangle", "nat"}) {
				t.Fatalf("tables %v, want filter, mangle, nat", names)
			}
			filter, nat := rs.Table("filter"), rs.Table("nat")
			if fwd := filter.Chain("FORWARD"); fwd.Policy != "DROP" || !fwd.Builtin() {
				t.Errorf("FORWARD policy %q, want DROP (Docker)", fwd.Policy)
			}
			if c := filter.Chain("DOCKER-USER"); c == nil || c.Builtin() || len(c.Rules) != 1 || c.Rules[0].Target != "RETURN" {
				t.Errorf("DOCKER-USER: want a user chain with one RETURN")
			}
			iso := rule(t, filter, "DOCKER-ISOLATION-STAGE-1", 1)
			if iso.InIface != (Value{Value: "docker0"}) || iso.OutIface != (Value{Value: "docker0", Negated: true}) || iso.Target != "DOCKER-ISOLATION-STAGE-2" {
				t.Errorf("isolation rule parsed as %+v", iso)
			}

			fw := rule(t, filter, "KUBE-FORWARD", 2)
			if m := fw.Match("mark"); m == nil || !m.Known || m.Option("--mark").Values[0] != "0x4000/0x4000" || m.Option("--mark").Negated {
				t.Errorf("KUBE-FORWARD mark rule: %+v", fw.Matches)
			}
			if c := fw.Match("comment").Option("--comment").Values[0]; c != "kubernetes forwarding rules" || fw.Target != "ACCEPT" {
				t.Errorf("KUBE-FORWARD rule 2: comment %q target %q", c, fw.Target)
			}
			ct := rule(t, filter, "KUBE-FORWARD", 3).Match("conntrack").Option("--ctstate")
			if ct.Values[0] != "RELATED,ESTABLISHED" {
				t.Errorf("ctstate %v", ct.Values)
			}
			local := rule(t, filter, "KUBE-FIREWALL", 1)
			if !local.Source.Negated || local.Source.Value != "127.0.0.0/8" || local.Destination.Value != "127.0.0.0/8" ||
				!local.Match("conntrack").Option("--ctstate").Negated || local.Target != "DROP" {
				t.Errorf("KUBE-FIREWALL localnet rule: %+v", local)
			}

			post := rule(t, nat, "KUBE-POSTROUTING", 1)
			if o := post.Match("mark").Option("--mark"); !o.Negated || o.Values[0] != "0x4000/0x4000" || post.Target != "RETURN" {
				t.Errorf("KUBE-POSTROUTING rule 1: %s", post.Text)
			}
			if x := rule(t, nat, "KUBE-POSTROUTING", 2); x.Target != "MARK" || x.TargetOptions[0].Name != "--set-xmark" || x.TargetOptions[0].Values[0] != "0x4000/0x0" {
				t.Errorf("KUBE-POSTROUTING rule 2: %s", x.Text)
			}
			if m := rule(t, nat, "KUBE-POSTROUTING", 3); m.Target != "MASQUERADE" || len(m.TargetOptions) != 1 || m.TargetOptions[0].Name != "--random-fully" || m.TargetOptions[0].Values != nil {
				t.Errorf("KUBE-POSTROUTING rule 3: %s -> %+v", m.Text, m.TargetOptions)
			}

			// The web service: 3 endpoints with statistic random, then DNAT.
			var web *Rule
			for _, r := range nat.Chain("KUBE-SERVICES").Rules {
				if r.Destination.Value == "10.96.12.34/32" {
					web = r
				}
			}
			if web == nil || web.Protocol.Value != "tcp" || web.Match("tcp").Option("--dport").Values[0] != "80" || !strings.HasPrefix(web.Target, "KUBE-SVC-") {
				t.Fatalf("web service rule not found or malformed")
			}
			svc := nat.Chain(web.Target)
			if svc == nil || len(svc.Rules) != 4 {
				t.Fatalf("chain %s: want 4 rules", web.Target)
			}
			st := svc.Rules[1].Match("statistic")
			if st.Option("--mode").Values[0] != "random" || st.Option("--probability").Values[0] != "0.33333333349" {
				t.Errorf("statistic: %+v", st.Options)
			}
			sep := nat.Chain(svc.Rules[3].Target)
			dnat := sep.Rules[1]
			if dnat.Target != "DNAT" || dnat.TargetOptions[0].Name != "--to-destination" || dnat.TargetOptions[0].Values[0] != "10.244.2.7:8080" {
				t.Errorf("DNAT rule: %s", dnat.Text)
			}
			if ma := rule(t, nat, "FLANNEL-POSTRTG", 1); ma.Matches[0].Module != "mark" || ma.Matches[1].Module != "comment" {
				t.Errorf("flannel rule matches in wrong order: %+v", ma.Matches)
			}
			in := rule(t, filter, "INPUT", 1)
			if in.Protocol.Value != "udp" || in.Match("udp").Option("--dport").Values[0] != "8472" || in.Match("udp").Implicit {
				t.Errorf("vxlan INPUT rule: %+v", in)
			}
			rec := filter.Chain("INPUT").Rules[5].Match("recent")
			if rec == nil || rec.Option("--set") == nil || rec.Option("--name").Values[0] != "ssh" || rec.Option("--rsource") == nil {
				t.Errorf("recent match: %+v", rec)
			}
			log := filter.Chain("INPUT").Rules[6]
			if log.Target != "LOG" || log.TargetOptions[0].Values[0] != "bcast: " || log.TargetOptions[1].Values[0] != "6" {
				t.Errorf("LOG rule: %+v", log.TargetOptions)
			}
		})
	}
}

func TestBackendsParseToTheSameRules(t *testing.T) {
	legacy := mustParse(t, "docker-kube-flannel.legacy-save.txt")
	nft := mustParse(t, "docker-kube-flannel.nft-save.txt")
	for _, lt := range legacy.Tables {
		nt := nft.Table(lt.Name)
		for _, lc := range lt.Chains {
			nc := nt.Chain(lc.Name)
			if nc == nil || len(nc.Rules) != len(lc.Rules) || nc.Policy != lc.Policy {
				t.Fatalf("%s %s differs between backends", lt.Name, lc.Name)
			}
			for i := range lc.Rules {
				if lc.Rules[i].Text != nc.Rules[i].Text {
					t.Errorf("%s %s rule %d: %q vs %q", lt.Name, lc.Name, i+1, lc.Rules[i].Text, nc.Rules[i].Text)
				}
			}
		}
	}
}

func TestParseCounters(t *testing.T) {
	rs := mustParse(t, "docker-kube-flannel.nft-save-c.txt")
	filter := rs.Table("filter")
	if c := filter.Chain("INPUT").Counters; c.Packets != 12 || c.Bytes != 580 {
		t.Errorf("INPUT policy counters %+v, want 12 packets 580 bytes", c)
	}
	r := rule(t, filter, "INPUT", 2)
	if r.Counters == nil || *r.Counters != (Counters{Packets: 6, Bytes: 230}) {
		t.Errorf("rule counters %+v, want [6:230]", r.Counters)
	}
	if strings.HasPrefix(r.Text, "[") {
		t.Errorf("Text keeps the counters: %q", r.Text)
	}
	rs2, err := ParseIptablesSave("t", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -c 5 700 -j ACCEPT\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	if c := rs2.Tables[0].Chains[0].Rules[0].Counters; c == nil || c.Packets != 5 || c.Bytes != 700 {
		t.Errorf("-c counters: %+v", c)
	}
}

// TestF4CorruptedRulesAreVisible: the rules that iptables 1.8.7 restores
// from 1.8.8's native encodings lose their mark match. The model must show
// exactly that (a DROP with the comment and no mark), so doctor can flag it.
func TestF4CorruptedRulesAreVisible(t *testing.T) {
	rs := mustParse(t, "f4-corrupted.nft-save.txt")
	filter, nat := rs.Table("filter"), rs.Table("nat")
	drop := rule(t, filter, "KUBE-FIREWALL", 2)
	if drop.Target != "DROP" || drop.Match("mark") != nil || len(drop.Matches) != 1 ||
		drop.Match("comment").Option("--comment").Values[0] != "kubernetes firewall for dropping marked packets" {
		t.Errorf("corrupted KUBE-FIREWALL rule parsed as %+v", drop)
	}
	acc := rule(t, filter, "KUBE-FORWARD", 2)
	if acc.Target != "ACCEPT" || acc.Match("mark") != nil || acc.Source.Set() || acc.InIface.Set() {
		t.Errorf("corrupted KUBE-FORWARD rule should accept everything: %s", acc.Text)
	}
	ret := rule(t, nat, "KUBE-POSTROUTING", 1)
	if ret.Target != "RETURN" || len(ret.Matches) != 0 {
		t.Errorf("corrupted KUBE-POSTROUTING rule should return everything: %s", ret.Text)
	}
	for _, r := range nat.Chain("KUBE-SERVICES").Rules {
		if strings.Contains(r.Text, "dns-tcp") && r.Match("tcp") != nil {
			t.Errorf("the dns-tcp rule lost its port in this dump, but the parser found one: %s", r.Text)
		}
	}
	// The intact twin has the mark.
	good := mustParse(t, "docker-kube-flannel.nft-save.txt")
	if rule(t, good.Table("filter"), "KUBE-FIREWALL", 2).Match("mark") == nil {
		t.Error("intact dump: KUBE-FIREWALL rule 2 should carry the mark match")
	}
}

func TestUnknownModuleIsKeptAndFlagged(t *testing.T) {
	rs := mustParse(t, "unknown-module.legacy-save.txt")
	base := mustParse(t, "docker-kube-flannel.legacy-save.txt")
	in := rs.Table("filter").Chain("INPUT")
	bpf := in.Rules[5]
	if !bpf.Unknown || bpf.Target != "DROP" || bpf.InIface.Value != "eth0" {
		t.Fatalf("bpf rule: %+v", bpf)
	}
	m := bpf.Match("bpf")
	if m == nil || m.Known || len(m.Options) != 1 || m.Options[0].Name != "--bytecode" ||
		!slices.Equal(m.Options[0].Values, []string{"4,48 0 0 9,21 0 1 6,6 0 0 1,6 0 0 0"}) {
		t.Errorf("bpf match not kept verbatim: %+v", m)
	}
	if c := bpf.Match("comment"); c == nil || !c.Known || c.Option("--comment").Values[0] != "drop tcp via bpf" {
		t.Errorf("comment after the unknown module: %+v", bpf.Matches)
	}
	foo := in.Rules[6]
	fm := foo.Match("foo")
	if !foo.Unknown || fm == nil || fm.Known || len(fm.Options) != 2 ||
		!slices.Equal(fm.Options[0].Values, []string{"1"}) || fm.Options[1].Name != "--baz" || !fm.Options[1].Negated || fm.Options[1].Values != nil {
		t.Errorf("foo match: %+v", fm)
	}
	if tm := foo.Match("tcp"); tm == nil || tm.Option("--dport").Values[0] != "9" {
		t.Errorf("tcp match after foo: %+v", foo.Matches)
	}
	if foo.Target != "CLASSIFY" || len(foo.TargetOptions) != 1 || foo.TargetOptions[0].Values[0] != "1:10" {
		t.Errorf("unknown target CLASSIFY: %q %+v", foo.Target, foo.TargetOptions)
	}
	// The rest of the dump is intact.
	var n, nb, unknown int
	for _, tb := range rs.Tables {
		for _, c := range tb.Chains {
			n += len(c.Rules)
			for _, r := range c.Rules {
				if r.Unknown {
					unknown++
				}
			}
		}
	}
	for _, tb := range base.Tables {
		for _, c := range tb.Chains {
			nb += len(c.Rules)
		}
	}
	if n != nb+2 || unknown != 2 {
		t.Errorf("%d rules (%d unknown), want %d with 2 unknown", n, unknown, nb+2)
	}
	if r := in.Rules[7]; r.Text != "-A INPUT -p tcp -m multiport --dports 22,10250 -m conntrack --ctstate NEW -m recent --set --name ssh --mask 255.255.255.255 --rsource" || r.Num != 8 {
		t.Errorf("rule after the unknown ones: %d %s", r.Num, r.Text)
	}
}

func parseOne(t *testing.T, ruleLine string) *Rule {
	t.Helper()
	text := "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n" + ruleLine + "\nCOMMIT\n"
	rs, err := ParseIptablesSave("t", text)
	if err != nil {
		t.Fatalf("%s: %v", ruleLine, err)
	}
	c := rs.Table("filter").Chain("INPUT")
	if len(c.Rules) != 1 {
		t.Fatalf("%s: %d rules", ruleLine, len(c.Rules))
	}
	return c.Rules[0]
}

func TestRuleSyntax(t *testing.T) {
	r := parseOne(t, `-A INPUT -m comment --comment "say \"hi\" to C:\\dir and it\'s fine" -j ACCEPT`)
	if got := r.Match("comment").Option("--comment").Values[0]; got != `say "hi" to C:\dir and it's fine` {
		t.Errorf("escaped comment: %q", got)
	}
	r = parseOne(t, `-A INPUT -m comment --comment "" -m comment --comment -x -j ACCEPT`)
	if r.Matches[0].Options[0].Values[0] != "" || r.Matches[1].Options[0].Values[0] != "-x" {
		t.Errorf("empty and dash comments: %+v", r.Matches)
	}
	r = parseOne(t, `-A INPUT -p tcp --dport 80 -j ACCEPT`)
	if m := r.Match("tcp"); m == nil || !m.Implicit || !m.Known || m.Option("--dport").Values[0] != "80" || r.Unknown {
		t.Errorf("implicit tcp match: %+v", r.Matches)
	}
	r = parseOne(t, `-A INPUT -p udp -m comment --comment dns ! --dport 53 --sport 1000:2000 -j ACCEPT`)
	if m := r.Match("udp"); m == nil || len(r.Matches) != 2 || !m.Option("--dport").Negated || m.Option("--sport").Values[0] != "1000:2000" {
		t.Errorf("implicit udp after comment: %+v", r.Matches)
	}
	r = parseOne(t, `-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m tcp ! --syn -j DROP`)
	if o := r.Matches[0].Option("--tcp-flags"); !slices.Equal(o.Values, []string{"FIN,SYN,RST,ACK", "SYN"}) || !r.Matches[1].Options[0].Negated {
		t.Errorf("tcp flags: %+v", r.Matches)
	}
	r = parseOne(t, `-A INPUT ! -f -m set ! --match-set KUBE-X dst,dst -g X`)
	if r.Fragment != (Value{Value: "1", Negated: true}) || !r.Goto || r.Target != "X" ||
		!slices.Equal(r.Match("set").Option("--match-set").Values, []string{"KUBE-X", "dst,dst"}) {
		t.Errorf("fragment/set/goto: %+v", r)
	}
	r = parseOne(t, `-A INPUT -m physdev --physdev-is-bridged -m mac --mac-source 02:00:00:00:00:01 -m pkttype --pkt-type unicast -m nfacct --nfacct-name x -m limit --limit 5/sec --limit-burst 10 -m connmark --mark 0x1/0x1 -m state --state NEW -m addrtype --src-type LOCAL --limit-iface-in -j ACCEPT`)
	if r.Unknown || len(r.Matches) != 8 || r.Match("addrtype").Option("--limit-iface-in") == nil {
		t.Errorf("known modules flagged or lost: %+v", r)
	}
	r = parseOne(t, `-A INPUT --weird 1 2 -s 10.0.0.0/8 -j ACCEPT`)
	if !r.Unknown || len(r.Extra) != 1 || !slices.Equal(r.Extra[0].Values, []string{"1", "2"}) || r.Source.Value != "10.0.0.0/8" {
		t.Errorf("extra option: %+v", r)
	}
	r = parseOne(t, `-A INPUT -m mark --mark 0x1 --newopt 2 -j DNAT --to-destination 1.2.3.4:80 --newer`)
	if !r.Unknown || !r.Matches[0].Options[1].Unknown || r.TargetOptions[0].Unknown || !r.TargetOptions[1].Unknown {
		t.Errorf("unknown options of known module/target: %+v %+v", r.Matches, r.TargetOptions)
	}
	r = parseOne(t, `-A INPUT -j X`)
	if r.Target != "X" || r.Unknown {
		t.Errorf("jump to user chain: %+v", r)
	}
	r = parseOne(t, `-A INPUT -j X --foo`)
	if !r.Unknown || len(r.TargetOptions) != 1 || !r.TargetOptions[0].Unknown {
		t.Errorf("option after a chain jump: %+v", r)
	}
	r = parseOne(t, `[3:4] -A INPUT`)
	if r.Target != "" || r.Counters.Packets != 3 || r.Text != "-A INPUT" {
		t.Errorf("counting rule: %+v", r)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, text string
		line       int
		msg        string
	}{
		{"rule before table", "-A INPUT -j ACCEPT\n", 1, "before any *table"},
		{"chain before table", ":INPUT ACCEPT [0:0]\n", 1, "before any *table"},
		{"undeclared chain", "*filter\n:INPUT ACCEPT [0:0]\n-A FOO -j ACCEPT\nCOMMIT\n", 3, `chain "FOO"`},
		{"unbalanced quote", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"oops -j ACCEPT\nCOMMIT\n", 3, "quote"},
		{"missing commit at end", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", 1, "COMMIT missing"},
		{"missing commit before next", "*filter\n:INPUT ACCEPT [0:0]\n*nat\nCOMMIT\n", 3, "COMMIT missing"},
		{"unknown line", "*filter\nfoo bar\nCOMMIT\n", 2, "unknown line"},
		{"bad chain counters", "*filter\n:INPUT ACCEPT [x:0]\nCOMMIT\n", 2, "counters"},
		{"bad rule counters", "*filter\n:INPUT ACCEPT [0:0]\n[1:] -A INPUT\nCOMMIT\n", 3, "counters"},
		{"value missing", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DNAT --to-destination\nCOMMIT\n", 3, "--to-destination needs"},
		{"generic value missing", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s\nCOMMIT\n", 3, "-s needs"},
		{"module missing", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m\nCOMMIT\n", 3, "module name"},
		{"match-set one value", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m set --match-set X\nCOMMIT\n", 3, "needs 2"},
		{"dangling bang", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT !\nCOMMIT\n", 3, "negates nothing"},
		{"bad policy", "*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n", 2, "policy"},
		{"duplicate chain", "*filter\n:X - [0:0]\n:X - [0:0]\nCOMMIT\n", 3, "twice"},
		{"insert command", "*filter\n:INPUT ACCEPT [0:0]\n-I INPUT -j ACCEPT\nCOMMIT\n", 3, "only -A"},
		{"stray value", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT extra\nCOMMIT\n", 3, "unexpected word"},
		{"two targets", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT -j DROP\nCOMMIT\n", 3, "second target"},
		{"commit without table", "COMMIT\n", 1, "without an open table"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseIptablesSave("dump.txt", c.text)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("want *ParseError, got %v", err)
			}
			if pe.Line != c.line || pe.Source != "dump.txt" || !strings.Contains(pe.Msg, c.msg) {
				t.Errorf("got %v (line %d), want line %d containing %q", err, pe.Line, c.line, c.msg)
			}
		})
	}
}

func TestEmptyInputAndComments(t *testing.T) {
	rs, err := ParseIptablesSave("t", "# nothing here\n\n")
	if err != nil || len(rs.Tables) != 0 || !rs.Empty() {
		t.Fatalf("empty dump: %v %+v", err, rs)
	}
	rs, err = ParseIptablesSave("t", "*filter\r\n:INPUT ACCEPT [0:0]\r\n-A INPUT -j ACCEPT\r\nCOMMIT")
	if err != nil || rs.Table("filter").Chain("INPUT").Rules[0].Text != "-A INPUT -j ACCEPT" {
		t.Fatalf("CRLF and no final newline: %v", err)
	}
}

// TestJSONRoundTrip: a parsed dump survives encoding/json unchanged, which
// is how snapshots carry it.
func TestJSONRoundTrip(t *testing.T) {
	rs := mustParse(t, "unknown-module.legacy-save.txt")
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	var back Ruleset
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, tb := range back.Tables {
		tb.Reindex()
	}
	for _, tb := range rs.Tables {
		bt := back.Table(tb.Name)
		for _, c := range tb.Chains {
			if !reflect.DeepEqual(c, bt.Chain(c.Name)) {
				t.Fatalf("%s %s changed in a JSON round trip", tb.Name, c.Name)
			}
		}
	}
}

func TestChainLookupAfterHandEdits(t *testing.T) {
	rs := mustParse(t, "docker-kube-flannel.legacy-save.txt")
	filter := rs.Table("filter")
	if filter.Chain("NO-SUCH-CHAIN") != nil || filter.Chain("DOCKER-USER") == nil {
		t.Fatal("indexed lookup")
	}
	extra := &Chain{Name: "TWILL-FORWARD", Policy: "-"}
	filter.Chains = append(filter.Chains, extra)
	if filter.Chain("TWILL-FORWARD") != extra || filter.Chain("DOCKER-USER") == nil {
		t.Error("a chain appended by hand must be found")
	}
	filter.Chains = filter.Chains[1:] // drop INPUT, shifting every position
	filter.Reindex()
	if filter.Chain("INPUT") != nil || filter.Chain("TWILL-FORWARD") != extra || filter.Chain("FORWARD").Name != "FORWARD" {
		t.Error("lookups after Reindex")
	}
}

package netfilter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addSeeds(f *testing.F, glob string) {
	files, err := filepath.Glob(filepath.Join("testdata", glob))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files %s: %v", glob, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseIptablesSave: never panic; on success every rule sits in a
// chain of its table, under its own name, numbered 1..n.
func FuzzParseIptablesSave(f *testing.F) {
	addSeeds(f, "*save*.txt")
	for _, s := range []string{
		"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 80 -m comment --comment \"a \\\"b\\\"\" -j ACCEPT\nCOMMIT\n",
		"*nat\n:X - [0:0]\n[1:2] -A X ! -s 1.2.3.4 -m foo --x ! --y 1 -j FOO --z\nCOMMIT\n",
		"*filter\n:X - [0:0]\n-A X -m set --match-set a b -g X\nCOMMIT\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseIptablesSave("fuzz", string(data))
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error is %T, want *ParseError: %v", err, err)
			}
			return
		}
		checkInvariants(t, rs)
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					if !strings.HasPrefix(r.Text, "-A") && !strings.HasPrefix(r.Text, "--append") {
						t.Fatalf("rule text %q does not start with -A", r.Text)
					}
					for _, m := range r.Matches {
						if m.Known != KnownMatch(m.Module) {
							t.Fatalf("module %s: Known %v", m.Module, m.Known)
						}
						if !m.Known && !r.Unknown {
							t.Fatalf("unknown module %s but rule not flagged", m.Module)
						}
					}
				}
			}
		}
	})
}

// FuzzParseNftJSON: never panic; on success chains are found by name in
// their table and verdicts have one of the documented forms.
func FuzzParseNftJSON(f *testing.F) {
	addSeeds(f, "*.json")
	f.Add([]byte(`{"nftables":[{"table":{"family":"ip","name":"t"}},{"chain":{"family":"ip","table":"t","name":"c","prio":"filter + 1"}},{"rule":{"family":"ip","table":"t","chain":"c","expr":[{"jump":{"target":"c"}}]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ParseNftJSON("fuzz", data)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error is %T, want *ParseError: %v", err, err)
			}
			return
		}
		for _, tb := range rs.Tables {
			if rs.Table(tb.Family, tb.Name) != tb {
				t.Fatalf("table %s %s not found by name", tb.Family, tb.Name)
			}
			for _, c := range tb.Chains {
				if tb.Chain(c.Name) != c {
					t.Fatalf("chain %s not found by name", c.Name)
				}
				for _, r := range c.Rules {
					v, arg, _ := strings.Cut(r.Verdict, " ")
					switch v {
					case "", "accept", "drop", "continue", "return", "reject":
						if arg != "" {
							t.Fatalf("verdict %q", r.Verdict)
						}
					case "jump", "goto":
						if arg == "" {
							t.Fatalf("verdict %q without target", r.Verdict)
						}
					default:
						t.Fatalf("verdict %q", r.Verdict)
					}
				}
			}
		}
	})
}

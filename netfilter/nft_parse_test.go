package netfilter

import (
	"errors"
	"strings"
	"testing"
)

// checkNative asserts what testdata/native.nft must look like once loaded
// by nft and listed back as JSON.
func checkNative(t *testing.T, rs *NftRuleset) {
	t.Helper()
	if len(rs.Tables) != 3 {
		t.Fatalf("%d tables, want inet twill, ip6 empty, bridge br", len(rs.Tables))
	}
	tw := rs.Table("inet", "twill")
	if tw == nil || rs.Table("ip6", "empty") == nil || rs.Table("bridge", "br") == nil {
		t.Fatalf("tables missing: %+v", rs.Tables)
	}
	wantChains := map[string]struct {
		typ, hook, policy string
		prio              int
	}{
		"svc-dns": {},
		"forward": {"filter", "forward", "drop", 10},
		"pre":     {"nat", "prerouting", "accept", -100},
		"post":    {"nat", "postrouting", "accept", 100},
		"early":   {"filter", "prerouting", "accept", -300},
		"out":     {"route", "output", "accept", -150},
		"in":      {"filter", "input", "accept", 45},
	}
	if len(tw.Chains) != len(wantChains) {
		t.Errorf("%d chains in inet twill, want %d", len(tw.Chains), len(wantChains))
	}
	for name, w := range wantChains {
		c := tw.Chain(name)
		if c == nil {
			t.Errorf("chain %s missing", name)
			continue
		}
		if c.Type != w.typ || c.Hook != w.hook || c.Policy != w.policy || c.Priority != w.prio || c.Base() != (w.hook != "") {
			t.Errorf("chain %s: type %q hook %q policy %q prio %d, want %+v", name, c.Type, c.Hook, c.Policy, c.Priority, w)
		}
	}
	if c := rs.Table("bridge", "br").Chain("brfwd"); c == nil || c.Priority != -200 {
		t.Errorf("bridge filter priority: %+v", c)
	}
	fwd := tw.Chain("forward")
	var verdicts []string
	for _, r := range fwd.Rules {
		verdicts = append(verdicts, r.Verdict)
		if r.Handle <= 0 || len(r.Expr) == 0 {
			t.Errorf("rule without handle or statements: %+v", r)
		}
	}
	if got, want := strings.Join(verdicts, ","), "accept,accept,drop,,jump svc-dns,goto svc-dns"; got != want {
		t.Errorf("forward verdicts %q, want %q", got, want)
	}
	if fwd.Rules[1].Comment != "pod traffic out" || fwd.Rules[2].Comment != "vxlan from strangers" {
		t.Errorf("comments: %q %q", fwd.Rules[1].Comment, fwd.Rules[2].Comment)
	}
	for chain, want := range map[string]string{"post": "return", "out": "continue", "in": "reject", "pre": "", "early": "", "svc-dns": "accept"} {
		c := tw.Chain(chain)
		if v := c.Rules[len(c.Rules)-1].Verdict; v != want {
			t.Errorf("chain %s last verdict %q, want %q", chain, v, want)
		}
	}
	if tw.Chain("svc-dns").Rules[0].Comment != "dns" {
		t.Errorf("svc-dns comment missing")
	}

	peers := tw.Set("vxlan-peers")
	if peers == nil || peers.Type != "ipv4_addr" || peers.Map != "" || len(peers.Elements) != 2 || string(peers.Elements[0]) != `"192.168.77.11"` {
		t.Errorf("set vxlan-peers: %+v", peers)
	}
	if s := tw.Set("pod-nets"); s == nil || len(s.Elements) != 1 || !strings.Contains(string(s.Elements[0]), `"10.244.0.0"`) {
		t.Errorf("interval set pod-nets: %+v", s)
	}
	svc := tw.Set("services")
	if svc == nil || svc.Type != "ipv4_addr . inet_service" || svc.Map != "verdict" || len(svc.Elements) != 1 || !strings.Contains(string(svc.Elements[0]), "svc-dns") {
		t.Errorf("verdict map services: %+v", svc)
	}
	if m := tw.Set("snat-to"); m == nil || m.Map != "ipv4_addr" || len(m.Elements) != 1 {
		t.Errorf("data map snat-to: %+v", m)
	}
}

func TestParseNftNative(t *testing.T) {
	rs, err := ParseNftJSON("native.nft.json", []byte(readTestdata(t, "native.nft.json")))
	if err != nil {
		t.Fatal(err)
	}
	checkNative(t, rs)
}

// TestParseNftOfIptablesNft parses what nft shows of the rules iptables-nft
// wrote for the Docker + kube-proxy + Flannel node: the ip filter/nat/mangle
// tables with xt compat statements. Counts must match the iptables view.
func TestParseNftOfIptablesNft(t *testing.T) {
	rs, err := ParseNftJSON("iptables-nft.json", []byte(readTestdata(t, "docker-kube-flannel.iptables-nft.json")))
	if err != nil {
		t.Fatal(err)
	}
	ipt := mustParse(t, "docker-kube-flannel.nft-save.txt")
	for _, it := range ipt.Tables {
		nt := rs.Table("ip", it.Name)
		if nt == nil {
			t.Fatalf("nft view lacks table ip %s", it.Name)
		}
		for _, ic := range it.Chains {
			nc := nt.Chain(ic.Name)
			if nc == nil && ic.Builtin() && len(ic.Rules) == 0 {
				continue // iptables-nft creates base chains only when first used
			}
			if nc == nil || len(nc.Rules) != len(ic.Rules) {
				t.Fatalf("ip %s chain %s: nft and iptables views differ", it.Name, ic.Name)
			}
			if ic.Builtin() != nc.Base() || (ic.Builtin() && strings.ToLower(ic.Policy) != nc.Policy) {
				t.Errorf("ip %s chain %s: policy %q vs %q", it.Name, ic.Name, ic.Policy, nc.Policy)
			}
			for i, r := range ic.Rules {
				v := nc.Rules[i].Verdict
				switch {
				case r.Target == "ACCEPT" && v != "accept", r.Target == "DROP" && v != "drop", r.Target == "RETURN" && v != "return":
					t.Errorf("%s rule %d: target %s, nft verdict %q", ic.Name, i+1, r.Target, v)
				case it.Chain(r.Target) != nil && v != "jump "+r.Target:
					t.Errorf("%s rule %d: jump %s, nft verdict %q", ic.Name, i+1, r.Target, v)
				}
			}
		}
	}
	if c := rs.Table("ip", "filter").Chain("FORWARD"); c.Policy != "drop" || c.Hook != "forward" || c.Priority != 0 {
		t.Errorf("ip filter FORWARD: %+v", c)
	}
	if c := rs.Table("ip", "nat").Chain("PREROUTING"); c.Priority != -100 || c.Type != "nat" {
		t.Errorf("ip nat PREROUTING: %+v", c)
	}
}

func TestNftPriorityNames(t *testing.T) {
	for _, c := range []struct {
		family, raw string
		want        int
	}{
		{"ip", `0`, 0}, {"ip", `-150`, -150}, {"inet", `"filter"`, 0}, {"ip", `"dstnat"`, -100},
		{"ip", `"srcnat"`, 100}, {"ip", `"raw"`, -300}, {"ip", `"mangle"`, -150}, {"ip", `"security"`, 50},
		{"inet", `"filter + 10"`, 10}, {"ip", `"dstnat - 5"`, -105}, {"ip", `"-42"`, -42},
		{"bridge", `"filter"`, -200}, {"bridge", `"dstnat"`, -300}, {"bridge", `"srcnat"`, 300}, {"bridge", `"out"`, 100},
	} {
		got, err := nftPriority(c.family, []byte(c.raw))
		if err != nil || got != c.want {
			t.Errorf("nftPriority(%s, %s) = %d, %v; want %d", c.family, c.raw, got, err, c.want)
		}
	}
	for _, bad := range []string{`"nosuch"`, `"filter * 2"`, `1.5`, `{}`, `"filter +"`} {
		if _, err := nftPriority("ip", []byte(bad)); err == nil {
			t.Errorf("nftPriority(%s): want an error", bad)
		}
	}
	rs, err := ParseNftJSON("t", []byte(`{"nftables":[{"table":{"family":"ip","name":"t"}},{"chain":{"family":"ip","table":"t","name":"c","type":"nat","hook":"prerouting","prio":"dstnat","policy":"accept"}}]}`))
	if err != nil || rs.Table("ip", "t").Chain("c").Priority != -100 {
		t.Errorf("named priority in a dump: %v", err)
	}
}

func TestParseNftErrors(t *testing.T) {
	tbl := `{"table":{"family":"ip","name":"t"}}`
	for _, c := range []struct{ name, in, msg string }{
		{"not json", `{"nftables": [`, "invalid JSON"},
		{"not nft", `{"foo": 1}`, `no "nftables" list`},
		{"two keys", `{"nftables":[{"table":{"family":"ip","name":"t"},"chain":{}}]}`, "object 0: want an object with one key"},
		{"rule unknown table", `{"nftables":[` + tbl + `,{"rule":{"family":"ip","table":"x","chain":"c","handle":1,"expr":[]}}]}`, "object 1: rule in table ip x"},
		{"rule unknown chain", `{"nftables":[` + tbl + `,{"rule":{"family":"ip","table":"t","chain":"c","handle":3,"expr":[]}}]}`, `object 1: rule (handle 3) in chain "c"`},
		{"chain unknown table", `{"nftables":[{"chain":{"family":"ip","table":"t","name":"c"}}]}`, "object 0: chain c in table ip t"},
		{"set unknown table", `{"nftables":[{"set":{"family":"ip","table":"t","name":"s","type":"ipv4_addr"}}]}`, "object 0: set s"},
		{"bad prio", `{"nftables":[` + tbl + `,{"chain":{"family":"ip","table":"t","name":"c","prio":"sideways"}}]}`, "object 1: chain c: priority"},
		{"bad rule", `{"nftables":[` + tbl + `,{"rule":"x"}]}`, "object 1: rule has the wrong type (JSON string)"},
		{"jump without target", `{"nftables":[` + tbl + `,{"chain":{"family":"ip","table":"t","name":"c"}},{"rule":{"family":"ip","table":"t","chain":"c","expr":[{"jump":{}}]}}]}`, "jump without a target"},
		{"duplicate table", `{"nftables":[` + tbl + `,` + tbl + `]}`, "object 1: table ip t listed twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseNftJSON("ruleset.json", []byte(c.in))
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Source != "ruleset.json" || !strings.Contains(pe.Msg, c.msg) {
				t.Errorf("got %v, want a *ParseError containing %q", err, c.msg)
			}
		})
	}
	rs, err := ParseNftJSON("t", []byte(`{"nftables":[{"metainfo":{"version":"1.0.6"}},{"flowtable":{"name":"f"}}]}`))
	if err != nil || len(rs.Tables) != 0 {
		t.Errorf("metainfo and flowtable only: %v", err)
	}
}

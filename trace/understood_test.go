package trace

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// addNftRules adds table inet twunit with a forward chain (priority -5,
// policy accept) holding one rule per expression list to s's nft ruleset.
func addNftRules(t *testing.T, s *nodestate.Snapshot, rules ...string) {
	t.Helper()
	var doc struct {
		Nftables []json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(s.Nftables.JSON), &doc); err != nil {
		t.Fatal(err)
	}
	add := func(o string) { doc.Nftables = append(doc.Nftables, json.RawMessage(o)) }
	add(`{"table": {"family": "inet", "name": "twunit", "handle": 90}}`)
	add(`{"chain": {"family": "inet", "table": "twunit", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": -5, "policy": "accept"}}`)
	for i, r := range rules {
		add(`{"rule": {"family": "inet", "table": "twunit", "chain": "fwd", "handle": ` + string(rune('2'+i)) + `, "expr": ` + r + `}}`)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	s.Nftables.JSON = string(b)
}

// prependForward puts iptables-nft rules at the head of filter/FORWARD.
func prependForward(s *nodestate.Snapshot, rules ...string) {
	s.Iptables.NFT.Save = strings.Replace(s.Iptables.NFT.Save, "-A FORWARD ", strings.Join(rules, "\n")+"\n-A FORWARD ", 1)
}

// A condition the simulator does not understand makes a rule uncertain
// only when every understood condition matches: a protocol or port that
// excludes the packet decides first (iptables).
func TestUnknownMatchAfterFailingConditionIptables(t *testing.T) {
	w := worldWith(t, func(s *nodestate.Snapshot) {
		prependForward(s,
			"-A FORWARD -p udp -m mac --mac-source 02:00:00:00:00:01 -j DROP",
			"-A FORWARD -m mac --mac-source 02:00:00:00:00:01 -p tcp -m tcp --dport 9999 -j DROP")
	}, "healthy-node1", "healthy-node2")
	r := traceOf(t, w, "node1-a", "10.244.2.10:8080")
	if s := only(t, r); s.Kind != Established || r.Uncertain {
		t.Fatalf("udp and port 9999 exclude the packet, want established and certain, got %+v uncertain=%v\n%s", s, r.Uncertain, text(r))
	}
	w = worldWith(t, func(s *nodestate.Snapshot) {
		prependForward(s, "-A FORWARD -p tcp -m mac --mac-source 02:00:00:00:00:01 -m tcp --dport 8080 -j DROP")
	}, "healthy-node1", "healthy-node2")
	r = traceOf(t, w, "node1-a", "10.244.2.10:8080")
	if !r.Uncertain || !strings.Contains(strings.Join(r.Paths[0].Uncertain, "\n"), "every other condition of the rule matches") {
		t.Fatalf("everything else matches: want uncertain, got\n%s", text(r))
	}
}

// The same for nft expressions: meta cgroup is not evaluated, but a port
// that does not match decides.
func TestUnknownMatchAfterFailingConditionNft(t *testing.T) {
	cgroup := `{"match": {"op": "==", "left": {"meta": {"key": "cgroup"}}, "right": 5}}`
	port := func(p string) string {
		return `{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": ` + p + `}}`
	}
	w := worldWith(t, func(s *nodestate.Snapshot) {
		addNftRules(t, s, `[`+cgroup+`, `+port("9999")+`, {"drop": null}]`)
	}, "healthy-node1", "healthy-node2")
	r := traceOf(t, w, "node1-a", "10.244.2.10:8080")
	if s := only(t, r); s.Kind != Established || r.Uncertain {
		t.Fatalf("port 9999 excludes the packet, want established and certain, got %+v\n%s", s, text(r))
	}
	w = worldWith(t, func(s *nodestate.Snapshot) {
		addNftRules(t, s, `[`+cgroup+`, `+port("8080")+`, {"drop": null}]`)
	}, "healthy-node1", "healthy-node2")
	r = traceOf(t, w, "node1-a", "10.244.2.10:8080")
	if !r.Uncertain || !strings.Contains(strings.Join(r.Paths[0].Uncertain, "\n"), "meta cgroup is not evaluated, and every other match") {
		t.Fatalf("everything else matches: want uncertain naming meta cgroup, got\n%s", text(r))
	}
}

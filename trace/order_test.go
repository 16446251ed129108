package trace

import (
	"bytes"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// legacyForward is an iptables-legacy dump whose filter/FORWARD holds rules.
func legacyForward(rules ...string) string {
	return "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + strings.Join(rules, "\n") + "\nCOMMIT\n"
}

// The seed-1795787287179843408 case of test/difftrace: an iptables-nft
// REJECT and an iptables-legacy DROP in FORWARD at the same priority. The
// kernel runs them in registration order, which no snapshot records: the
// trace reports both outcomes, each with the order it assumes.
func TestEqualPriorityOrderGivesEveryOutcome(t *testing.T) {
	w := worldWith(t, func(s *nodestate.Snapshot) {
		prependForward(s, "-A FORWARD -d 10.244.2.10/32 -p tcp -m tcp --dport 8080 -j REJECT --reject-with icmp-port-unreachable")
		s.Iptables.Legacy.Save = legacyForward("-A FORWARD -s 10.244.1.10/32 -j DROP")
	}, "healthy-node1", "healthy-node2")
	r := traceOf(t, w, "node1-a", "10.244.2.10:8080")
	sums := r.Summaries()
	kinds := map[string]string{}
	for _, s := range sums {
		if len(s.Assumes) != 1 {
			t.Fatalf("each outcome should name the one order it assumes, got %+v\n%s", s, text(r))
		}
		kinds[s.Kind] = s.Assumes[0]
	}
	if len(sums) != 2 || !strings.Contains(kinds[Dropped], "iptables-legacy filter/FORWARD first") || !strings.Contains(kinds[Refused], "iptables-nft filter/FORWARD first") {
		t.Fatalf("want dropped (legacy first) and refused (nft first), got %v\n%s", kinds, text(r))
	}
	if len(r.OrderUnknown) != 1 || !strings.Contains(r.OrderUnknown[0], "registered") || !strings.Contains(r.OrderUnknown[0], "priority 0") {
		t.Errorf("the reason is missing: %q", r.OrderUnknown)
	}
	out := text(r)
	for _, want := range []string{"depends on the order", "if node2 FORWARD (priority 0): iptables-legacy filter/FORWARD first", "if node2 FORWARD (priority 0): iptables-nft filter/FORWARD first", "assuming node2 FORWARD"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"orderUnknown"`, `"assumes"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
}

// Chains at equal priority that all let the packet through unchanged
// cannot be told apart by their order: one answer, no assumption.
func TestEqualPriorityOrderIrrelevant(t *testing.T) {
	w := worldWith(t, func(s *nodestate.Snapshot) {
		s.Iptables.Legacy.Save = legacyForward("-A FORWARD -s 10.244.1.10/32 -j ACCEPT")
	}, "healthy-node1", "healthy-node2")
	r := traceOf(t, w, "node1-a", "10.244.2.10:8080")
	if s := only(t, r); s.Kind != Established || len(s.Assumes) != 0 || len(r.OrderUnknown) != 0 {
		t.Fatalf("got %+v (order unknown %q)\n%s", s, r.OrderUnknown, text(r))
	}
	// Both drop with the same rule text but different tables: the order
	// decides which rule is named, so both are reported.
	w = worldWith(t, func(s *nodestate.Snapshot) {
		prependForward(s, "-A FORWARD -s 10.244.1.10/32 -j DROP")
		s.Iptables.Legacy.Save = legacyForward("-A FORWARD -s 10.244.1.10/32 -j DROP")
	}, "healthy-node1", "healthy-node2")
	r = traceOf(t, w, "node1-a", "10.244.2.10:8080")
	for _, s := range r.Summaries() {
		if s.Kind != Dropped {
			t.Errorf("every order drops, got %+v", s)
		}
	}
	if len(r.Summaries()) != 2 {
		t.Errorf("want the drop of each order named:\n%s", text(r))
	}
}

// The order chosen on the way out holds for the reply through the same
// hook: a path never mixes two orders of one group.
func TestEqualPriorityOrderConsistentPerPath(t *testing.T) {
	// Legacy marks packets to and from node2-a; nft drops marked packets
	// to it and unmarked packets from it. Legacy first: the SYN is
	// dropped. nft first: the SYN passes and, in the same order, the
	// reply is dropped. Mixing orders would wrongly give "established".
	w := worldWith(t, func(s *nodestate.Snapshot) {
		prependForward(s, "-A FORWARD -d 10.244.2.10/32 -m mark --mark 0x1 -j DROP", "-A FORWARD -s 10.244.2.10/32 -m mark --mark 0x0 -j DROP")
		s.Iptables.Legacy.Save = legacyForward("-A FORWARD -d 10.244.2.10/32 -j MARK --set-xmark 0x1/0xffffffff", "-A FORWARD -s 10.244.2.10/32 -j MARK --set-xmark 0x1/0xffffffff")
	}, "healthy-node1", "healthy-node2")
	r := traceOf(t, w, "node1-a", "10.244.2.10:8080")
	got := map[string]bool{}
	for _, s := range r.Summaries() {
		if len(s.Assumes) != 1 {
			t.Errorf("want one assumed order per outcome: %+v", s)
		}
		got[s.Kind] = true
	}
	if !got[Dropped] || !got[ReplyDropped] || got[Established] || len(got) != 2 {
		t.Errorf("want dropped (legacy first) and reply-dropped (nft first), got %v\n%s", got, text(r))
	}
}

func TestPermutations(t *testing.T) {
	p, all := permutations(3, 24)
	if len(p) != 6 || !all || p[0][0] != 0 || p[0][1] != 1 || p[0][2] != 2 {
		t.Fatalf("3 items: %v %v", p, all)
	}
	p, all = permutations(5, 24)
	if len(p) != 24 || all {
		t.Fatalf("5 items capped at 24: %d %v", len(p), all)
	}
}

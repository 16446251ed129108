package trace

import "testing"

// diagnose reads structured causes, not the words of Where: a path whose
// message says nothing recognisable is still diagnosed from its Cause and
// the netfilter step that decided.
func TestDiagnoseFromCausesNotMessages(t *testing.T) {
	w := world(t, "healthy-node1", "healthy-node2")
	res := &Result{}
	for _, c := range []struct {
		path  Path
		check string
	}{
		{Path{Outcome: Outcome{Kind: Unreachable, Cause: CauseForwardingOff, Where: "reworded"}}, "TW001"},
		{Path{Outcome: Outcome{Kind: Dropped, Cause: CauseNoNeighbour, Where: "reworded"}}, "TW041"},
		{Path{Outcome: Outcome{Kind: Dropped, Cause: CauseStaleNeighbour, Where: "reworded"}}, "TW041"},
		{Path{Outcome: Outcome{Kind: Dropped, Cause: CauseNoFDB, Where: "reworded"}}, "TW042"},
		{Path{Outcome: Outcome{Kind: Local, Cause: CauseLocalRoute, Where: "reworded"}}, "TW032"},
		{Path{Outcome: Outcome{Kind: Dropped, Cause: CauseNetfilter, Where: "reworded"},
			decided: &nfDecision{verdict: "drop", step: Step{Hook: "FORWARD", Backend: "iptables-nft", Table: "filter", Chain: "FORWARD", Action: "reworded"}}}, "TW010"},
		{Path{Outcome: Outcome{Kind: Dropped, Cause: CauseNetfilter, Where: "reworded"},
			decided: &nfDecision{verdict: "drop", step: Step{Hook: "FORWARD", Backend: "nft", Table: "inet x", Chain: "fwd", Rule: 3, Action: "reworded"}}}, "TW011"},
	} {
		f := diagnose(w, res, &c.path)
		if f == nil || f.Check != c.check {
			t.Errorf("%s: want %s, got %+v", c.path.Outcome.Cause, c.check, f)
		}
	}
	// The same words without a cause diagnose nothing.
	if f := diagnose(w, res, &Path{Outcome: Outcome{Kind: Dropped, Where: "node1: no FDB entry for 02:00:00:00:00:01 on twill.1"}}); f != nil {
		t.Errorf("a message alone must not be diagnosed: %+v", f)
	}
}

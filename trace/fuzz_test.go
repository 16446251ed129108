package trace

import (
	"net/netip"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// fuzzTrace builds a one-node world from the healthy node1 snapshot with the
// given rule text and traces a Service call and a cross-node call. Whatever
// the rules, a trace must end (no panic, no endless loop) and every path
// must have a known outcome.
func fuzzTrace(t *testing.T, base *nodestate.Snapshot, set func(s *nodestate.Snapshot)) {
	s := *base
	set(&s)
	w, err := NewWorld([]*nodestate.Snapshot{&s}, labPods()[:2])
	if err != nil {
		return // malformed input is an error, which is fine
	}
	for _, to := range []string{"10.96.1.1:80", "10.244.1.11:8080", "10.244.2.10:8080"} {
		ap := netip.MustParseAddrPort(to)
		res, err := w.Trace(Request{From: "node1-a", To: ap.Addr(), Port: ap.Port()})
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, p := range res.Paths {
			switch p.Outcome.Kind {
			case Established, Dropped, Refused, Unreachable, Reset, ReplyDropped, Lost, Local:
			default:
				t.Fatalf("unknown outcome %q", p.Outcome.Kind)
			}
			total += p.Prob
		}
		if len(res.Paths) == 0 || total > 1+1e-6 {
			t.Fatalf("%d paths with total probability %f", len(res.Paths), total)
		}
	}
}

func FuzzIptablesRules(f *testing.F) {
	base, err := nodestate.LoadFile("testdata/healthy-node1.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base.Iptables.NFT.Save)
	f.Add("*filter\n:FORWARD DROP [0:0]\n:X - [0:0]\n-A FORWARD -j X\n-A X -g X\nCOMMIT\n")
	f.Add("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m statistic --mode nth --every 3 -j DNAT --to-destination 10.244.1.11:8080-8090\nCOMMIT\n")
	f.Add("*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-mark 0x1/0xff\n-A PREROUTING -m mark --mark 0x1 -j CONNMARK --save-mark\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, text string) {
		fuzzTrace(t, base, func(s *nodestate.Snapshot) { s.Iptables.NFT.Save = text })
	})
}

func FuzzNftRules(f *testing.F) {
	base, err := nodestate.LoadFile("testdata/f3nft-node2.json")
	if err != nil {
		f.Fatal(err)
	}
	node1, err := nodestate.LoadFile("testdata/healthy-node1.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base.Nftables.JSON)
	f.Add(`{"nftables":[{"table":{"family":"ip","name":"t"}},{"chain":{"family":"ip","table":"t","name":"c","type":"filter","hook":"forward","prio":0,"policy":"drop"}},{"rule":{"family":"ip","table":"t","chain":"c","expr":[{"vmap":{"key":{"numgen":{"mode":"random","mod":3}},"data":{"set":[[0,{"jump":{"target":"c"}}],[1,{"accept":null}]]}}}]}}]}`)
	f.Fuzz(func(t *testing.T, text string) {
		fuzzTrace(t, node1, func(s *nodestate.Snapshot) { s.Nftables.JSON = text })
	})
}

package nodestate

import "testing"

func TestWords(t *testing.T) {
	cases := []struct{ got, want string }{
		{RouteTypeWord(1), "unicast"},
		{RouteTypeWord(2), "local"},
		{RouteTypeWord(6), "blackhole"},
		{RouteTypeWord(77), "77"},
		{ScopeWord(0), "global"},
		{ScopeWord(253), "link"},
		{ScopeWord(254), "host"},
		{ProtocolWord(2), "kernel"},
		{ProtocolWord(3), "boot"},
		{ProtocolWord(4), "static"},
		{RuleActionWord(1), "lookup"},
		{RuleActionWord(8), "prohibit"},
		{NeighStateWord(0x80), "permanent"},
		{NeighStateWord(0x02 | 0x40), "reachable|noarp"},
		{NeighStateWord(0), "none"},
		{NeighStateWord(0x100), "0x100"},
		{FDBStateWord(0x80), "permanent"},
		{FDBStateWord(0x40), "static"},
		{FDBStateWord(0x02), "reachable"},
		{RPFilterKey("twill.1"), "net.ipv4.conf.twill.1.rp_filter"},
	}
	for i, c := range cases {
		if c.got != c.want {
			t.Errorf("case %d: got %q, want %q", i, c.got, c.want)
		}
	}
}

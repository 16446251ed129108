package nodestate

import (
	"strconv"
	"strings"
)

// The kernel reports route types, scopes, protocols, rule actions and
// neighbour states as numbers. The model keeps the words `ip` and `bridge`
// print, so that a snapshot reads like the commands users know. Unknown
// numbers are kept as decimal strings.

var routeTypeWords = map[int]string{
	1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
	6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat", 11: "xresolve",
}

// RouteTypeWord returns the `ip route` word for a kernel route type (RTN_*).
func RouteTypeWord(t int) string { return word(routeTypeWords, t) }

var scopeWords = map[int]string{0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}

// ScopeWord returns the `ip` word for a route or address scope (RT_SCOPE_*).
func ScopeWord(s int) string { return word(scopeWords, s) }

var protocolWords = map[int]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
	10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
	17: "mrouted", 18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis",
	188: "ospf", 189: "rip", 192: "eigrp",
}

// ProtocolWord returns the `ip route` word for a route protocol (RTPROT_*).
func ProtocolWord(p int) string { return word(protocolWords, p) }

var ruleActionWords = map[int]string{
	1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit",
}

// RuleActionWord returns the `ip rule` word for a rule action (FR_ACT_*).
func RuleActionWord(a int) string { return word(ruleActionWords, a) }

// Neighbour states (NUD_*), in the order `ip neigh` prints them.
var nudBits = []struct {
	bit  int
	word string
}{
	{0x01, "incomplete"}, {0x02, "reachable"}, {0x04, "stale"}, {0x08, "delay"},
	{0x10, "probe"}, {0x20, "failed"}, {0x40, "noarp"}, {0x80, "permanent"},
}

// NeighStateWord returns a neighbour's NUD state bits as `ip neigh` words
// joined by "|" ("permanent", "reachable|noarp"); 0 is "none".
func NeighStateWord(state int) string {
	var parts []string
	rest := state
	for _, b := range nudBits {
		if state&b.bit != 0 {
			parts = append(parts, b.word)
			rest &^= b.bit
		}
	}
	if rest != 0 {
		parts = append(parts, "0x"+strconv.FormatInt(int64(rest), 16))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// FDBStateWord returns the `bridge fdb` word for an FDB entry's state:
// "permanent", "static" (NUD_NOARP), "stale" or "reachable".
func FDBStateWord(state int) string {
	switch {
	case state&0x80 != 0:
		return "permanent"
	case state&0x40 != 0:
		return "static"
	case state&0x04 != 0:
		return "stale"
	}
	return "reachable"
}

func word(m map[int]string, n int) string {
	if w, ok := m[n]; ok {
		return w
	}
	return strconv.Itoa(n)
}

// RPFilterKey returns the Sysctls key of a link's rp_filter setting. The
// link name is kept as is, dots included ("net.ipv4.conf.twill.1.rp_filter"),
// where sysctl(8) would print "twill/1".
func RPFilterKey(link string) string { return "net.ipv4.conf." + link + ".rp_filter" }

// RouteLocalnetKey is the Sysctls key of a link's route_localnet
// ("all" and "default" are captured too): whether the kernel routes
// packets from or to 127.0.0.0/8 off the loopback device, which
// kube-proxy's localhost NodePorts need.
func RouteLocalnetKey(link string) string { return "net.ipv4.conf." + link + ".route_localnet" }

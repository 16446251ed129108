package netconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Defaults applied by Parse when a key is absent.
const (
	// DefaultSubnetLen is the node subnet length when SubnetLen is absent and
	// Network is /22 or larger (as Flannel).
	DefaultSubnetLen = 24
	// DefaultVNI is the vxlan network identifier when Backend.VNI is absent.
	DefaultVNI = 1
	// DefaultPort is the vxlan UDP port when Backend.Port is absent (Flannel's
	// and the Linux kernel's default).
	DefaultPort = 8472
	// MaxSubnetLen is the longest node subnet: a /30 still holds the bridge
	// gateway and one pod.
	MaxSubnetLen = 30
	// DefaultIPv6SubnetLen is the IPv6 node subnet length when IPv6SubnetLen
	// is absent and IPv6Network is /62 or larger (as Flannel).
	DefaultIPv6SubnetLen = 64
	// MaxIPv6SubnetLen is the longest IPv6 node subnet (as Flannel: a /126
	// still holds the bridge gateway and a pod).
	MaxIPv6SubnetLen = 126
	// MinIPv6MTU is the smallest link MTU IPv6 allows (RFC 8200).
	MinIPv6MTU = 1280
	// MaxVNI is the largest vxlan network identifier (24 bits).
	MaxVNI = 1<<24 - 1
)

// Keys twill reads. Keys are matched case-insensitively, as encoding/json and
// therefore Flannel do, so every file Flannel accepts is read the same way.
var (
	topKeys = []string{"Network", "SubnetLen", "SubnetMin", "SubnetMax", "Backend",
		"EnableIPv4", "EnableIPv6", "IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax"}
	backendKeys = []string{"Type", "VNI", "Port", "DirectRouting", "MTU"}
)

// Keys Flannel defines that twill accepts without acting on them. Any other
// unknown key is an error: a misspelled key must not silently fall back to a
// default.
var (
	// Top level: EnableNFTables is Flannel's firewall switch, twill detects
	// the node's firewall backend itself (DESIGN.md).
	flannelTopKeys = []string{"EnableNFTables"}
	// Backend: vxlan's GBP and Learning are accepted only when false, and
	// MacPrefix only when it is Flannel's default (FlannelMacPrefix): twill
	// derives its VTEP MACs itself and honours none of them.
	flannelBackendKeys = []string{"GBP", "Learning", "MacPrefix"}
	// Backend types Flannel knows and twill does not implement, each with
	// the reason and what to use instead.
	flannelTypes = map[string]string{
		"udp":         "Flannel's deprecated udp backend is not supported; use \"vxlan\" (same wire as Flannel's vxlan, VNI 1, port 8472)",
		"ipip":        "Flannel's ipip backend is not supported; use \"host-gw\" when all nodes share a layer-2 network, else \"vxlan\" (same wire as Flannel's vxlan, VNI 1, port 8472)",
		"ipsec":       "Flannel's ipsec backend is not supported (no encryption in twill); use \"vxlan\" on a trusted underlay",
		"wireguard":   "Flannel's wireguard backend is not supported (no encryption in twill); use \"vxlan\" on a trusted underlay",
		"alloc":       "Flannel's alloc backend (subnet allocation only, no data path) is not supported; use \"vxlan\" or \"host-gw\"",
		"extension":   "Flannel's extension backend (external commands) is not supported; use \"vxlan\" or \"host-gw\"",
		"aws-vpc":     "Flannel's cloud route-table backend is not supported; use \"vxlan\", or \"host-gw\" when all nodes share a layer-2 network",
		"gce":         "Flannel's cloud route-table backend is not supported; use \"vxlan\", or \"host-gw\" when all nodes share a layer-2 network",
		"ali-vpc":     "Flannel's cloud route-table backend is not supported; use \"vxlan\", or \"host-gw\" when all nodes share a layer-2 network",
		"tencent-vpc": "Flannel's cloud route-table backend is not supported; use \"vxlan\", or \"host-gw\" when all nodes share a layer-2 network",
	}
)

// FlannelMacPrefix is Flannel's default Backend.MacPrefix, the only value
// twill accepts for that key (it derives its own VTEP MACs).
const FlannelMacPrefix = "0E:2A"

// Parse reads a net-conf.json document, applies the defaults and validates
// it. src names the document in errors ("net-conf.json", an etcd key, a file
// path). Every problem found is reported, one per line, each naming the key
// and the value and saying what is allowed; Parse never accepts a bad value
// silently.
//
// Defaults: Backend {"Type": "vxlan", "VNI": 1, "Port": 8472}; EnableIPv4
// true, EnableIPv6 false; SubnetLen 24 (or Network length + 2 when Network
// is longer than /22, as Flannel); SubnetMin the second subnet of Network,
// SubnetMax the last one; likewise IPv6SubnetLen 64 (or IPv6Network length
// + 2 when it is longer than /62), IPv6SubnetMin and IPv6SubnetMax. A
// family's keys are read only when the family is enabled (as Flannel: an
// IPv6Network beside "EnableIPv6": false is ignored). A JSON null counts as
// absent.
func Parse(src string, data []byte) (Config, error) {
	p := parser{src: src}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return Config{}, fmt.Errorf("%s: not a JSON object: %w", src, err)
	}
	if top == nil {
		return Config{}, fmt.Errorf("%s: not a JSON object (null)", src)
	}
	raw := p.keys("", top, topKeys, flannelTopKeys)

	var c Config
	v4, v6 := p.families(raw)
	if v4 {
		pl, ok := p.familyPool(v4Keys, raw)
		c.Network, c.SubnetLen, c.SubnetMin, c.SubnetMax = pl.Network, pl.SubnetLen, pl.SubnetMin, pl.SubnetMax
		if !ok {
			c.Network = netip.Prefix{}
		}
	}
	if v6 {
		pl, ok := p.familyPool(v6Keys, raw)
		c.IPv6Network, c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax = pl.Network, pl.SubnetLen, pl.SubnetMin, pl.SubnetMax
		if !ok {
			c.IPv6Network = netip.Prefix{}
		}
	}
	if v, ok := raw["EnableNFTables"]; ok {
		p.boolean("EnableNFTables", v) // accepted, ignored: twill detects the node's firewall backend
	}

	var braw map[string]json.RawMessage
	if v, ok := raw["Backend"]; ok {
		if err := json.Unmarshal(v, &braw); err != nil || braw == nil {
			p.errf("Backend %s: want an object like {\"Type\": \"vxlan\"}", v)
		}
	}
	c.Backend = p.backend(p.keys("Backend.", braw, backendKeys, flannelBackendKeys))
	if v6 && c.Backend.MTU != 0 && c.Backend.MTU < MinIPv6MTU {
		p.errf("Backend.MTU %d: IPv6 needs a link MTU of at least %d (EnableIPv6 is true); raise it or remove the key", c.Backend.MTU, MinIPv6MTU)
	}
	if len(p.errs) > 0 {
		return Config{}, errors.Join(p.errs...)
	}
	return c, nil
}

// parser collects every problem of one document.
type parser struct {
	src  string
	errs []error
}

func (p *parser) errf(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.src, fmt.Sprintf(format, args...)))
}

// keys maps the document's keys to their canonical spelling. Unknown keys
// are reported (with a suggestion when one is close); keys Flannel defines
// and twill ignores are kept under their canonical name; nulls are dropped.
func (p *parser) keys(path string, in map[string]json.RawMessage, ours, flannels []string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(in))
	for k, v := range in {
		name := canonical(k, ours)
		if name == "" {
			name = canonical(k, flannels)
		}
		if name == "" {
			msg := fmt.Sprintf("%s%s: unknown key", path, k)
			if s := closest(k, ours); s != "" {
				msg += fmt.Sprintf(" (did you mean %s%s?)", path, s)
			}
			p.errf("%s; known keys: %s", msg, strings.Join(ours, ", "))
			continue
		}
		if string(v) == "null" {
			continue
		}
		out[name] = v
	}
	return out
}

// canonical returns the entry of names equal to k ignoring case, or "".
func canonical(k string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(k, n) {
			return n
		}
	}
	return ""
}

// closest returns the entry of names within edit distance 3 of k, or "".
func closest(k string, names []string) string {
	best, bestD := "", 4
	for _, n := range names {
		if d := editDistance(strings.ToLower(k), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// MinNetworkBits is the shortest pod network prefix accepted: a wider one
// would swallow the default route and every other network of the node.
const MinNetworkBits = 8

// CheckNetwork says whether n can be a cluster pod network: an IPv4 CIDR
// without host bits, between /8 and /(MaxSubnetLen-2) (room for four node
// subnets). The net-conf parser and the subnet-file reader both use it.
func CheckNetwork(n netip.Prefix) error {
	switch {
	case !n.IsValid():
		return fmt.Errorf("Network: not a CIDR (want e.g. \"10.244.0.0/16\")")
	case !n.Addr().Is4():
		return fmt.Errorf("Network %s: an IPv6 CIDR, but Network is the IPv4 pod network; put it in IPv6Network with \"EnableIPv6\": true (add \"EnableIPv4\": false for an IPv6-only cluster)", n)
	case n.Masked() != n:
		return fmt.Errorf("Network %s: host bits are set; did you mean %s?", n, n.Masked())
	case n.Bits() < MinNetworkBits:
		return fmt.Errorf("Network %s: too wide: must be /%d or longer (a wider pod network would capture the default route and the node's own networks)", n, MinNetworkBits)
	case n.Bits() > MaxSubnetLen-2:
		return fmt.Errorf("Network %s: too small: must be /%d or larger, to hold at least four /%d node subnets", n, MaxSubnetLen-2, MaxSubnetLen)
	}
	return nil
}

// CheckIPv6Network says whether n can be the cluster's IPv6 pod network:
// an IPv6 CIDR (not IPv4-mapped) without host bits, between /8 and
// /(MaxIPv6SubnetLen-2), clear of the loopback/IPv4-mapped (::/8),
// link-local (fe80::/10) and multicast (ff00::/8) ranges the kernel uses
// on every node.
func CheckIPv6Network(n netip.Prefix) error {
	switch {
	case !n.IsValid():
		return fmt.Errorf("IPv6Network: not a CIDR (want e.g. \"fd00:10:244::/56\")")
	case n.Addr().Is4():
		return fmt.Errorf("IPv6Network %s: an IPv4 CIDR, but IPv6Network is the IPv6 pod network (e.g. \"fd00:10:244::/56\"); IPv4 goes in Network", n)
	case n.Masked() != n:
		return fmt.Errorf("IPv6Network %s: host bits are set; did you mean %s?", n, n.Masked())
	case n.Bits() < MinNetworkBits:
		return fmt.Errorf("IPv6Network %s: too wide: must be /%d or longer (a wider pod network would capture the default route and the node's own networks)", n, MinNetworkBits)
	case n.Bits() > MaxIPv6SubnetLen-2:
		return fmt.Errorf("IPv6Network %s: too small: must be /%d or larger, to hold at least four /%d node subnets", n, MaxIPv6SubnetLen-2, MaxIPv6SubnetLen)
	}
	for _, r := range reservedIPv6 {
		if n.Overlaps(r.p) {
			return fmt.Errorf("IPv6Network %s: overlaps %s (%s); use a unique local range such as \"fd00:10:244::/56\" or a global prefix of the cluster", n, r.p, r.what)
		}
	}
	return nil
}

// reservedIPv6 are the ranges an IPv6 pod network must stay clear of.
var reservedIPv6 = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("::/8"), "loopback, unspecified and IPv4-mapped addresses"},
	{netip.MustParsePrefix("fe80::/10"), "link-local addresses, which every link of every node has"},
	{netip.MustParsePrefix("ff00::/8"), "multicast addresses"},
}

// families reads EnableIPv4 (default true) and EnableIPv6 (default false).
func (p *parser) families(raw map[string]json.RawMessage) (v4, v6 bool) {
	v4 = true
	ok4, ok6 := true, true
	if v, ok := raw["EnableIPv4"]; ok {
		v4, ok4 = p.boolean("EnableIPv4", v)
	}
	if v, ok := raw["EnableIPv6"]; ok {
		v6, ok6 = p.boolean("EnableIPv6", v)
	}
	if ok4 && ok6 && !v4 && !v6 {
		p.errf("EnableIPv4 and EnableIPv6 are both false: pods would get no address; remove \"EnableIPv4\": false, or set \"EnableIPv6\": true with an IPv6Network")
	}
	return v4 && ok4, v6 && ok6
}

// familyPool reads one enabled family's network and subnet keys; ok is
// false when the network is missing or invalid.
func (p *parser) familyPool(k familyKeys, raw map[string]json.RawMessage) (pl Pool, ok bool) {
	v, have := raw[k.network]
	switch {
	case !have && k.family == IPv4:
		p.errf("Network: required while EnableIPv4 is true (the cluster's IPv4 pod network, e.g. \"10.244.0.0/16\"); for an IPv6-only cluster set \"EnableIPv4\": false")
	case !have:
		p.errf("IPv6Network: required while EnableIPv6 is true (the cluster's IPv6 pod network, e.g. \"fd00:10:244::/56\")")
	default:
		pl.Network = p.network(k, v)
	}
	var haveLen bool
	if v, ok := raw[k.len]; ok {
		pl.SubnetLen, haveLen = p.integer(k.len, v)
	}
	if v, ok := raw[k.min]; ok {
		pl.SubnetMin = p.addr(k, k.min, v)
	}
	if v, ok := raw[k.max]; ok {
		pl.SubnetMax = p.addr(k, k.max, v)
	}
	if !pl.Network.IsValid() {
		return pl, false
	}
	p.pool(k, &pl, haveLen)
	return pl, true
}

func (p *parser) network(k familyKeys, v json.RawMessage) netip.Prefix {
	example := map[Family]string{IPv4: "10.244.0.0/16", IPv6: "fd00:10:244::/56"}[k.family]
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		p.errf("%s %s: want a CIDR string like %q", k.network, v, example)
		return netip.Prefix{}
	}
	n, err := netip.ParsePrefix(s)
	if err != nil {
		p.errf("%s %q: not a CIDR (want e.g. %q)", k.network, s, example)
		return netip.Prefix{}
	}
	check := CheckNetwork
	if k.family == IPv6 {
		check = CheckIPv6Network
	}
	if err := check(n); err != nil {
		p.errf("%v", err)
		return netip.Prefix{}
	}
	return n
}

func (p *parser) integer(key string, v json.RawMessage) (int, bool) {
	var n int
	if err := json.Unmarshal(v, &n); err != nil {
		p.errf("%s %s: want an integer", key, v)
		return 0, false
	}
	return n, true
}

func (p *parser) boolean(key string, v json.RawMessage) (bool, bool) {
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		p.errf("%s %s: want true or false", key, v)
		return false, false
	}
	return b, true
}

func (p *parser) addr(k familyKeys, key string, v json.RawMessage) netip.Addr {
	example := map[Family]string{IPv4: "10.244.1.0", IPv6: "fd00:10:244:1::"}[k.family]
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		p.errf("%s %s: want an %s address string like %q", key, v, k.family, example)
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		hint := ""
		if pre, err := netip.ParsePrefix(s); err == nil {
			hint = fmt.Sprintf(" (write the subnet's address without a length: %q)", pre.Addr().String())
		}
		p.errf("%s %q: not an IP address%s", key, s, hint)
		return netip.Addr{}
	}
	switch {
	case a.Zone() != "":
		p.errf("%s %s: an address with a zone cannot bound subnets; write it without %%%s", key, s, a.Zone())
		return netip.Addr{}
	case k.family == IPv4 && !a.Is4():
		p.errf("%s %s: must be an IPv4 address (IPv6 subnet bounds go in IPv6SubnetMin and IPv6SubnetMax)", key, s)
		return netip.Addr{}
	case k.family == IPv6 && (a.Is4() || a.Is4In6()):
		p.errf("%s %s: must be an IPv6 address like %q (IPv4 subnet bounds go in SubnetMin and SubnetMax)", key, s, example)
		return netip.Addr{}
	}
	return a
}

func (p *parser) backend(raw map[string]json.RawMessage) Backend {
	b := Backend{Type: BackendVXLAN}
	if v, ok := raw["Type"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			p.errf("Backend.Type %s: want a string: \"vxlan\" or \"host-gw\"", v)
		} else {
			switch t := strings.ToLower(s); {
			case t == BackendVXLAN || t == BackendHostGW:
				b.Type = t
			case flannelTypes[t] != "":
				p.errf("Backend.Type %q: %s", s, flannelTypes[t])
			default:
				p.errf("Backend.Type %q: unknown backend; use \"vxlan\" or \"host-gw\"", s)
			}
		}
	}
	rng := func(key string, lo, hi int, why string) int {
		v, ok := raw[key]
		if !ok {
			return 0
		}
		n, ok := p.integer("Backend."+key, v)
		if ok && (n < lo || n > hi) {
			p.errf("Backend.%s %d: must be between %d and %d (%s)", key, n, lo, hi, why)
			return 0
		}
		return n
	}
	b.VNI = rng("VNI", 1, MaxVNI, "a 24-bit vxlan network identifier")
	b.Port = rng("Port", 1, 65535, "a UDP port")
	b.MTU = rng("MTU", 68, 65535, "a link MTU; it must also fit the underlay MTU less the vxlan overhead")
	if v, ok := raw["DirectRouting"]; ok {
		b.DirectRouting, _ = p.boolean("Backend.DirectRouting", v)
	}
	for _, k := range []string{"GBP", "Learning"} {
		if v, ok := raw[k]; ok {
			if on, ok := p.boolean("Backend."+k, v); ok && on {
				p.errf("Backend.%s true: not supported by twill's vxlan backend; remove the key or set it to false", k)
			}
		}
	}
	if v, ok := raw["MacPrefix"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			p.errf("Backend.MacPrefix %s: want a string like %q", v, FlannelMacPrefix)
		} else if !strings.EqualFold(s, FlannelMacPrefix) {
			p.errf("Backend.MacPrefix %q: not supported: twill derives its VTEP MACs itself (a Flannel peer reads them from the lease, so the prefix does not matter on the wire); remove the key or set it to %q", s, FlannelMacPrefix)
		}
	}
	if b.Type == BackendVXLAN {
		if b.VNI == 0 {
			b.VNI = DefaultVNI
		}
		if b.Port == 0 {
			b.Port = DefaultPort
		}
	}
	return b
}

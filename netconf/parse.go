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
	// MaxVNI is the largest vxlan network identifier (24 bits).
	MaxVNI = 1<<24 - 1
)

// Keys twill reads. Keys are matched case-insensitively, as encoding/json and
// therefore Flannel do, so every file Flannel accepts is read the same way.
var (
	topKeys     = []string{"Network", "SubnetLen", "SubnetMin", "SubnetMax", "Backend"}
	backendKeys = []string{"Type", "VNI", "Port", "DirectRouting", "MTU"}
)

// Keys Flannel defines that twill accepts without acting on them. Any other
// unknown key is an error: a misspelled key must not silently fall back to a
// default.
var (
	// Top level: the IPv6 keys only matter with EnableIPv6 true, which is
	// rejected; EnableNFTables is Flannel's firewall switch, twill detects the
	// node's firewall backend itself (DESIGN.md).
	flannelTopKeys = []string{"EnableIPv4", "EnableIPv6", "IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax", "EnableNFTables"}
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
// Defaults: Backend {"Type": "vxlan", "VNI": 1, "Port": 8472}; SubnetLen 24
// (or Network length + 2 when Network is longer than /22, as Flannel);
// SubnetMin the second subnet of Network, SubnetMax the last one. A JSON
// null counts as absent.
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
	var haveLen bool
	if v, ok := raw["Network"]; ok {
		c.Network = p.network(v)
	} else {
		p.errf("Network: required (the cluster pod network, e.g. \"10.244.0.0/16\")")
	}
	if v, ok := raw["SubnetLen"]; ok {
		c.SubnetLen, haveLen = p.integer("SubnetLen", v)
	}
	if v, ok := raw["SubnetMin"]; ok {
		c.SubnetMin = p.addr("SubnetMin", v)
	}
	if v, ok := raw["SubnetMax"]; ok {
		c.SubnetMax = p.addr("SubnetMax", v)
	}
	p.flannelTop(raw)

	var braw map[string]json.RawMessage
	if v, ok := raw["Backend"]; ok {
		if err := json.Unmarshal(v, &braw); err != nil || braw == nil {
			p.errf("Backend %s: want an object like {\"Type\": \"vxlan\"}", v)
		}
	}
	c.Backend = p.backend(p.keys("Backend.", braw, backendKeys, flannelBackendKeys))

	if c.Network.IsValid() {
		p.subnets(&c, haveLen)
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
		return fmt.Errorf("Network %s: IPv6 networks are not supported yet (twill is IPv4-only for now); use an IPv4 CIDR", n)
	case n.Masked() != n:
		return fmt.Errorf("Network %s: host bits are set; did you mean %s?", n, n.Masked())
	case n.Bits() < MinNetworkBits:
		return fmt.Errorf("Network %s: too wide: must be /%d or longer (a wider pod network would capture the default route and the node's own networks)", n, MinNetworkBits)
	case n.Bits() > MaxSubnetLen-2:
		return fmt.Errorf("Network %s: too small: must be /%d or larger, to hold at least four /%d node subnets", n, MaxSubnetLen-2, MaxSubnetLen)
	}
	return nil
}

func (p *parser) network(v json.RawMessage) netip.Prefix {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		p.errf("Network %s: want a CIDR string like \"10.244.0.0/16\"", v)
		return netip.Prefix{}
	}
	n, err := netip.ParsePrefix(s)
	if err != nil {
		p.errf("Network %q: not a CIDR (want e.g. \"10.244.0.0/16\")", s)
		return netip.Prefix{}
	}
	if err := CheckNetwork(n); err != nil {
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

func (p *parser) addr(key string, v json.RawMessage) netip.Addr {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		p.errf("%s %s: want an IPv4 address string like \"10.244.1.0\"", key, v)
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
	if !a.Is4() {
		p.errf("%s %s: must be an IPv4 address (IPv6 is not supported yet)", key, s)
		return netip.Addr{}
	}
	return a
}

// flannelTop checks the Flannel keys twill accepts without implementing.
func (p *parser) flannelTop(raw map[string]json.RawMessage) {
	if v, ok := raw["EnableIPv4"]; ok {
		if b, ok := p.boolean("EnableIPv4", v); ok && !b {
			p.errf("EnableIPv4 false: twill needs IPv4 (IPv6-only clusters are not supported yet); remove the key or set it to true")
		}
	}
	if v, ok := raw["EnableIPv6"]; ok {
		if b, ok := p.boolean("EnableIPv6", v); ok && b {
			p.errf("EnableIPv6 true: IPv6 (dual stack) is not supported yet; remove the key or set it to false")
		}
	}
	if v, ok := raw["EnableNFTables"]; ok {
		p.boolean("EnableNFTables", v) // accepted, ignored: twill detects the node's firewall backend
	}
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
	b.MTU = rng("MTU", 68, 65535, "an IPv4 link MTU; it must also fit the underlay MTU - 50")
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

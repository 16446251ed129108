package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nodestate"
)

// Pod describes one pod attached to a node bridge. The simulator models a
// pod's namespace minimally: its address, an on-link subnet and a default
// route via the bridge address.
type Pod struct {
	// Name is the pod's name ("node1-a"); may be empty (then its address is shown).
	Name string `json:"name"`
	// Node is the Host name of the node the pod runs on.
	Node string `json:"node"`
	// IP is the pod's address with its prefix length (10.244.1.10/24).
	IP netip.Prefix `json:"ip"`
	// Gateway is the pod's default gateway (the node bridge address).
	Gateway netip.Addr `json:"gateway"`
	// HostVeth is the node end of the pod's veth (a port of Bridge).
	HostVeth string `json:"hostVeth,omitempty"`
	// Bridge is the node bridge the veth is enslaved to ("cni0").
	Bridge string `json:"bridge,omitempty"`
	// Ports are the ports something listens on in the pod (TCP and UDP),
	// when known; nil means unknown (a listener is assumed).
	Ports []uint16 `json:"ports,omitempty"`
	// Synthesized is true when the pod was inferred from a bridge subnet,
	// not known from the lab or a pod snapshot.
	Synthesized bool `json:"synthesized,omitempty"`
}

// Label is the pod's name, or its address when it has none.
func (p *Pod) Label() string {
	if p.Name != "" {
		return p.Name
	}
	return "pod " + p.IP.Addr().String()
}

// World is a set of nodes (compiled snapshots) and pods that the simulator
// moves packets between. Build it with NewWorld; it is read-only afterwards
// and safe for concurrent traces.
type World struct {
	Hosts []*Host
	Pods  []*Pod

	byName  map[string]*Host
	podByIP map[netip.Addr]*Pod
}

// Host is one node's compiled state: its snapshot plus indexes.
type Host struct {
	// Name is the node name (snapshot Node, else Netns, else Hostname).
	Name string
	Snap *nodestate.Snapshot
	// V6 says which family of the node this Host simulates: false the IPv4
	// half (addresses, routes, neighbours, iptables, nft ip and inet
	// tables), true the IPv6 half (ip6tables, nft ip6 and inet tables).
	// One snapshot yields one Host per family; the evaluators are the same.
	V6 bool

	links  map[string]*nodestate.Link
	local  map[netip.Addr]string // local addresses -> link
	addrs  map[string][]netip.Prefix
	rules  []nodestate.Rule // IPv4 policy rules by priority
	tables map[int][]nodestate.Route
	neigh  map[string]string // dev|ip -> mac ("" when failed/incomplete)
	fdb    map[string]nodestate.FDBEntry
	vtep   map[string]*nodestate.Link // vxlan MAC -> vxlan link (for decap checks)

	legacy, nft *iptRuleset // nil when the backend has no rules
	native      *nftRuleset // native nftables (tables iptables-nft does not own)
	// chains are the base chains of every backend per hook, by priority.
	chains map[string][]baseChain

	// Warnings are problems met while compiling (unparsable dumps, ...).
	Warnings []string
}

// NewWorld compiles node snapshots and pods into a World. Pods may be nil:
// pods are then synthesized on demand for addresses inside a node bridge's
// subnet. Malformed rule dumps are errors naming the node and line.
func NewWorld(snaps []*nodestate.Snapshot, pods []Pod) (*World, error) {
	w := &World{byName: map[string]*Host{}, podByIP: map[netip.Addr]*Pod{}}
	for i, s := range snaps {
		h, err := compileHost(s, i, false)
		if err != nil {
			return nil, err
		}
		if _, dup := w.byName[h.Name]; dup {
			h.Name = fmt.Sprintf("%s#%d", h.Name, i+1)
		}
		w.Hosts = append(w.Hosts, h)
		w.byName[h.Name] = h
	}
	for i := range pods {
		p := pods[i]
		if w.byName[p.Node] == nil {
			return nil, fmt.Errorf("pod %s: node %q is not among the snapshots (have %s)", p.Label(), p.Node, strings.Join(w.hostNames(), ", "))
		}
		if p.Bridge == "" {
			p.Bridge = "cni0"
		}
		w.Pods = append(w.Pods, &p)
		w.podByIP[p.IP.Addr()] = &p
	}
	return w, nil
}

func (w *World) hostNames() []string {
	var n []string
	for _, h := range w.Hosts {
		n = append(n, h.Name)
	}
	return n
}

// Host returns the node named name, or nil.
func (w *World) Host(name string) *Host { return w.byName[name] }

// PodByName returns the pod named name, or nil.
func (w *World) PodByName(name string) *Pod {
	for _, p := range w.Pods {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// podFor returns the pod with address a, synthesizing one when a lies in
// the subnet of a node bridge and no pod is known. nil when a is no pod.
func (w *World) podFor(a netip.Addr) *Pod {
	if p := w.podByIP[a]; p != nil {
		return p
	}
	for _, h := range w.Hosts {
		if _, own := h.local[a]; own {
			return nil
		}
		for name, l := range h.links {
			if l.Kind != "bridge" {
				continue
			}
			for _, pf := range h.addrs[name] {
				if pf.Addr().Is4() == a.Is4() && pf.Bits() < a.BitLen() && pf.Contains(a) {
					return &Pod{IP: netip.PrefixFrom(a, pf.Bits()), Node: h.Name, Gateway: pf.Addr(), Bridge: name, Synthesized: true}
				}
			}
		}
	}
	return nil
}

// hostOwning returns the node that has a as a local address (not loopback), and the link.
func (w *World) hostOwning(a netip.Addr) (*Host, string) {
	for _, h := range w.Hosts {
		if l, ok := h.local[a]; ok && l != "lo" {
			return h, l
		}
	}
	return nil, ""
}

func hostName(s *nodestate.Snapshot, i int) string {
	switch {
	case s.Node != "":
		return s.Node
	case s.Netns != "":
		return s.Netns
	case s.Hostname != "":
		return s.Hostname
	}
	return fmt.Sprintf("node%d", i+1)
}

// of reports whether address a is of the Host's family.
func (h *Host) of(a netip.Addr) bool { return a.IsValid() && a.Is6() == h.V6 && !a.Is4In6() }

// family names the Host's family in messages.
func (h *Host) family() string {
	if h.V6 {
		return "IPv6"
	}
	return "IPv4"
}

func compileHost(s *nodestate.Snapshot, i int, v6 bool) (*Host, error) {
	h := &Host{
		Name: hostName(s, i), Snap: s, V6: v6,
		links: map[string]*nodestate.Link{}, local: map[netip.Addr]string{}, addrs: map[string][]netip.Prefix{},
		tables: map[int][]nodestate.Route{}, neigh: map[string]string{}, fdb: map[string]nodestate.FDBEntry{},
		vtep: map[string]*nodestate.Link{},
	}
	for k := range s.Links {
		l := &s.Links[k]
		h.links[l.Name] = l
		if l.Kind == "vxlan" && l.MAC != "" {
			h.vtep[strings.ToLower(l.MAC)] = l
		}
	}
	for _, a := range s.Addrs {
		if !h.of(a.Prefix.Addr()) {
			continue
		}
		h.addrs[a.Link] = append(h.addrs[a.Link], a.Prefix)
		if _, dup := h.local[a.Prefix.Addr()]; !dup {
			h.local[a.Prefix.Addr()] = a.Link
		}
	}
	for _, r := range s.Routes {
		if !h.of(r.Dst.Addr()) {
			continue
		}
		h.tables[r.Table] = append(h.tables[r.Table], r)
	}
	for t := range h.tables {
		rs := h.tables[t]
		// Longest prefix first, then lowest metric: lookup takes the first match.
		slices.SortStableFunc(rs, func(a, b nodestate.Route) int {
			if a.Dst.Bits() != b.Dst.Bits() {
				return b.Dst.Bits() - a.Dst.Bits()
			}
			return a.Metric - b.Metric
		})
	}
	for _, r := range s.Rules {
		if (r.Family == 6) == v6 || r.Family == 0 {
			h.rules = append(h.rules, r)
		}
	}
	if len(h.rules) == 0 {
		h.rules = []nodestate.Rule{{Priority: 0, Table: 255, Action: "lookup"}, {Priority: 32766, Table: 254, Action: "lookup"}, {Priority: 32767, Table: 253, Action: "lookup"}}
	}
	slices.SortStableFunc(h.rules, func(a, b nodestate.Rule) int { return a.Priority - b.Priority })
	for _, n := range s.Neighbors {
		if !h.of(n.IP) {
			continue
		}
		mac := strings.ToLower(n.MAC)
		if strings.Contains(n.State, "failed") || strings.Contains(n.State, "incomplete") {
			mac = ""
		}
		h.neigh[n.Dev+"|"+n.IP.String()] = mac
	}
	for _, f := range s.FDB {
		h.fdb[f.Dev+"|"+strings.ToLower(f.MAC)] = f
	}
	if err := h.compileNetfilter(); err != nil {
		return nil, fmt.Errorf("node %s: %w", h.Name, err)
	}
	return h, nil
}

// sysctl returns a sysctl value and whether it is known.
func (h *Host) sysctl(name string) (string, bool) {
	v, ok := h.Snap.Sysctls[name]
	return v, ok
}

// routeLocalnet returns net.ipv4.conf.DEV.route_localnet ("all" for the
// global one), "" when the snapshot does not have it.
func (h *Host) routeLocalnet(dev string) string {
	v, _ := h.sysctl(nodestate.RouteLocalnetKey(dev))
	return v
}

// forwardingKey is the sysctl that makes the node route its family:
// net.ipv4.ip_forward, net.ipv6.conf.all.forwarding.
func (h *Host) forwardingKey() string {
	if h.V6 {
		return "net.ipv6.conf.all.forwarding"
	}
	return "net.ipv4.ip_forward"
}

// forwarding reports whether the node routes its family (unknown counts as on).
func (h *Host) forwarding() bool {
	v, ok := h.sysctl(h.forwardingKey())
	return !ok || v != "0"
}

// bridgeNFKey is the sysctl that sends bridged frames of the Host's family
// through the netfilter hooks: bridge-nf-call-iptables, or
// bridge-nf-call-ip6tables for IPv6.
func (h *Host) bridgeNFKey() string {
	if h.V6 {
		return "net.bridge.bridge-nf-call-ip6tables"
	}
	return "net.bridge.bridge-nf-call-iptables"
}

// bridgeNF reports whether bridged frames of the Host's family pass the
// iptables hooks (bridgeNFKey is 1). Absent (br_netfilter not loaded)
// means no.
func (h *Host) bridgeNF() bool {
	v, ok := h.sysctl(h.bridgeNFKey())
	return ok && v == "1"
}

// isLocal reports whether a is one of the node's own addresses, or in a
// local route (e.g. 127.0.0.0/8, an IPVS VIP on kube-ipvs0).
func (h *Host) isLocal(a netip.Addr) bool {
	if _, ok := h.local[a]; ok {
		return true
	}
	for _, r := range h.tables[nodestate.TableLocal] {
		if r.Type == "local" && r.Dst.Contains(a) {
			return true
		}
	}
	return false
}

// addrType classifies a for -m addrtype the way the kernel does, from the
// local table: LOCAL, BROADCAST, MULTICAST or UNICAST.
func (h *Host) addrType(a netip.Addr) string {
	switch {
	case a.IsMulticast():
		return "MULTICAST"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "BROADCAST"
	case a.IsUnspecified():
		return "UNSPEC"
	}
	for _, r := range h.tables[nodestate.TableLocal] {
		if r.Dst.Contains(a) {
			switch r.Type {
			case "local":
				return "LOCAL"
			case "broadcast":
				return "BROADCAST"
			}
		}
	}
	if _, ok := h.local[a]; ok {
		return "LOCAL"
	}
	return "UNICAST"
}

// primaryAddr is the address the kernel picks as source on dev towards
// nexthop: one in nexthop's subnet if any, else the first on dev.
func (h *Host) primaryAddr(dev string, nexthop netip.Addr) netip.Addr {
	as := h.addrs[dev]
	for _, p := range as {
		if p.Contains(nexthop) {
			return p.Addr()
		}
	}
	// IPv6 prefers a global address over the link-local one every device has.
	for _, p := range as {
		if !p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	if len(as) > 0 {
		return as[0].Addr()
	}
	// No address on dev: the kernel takes one from another device.
	for _, ps := range h.addrs {
		for _, p := range ps {
			if !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

// ruleset parses an iptables dump; empty text is no rule set.
func parseIpt(source, text string) (*netfilter.Ruleset, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	return netfilter.ParseIptablesSave(source, text)
}

package picture

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

// nodeSummary is what a ticket reader wants to know of a node at a glance.
type nodeSummary struct {
	Node, Netns, Hostname, Captured string
	// Overlay lists the vxlan devices and subnet files in words.
	Overlay []string
	// Subnets lists the bridges' and the subnet files' pod subnets.
	Subnets []string
	// KeySysctls are the sysctls pod networking depends on (absent ones
	// say so); AllSysctls every captured one, sorted.
	KeySysctls, AllSysctls [][2]string
	// Rules counts rules per backend and table.
	Rules []ruleCount
	// Leases lists the store's leases in words.
	Leases []string
	// Errors are the parts the capture could not read.
	Errors []string
}

// ruleCount is the number of rules of one backend.
type ruleCount struct {
	Backend string
	Total   int
	// Tables is "filter 12, nat 40" (or why the dump could not be read).
	Tables string
	names  []string
}

// keySysctls are the sysctls shown first (FAILURES.md F1, F2, F7).
var keySysctls = []string{
	"net.ipv4.ip_forward",
	"net.bridge.bridge-nf-call-iptables",
	"net.bridge.bridge-nf-call-ip6tables",
	"net.ipv6.conf.all.forwarding",
	"net.ipv4.conf.all.rp_filter",
	"net.netfilter.nf_conntrack_max",
}

func summarizeNode(s *nodestate.Snapshot) nodeSummary {
	n := nodeSummary{Node: s.Node, Netns: s.Netns, Hostname: s.Hostname}
	if !s.CapturedAt.IsZero() {
		n.Captured = s.CapturedAt.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	for _, l := range s.Links {
		switch {
		case l.Vxlan != nil:
			n.Overlay = append(n.Overlay, fmt.Sprintf("vxlan %s: VNI %d, UDP %d, local %s via %s, MTU %d, MAC %s", l.Name, l.Vxlan.VNI, l.Vxlan.Port, l.Vxlan.Local, orNone(l.Vxlan.Dev), l.MTU, orNone(l.MAC)))
		case l.Kind == "bridge":
			for _, a := range s.Addrs {
				if a.Link == l.Name && a.Prefix.Addr().Is4() {
					n.Subnets = append(n.Subnets, fmt.Sprintf("bridge %s: %s (%d ports, MTU %d)", l.Name, a.Prefix, bridgePorts(l), l.MTU))
				}
			}
		}
	}
	for _, f := range s.Files.SubnetFiles {
		if !f.Exists {
			continue
		}
		info, err := subnetfile.Parse(f.Path, f.Content)
		if err != nil {
			n.Subnets = append(n.Subnets, fmt.Sprintf("%s: unreadable: %v", f.Path, err))
			continue
		}
		n.Subnets = append(n.Subnets, fmt.Sprintf("%s: network %s, node subnet %s, MTU %d", f.Path, info.Network, info.Subnet, info.MTU))
		if info.Backend != "" {
			n.Overlay = append(n.Overlay, fmt.Sprintf("backend %s (from %s)", info.Backend, f.Path))
		}
	}
	for _, k := range keySysctls {
		v, ok := s.Sysctls[k]
		if !ok {
			v = "absent"
		}
		n.KeySysctls = append(n.KeySysctls, [2]string{k, v})
	}
	keys := make([]string, 0, len(s.Sysctls))
	for k := range s.Sysctls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n.AllSysctls = append(n.AllSysctls, [2]string{k, s.Sysctls[k]})
	}
	nft := iptCount("iptables-nft", s.Iptables.NFT)
	n.Rules = append(n.Rules, iptCount("iptables-legacy", s.Iptables.Legacy), nft, nftCount(s.Nftables, nft.names))
	for _, l := range s.Leases {
		n.Leases = append(n.Leases, fmt.Sprintf("%s: %s at %s (%s)", orNone(l.Node), l.Subnet, l.PublicIP, l.Backend))
	}
	for _, e := range s.Errors {
		n.Errors = append(n.Errors, e.Source+": "+e.Err)
	}
	return n
}

func bridgePorts(l nodestate.Link) int {
	if l.Bridge == nil {
		return 0
	}
	return len(l.Bridge.Ports)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func iptCount(name string, b nodestate.IptablesBackend) ruleCount {
	c := ruleCount{Backend: name}
	switch {
	case !b.Available:
		c.Tables = "not available: " + orNone(b.Err)
		return c
	case strings.TrimSpace(b.Save) == "":
		c.Tables = "no tables"
		return c
	}
	rs, err := netfilter.ParseIptablesSave(name, b.Save)
	if err != nil {
		c.Tables = "unreadable: " + err.Error()
		return c
	}
	var parts []string
	for _, t := range rs.Tables {
		n := 0
		for _, ch := range t.Chains {
			n += len(ch.Rules)
		}
		c.Total += n
		c.names = append(c.names, t.Name)
		parts = append(parts, fmt.Sprintf("%s %d", t.Name, n))
	}
	c.Tables = strings.Join(parts, ", ")
	return c
}

// nftCount counts the rules of `nft list ruleset`; ipt names the tables of
// the iptables-nft dump, which nft lists too (marked, not hidden).
func nftCount(nf nodestate.Nftables, ipt []string) ruleCount {
	c := ruleCount{Backend: "nftables"}
	switch {
	case !nf.Available:
		c.Tables = "not available: " + orNone(nf.Err)
		return c
	case strings.TrimSpace(nf.JSON) == "":
		c.Tables = "no tables"
		return c
	}
	rs, err := netfilter.ParseNftJSON("nftables", []byte(nf.JSON))
	if err != nil {
		c.Tables = "unreadable: " + err.Error()
		return c
	}
	var parts []string
	for _, t := range rs.Tables {
		n := 0
		for _, ch := range t.Chains {
			n += len(ch.Rules)
		}
		c.Total += n
		p := fmt.Sprintf("%s %s %d", t.Family, t.Name, n)
		if t.Family == "ip" && slices.Contains(ipt, t.Name) {
			p += " (also listed by iptables-nft)"
		}
		parts = append(parts, p)
	}
	c.Tables = strings.Join(parts, ", ")
	if len(parts) == 0 {
		c.Tables = "no tables"
	}
	return c
}

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
	nft := iptCount(nodestate.BackendIptablesNFT, s.Iptables.NFT)
	n.Rules = append(n.Rules, iptCount(nodestate.BackendIptablesLegacy, s.Iptables.Legacy), nft, nftCount(s.Nftables, nft.names))
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

// notReadable says why a dump has nothing to count, "" when it has.
func notReadable(available bool, err, dump string) string {
	switch {
	case !available:
		return "not available: " + orNone(err)
	case strings.TrimSpace(dump) == "":
		return "no tables"
	}
	return ""
}

// sumTables fills c from the tables of a dump: each one's label and rule
// count, and the total.
func sumTables[T any](c *ruleCount, tables []T, count func(T) (string, int)) {
	var parts []string
	for _, t := range tables {
		label, n := count(t)
		c.Total += n
		parts = append(parts, fmt.Sprintf("%s %d", label, n))
	}
	c.Tables = strings.Join(parts, ", ")
	if len(parts) == 0 {
		c.Tables = "no tables"
	}
}

func iptCount(name string, b nodestate.IptablesBackend) ruleCount {
	c := ruleCount{Backend: name}
	if c.Tables = notReadable(b.Available, b.Err, b.Save); c.Tables != "" {
		return c
	}
	rs, err := netfilter.ParseIptablesSave(name, b.Save)
	if err != nil {
		c.Tables = "unreadable: " + err.Error()
		return c
	}
	sumTables(&c, rs.Tables, func(t *netfilter.Table) (string, int) {
		c.names = append(c.names, t.Name)
		n := 0
		for _, ch := range t.Chains {
			n += len(ch.Rules)
		}
		return t.Name, n
	})
	return c
}

// nftCount counts the rules of `nft list ruleset`; ipt names the tables of
// the iptables-nft dump, which nft lists too (marked, not hidden).
func nftCount(nf nodestate.Nftables, ipt []string) ruleCount {
	c := ruleCount{Backend: "nftables"}
	if c.Tables = notReadable(nf.Available, nf.Err, nf.JSON); c.Tables != "" {
		return c
	}
	rs, err := netfilter.ParseNftJSON("nftables", []byte(nf.JSON))
	if err != nil {
		c.Tables = "unreadable: " + err.Error()
		return c
	}
	sumTables(&c, rs.Tables, func(t *netfilter.NftTable) (string, int) {
		label := t.Family + " " + t.Name
		if t.Family == "ip" && slices.Contains(ipt, t.Name) {
			label += " (also listed by iptables-nft)"
		}
		n := 0
		for _, ch := range t.Chains {
			n += len(ch.Rules)
		}
		return label, n
	})
	return c
}

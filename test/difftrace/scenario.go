package difftrace

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/kubeproxy"
	"github.com/twillnet/twill/lab"
)

// Mutation is one change applied to a lab node for a round.
type Mutation struct {
	// Node is the node namespace's short name ("node1").
	Node string
	// Kind is "ipt" (an iptables-nft, ip6tables-nft, sysctl or ip argv),
	// "legacy" (iptables-legacy or ip6tables-legacy argv),
	// "nft" (nft -f input), or "scenario" (a lab.Break scenario ID).
	Kind string
	Argv []string
	Text string
}

func (m Mutation) String() string {
	switch m.Kind {
	case "scenario":
		return fmt.Sprintf("%s: lab break %s", m.Node, m.Text)
	case "nft":
		return fmt.Sprintf("%s: nft %s", m.Node, strings.Join(strings.Fields(m.Text), " "))
	}
	return fmt.Sprintf("%s: %s", m.Node, strings.Join(m.Argv, " "))
}

// Round is one randomized configuration of a lab and the probes to send.
type Round struct {
	Services  []kubeproxy.Service
	Mutations []Mutation
	Probes    []Probe
}

// Probe is one TCP connect from a pod to an address.
type Probe struct {
	From string
	To   netip.AddrPort
}

// Family is the IP family of a round's Services, rules and probes.
type Family struct {
	// V6 is true for IPv6: ip6tables, ip6 matches, the pods' IPv6
	// addresses, IPv6 ClusterIPs.
	V6 bool
}

// Families of the differential test.
var (
	IPv4 = Family{}
	IPv6 = Family{V6: true}
)

func (f Family) String() string {
	if f.V6 {
		return "ipv6"
	}
	return "ipv4"
}

// Tool is the family's iptables-nft binary; Legacy its iptables-legacy one.
func (f Family) Tool() string {
	return map[bool]string{false: "iptables-nft", true: "ip6tables-nft"}[f.V6]
}
func (f Family) Legacy() string {
	return map[bool]string{false: "iptables-legacy", true: "ip6tables-legacy"}[f.V6]
}

// Cluster is the lab's pod network of the family.
func (f Family) Cluster() netip.Prefix {
	if f.V6 {
		return lab.ClusterCIDRv6
	}
	return lab.ClusterCIDR
}

// host is a as a one-address prefix ("10.244.1.2/32", "fd00::2/128").
func host(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// nft is the family's nft address match keyword.
func (f Family) nft() string { return map[bool]string{false: "ip", true: "ip6"}[f.V6] }

// vip is the i-th random Service's ClusterIP: 10.96.5.<10+i>, or
// fd00:96::5:<10+i> in the lab's IPv6 Service range.
func (f Family) vip(i int) netip.Addr {
	if !f.V6 {
		return netip.AddrFrom4([4]byte{10, 96, 5, byte(10 + i)})
	}
	b := lab.ServiceCIDRv6.Addr().As16()
	b[13], b[15] = 5, byte(10+i)
	return netip.AddrFrom16(b)
}

// podRef is a pod of the lab with its node.
type podRef struct {
	node, name string
	ip         netip.Addr
}

// pods are the lab's pods with their address of family f.
func pods(st *lab.State, f Family) []podRef {
	var out []podRef
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			a := p.IP
			if f.V6 {
				a = p.IPv6
			}
			out = append(out, podRef{n.Name, p.Name, netip.MustParseAddr(a)})
		}
	}
	return out
}

// NewRound draws a random configuration for a lab (the randomness is all
// here, so a failing seed reproduces) with Services, rules and probes of
// family f. IPv6 rounds run on a dual-stack lab; they draw the scenarios
// that break IPv6 (F1's twin, net.ipv6.conf.all.forwarding=0, a deleted
// IPv6 route to a peer) and those that break only IPv4 (F2), which must
// leave IPv6 alone.
func NewRound(r *rand.Rand, st *lab.State, f Family, probes int) Round {
	ps := pods(st, f)
	pick := func() podRef { return ps[r.IntN(len(ps))] }
	node := func() string { return st.Nodes[r.IntN(len(st.Nodes))].Name }
	chance := func(p float64) bool { return r.Float64() < p }
	var rd Round

	// Services with random endpoints (some with none, some on a closed port).
	nsvc := 1 + r.IntN(3)
	for i := 0; i < nsvc; i++ {
		s := kubeproxy.Service{Namespace: "diff", Name: fmt.Sprintf("svc%d", i), PortName: "p",
			ClusterIP: f.vip(i), Port: []int{80, 8080}[r.IntN(2)], Protocol: "tcp"}
		neps := r.IntN(4)
		if chance(0.1) {
			neps = 0
		}
		for k := 0; k < neps; k++ {
			port := uint16(lab.ServerPort)
			if chance(0.1) {
				port = 9999
			}
			s.Endpoints = append(s.Endpoints, netip.AddrPortFrom(pick().ip, port))
		}
		rd.Services = append(rd.Services, s)
	}
	ipt := func(n string, argv ...string) {
		rd.Mutations = append(rd.Mutations, Mutation{Node: n, Kind: "ipt", Argv: append([]string{f.Tool()}, argv...)})
	}
	if chance(0.3) {
		n := node()
		ipt(n, "-P", "FORWARD", "DROP")
		switch r.IntN(4) {
		case 0:
			ipt(n, "-I", "FORWARD", "1", "-s", f.Cluster().String(), "-d", f.Cluster().String(), "-j", "ACCEPT")
		case 1:
			ipt(n, "-I", "FORWARD", "1", "-o", "cni0", "-j", "ACCEPT")
		case 2:
			ipt(n, "-I", "FORWARD", "1", "-i", "cni+", "-j", "ACCEPT")
		}
	}
	if chance(0.25) {
		p := pick()
		verdict := []string{"DROP", "REJECT"}[r.IntN(2)]
		ipt(node(), "-I", "FORWARD", "1", "-d", host(p.ip), "-p", "tcp", "--dport", fmt.Sprint(lab.ServerPort), "-j", verdict)
	}
	if chance(0.2) {
		p := pick()
		ipt(node(), "-t", "mangle", "-A", "PREROUTING", "-s", host(p.ip), "-j", "MARK", "--set-xmark", "0x4000/0x4000")
	}
	if chance(0.2) {
		p := pick()
		ipt(node(), "-t", "nat", "-I", "POSTROUTING", "1", "-s", host(p.ip), "-d", f.Cluster().String(), "-j", "MASQUERADE")
	}
	if chance(0.15) {
		p := pick()
		ipt(node(), "-I", "FORWARD", "1", "-s", host(p.ip), "-p", "tcp", "-m", "multiport", "--dports", "8080,9090",
			"-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT", "--reject-with", "tcp-reset")
	}
	if chance(0.1) {
		p := pick()
		ipt(node(), "-I", "FORWARD", "1", "-s", host(p.ip), "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP")
	}
	if chance(0.05) {
		p := pick()
		ipt(node(), "-t", "raw", "-A", "PREROUTING", "-s", host(p.ip), "-j", "NOTRACK")
	}
	if chance(0.1) {
		p := pick()
		rd.Mutations = append(rd.Mutations, Mutation{Node: node(), Kind: "legacy",
			Argv: []string{f.Legacy(), "-w", "5", "-A", "FORWARD", "-s", host(p.ip), "-j", "DROP"}})
	}
	if chance(0.1) {
		p := pick()
		verdict := []string{"drop", "accept"}[r.IntN(2)]
		policy := []string{"accept", "drop"}[r.IntN(4)/3]
		rd.Mutations = append(rd.Mutations, Mutation{Node: node(), Kind: "nft", Text: fmt.Sprintf(
			"table inet twdiff {\n chain fwdcheck {\n  type filter hook forward priority %[1]d; policy %[2]s;\n  ct state established,related accept\n  %[3]s daddr %[4]s tcp dport %[5]d %[6]s\n  %[3]s saddr %[7]s %[3]s daddr %[7]s accept\n }\n}\n",
			[]int{-10, 10}[r.IntN(2)], policy, f.nft(), p.ip, lab.ServerPort, verdict, f.Cluster())})
	}
	for _, sc := range []struct {
		id   string
		p    float64
		vxon bool
	}{{"F1", 0.25, false}, {"F2", 0.08, false}, {"F6-route", 0.1, false}, {"F6-fdb", 0.1, true}, {"F6-neigh", 0.08, true}} {
		if f.V6 && strings.HasPrefix(sc.id, "F6") {
			continue // they break the IPv4 overlay; the IPv6 route is broken below
		}
		if sc.vxon && st.Backend != lab.BackendVXLAN {
			continue
		}
		if len(st.Nodes) < 2 && strings.HasPrefix(sc.id, "F6") {
			continue
		}
		if chance(sc.p) {
			rd.Mutations = append(rd.Mutations, Mutation{Node: node(), Kind: "scenario", Text: sc.id})
		}
	}

	if f.V6 {
		// IPv6's own F2 and F6-route: forwarding off, a peer's route gone.
		if chance(0.08) {
			rd.Mutations = append(rd.Mutations, Mutation{Node: node(), Kind: "ipt", Argv: []string{"sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"}})
		}
		if len(st.Nodes) > 1 && chance(0.1) {
			n, peer := st.Nodes[r.IntN(len(st.Nodes))], st.Nodes[r.IntN(len(st.Nodes))]
			if n.Name != peer.Name {
				rd.Mutations = append(rd.Mutations, Mutation{Node: n.Name, Kind: "ipt", Argv: []string{"ip", "-6", "route", "del", peer.IPv6Subnet}})
			}
		}
	}

	// Probes: to pods directly and to the Services (favouring Services).
	for i := 0; i < probes; i++ {
		from := pick()
		var to netip.AddrPort
		if chance(0.35) {
			to = netip.AddrPortFrom(pick().ip, lab.ServerPort)
		} else {
			s := rd.Services[r.IntN(len(rd.Services))]
			to = netip.AddrPortFrom(s.ClusterIP, uint16(s.Port))
		}
		rd.Probes = append(rd.Probes, Probe{From: from.name, To: to})
	}
	return rd
}

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
	// Kind is "ipt" (iptables-nft argv), "legacy" (iptables-legacy argv),
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

// podRef is a pod of the lab with its node.
type podRef struct {
	node, name string
	ip         netip.Addr
}

func pods(st *lab.State) []podRef {
	var out []podRef
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			out = append(out, podRef{n.Name, p.Name, netip.MustParseAddr(p.IP)})
		}
	}
	return out
}

// NewRound draws a random configuration for a lab (the randomness is all
// here, so a failing seed reproduces).
func NewRound(r *rand.Rand, st *lab.State, probes int) Round {
	ps := pods(st)
	pick := func() podRef { return ps[r.IntN(len(ps))] }
	node := func() string { return st.Nodes[r.IntN(len(st.Nodes))].Name }
	chance := func(p float64) bool { return r.Float64() < p }
	var rd Round

	// Services with random endpoints (some with none, some on a closed port).
	nsvc := 1 + r.IntN(3)
	for i := 0; i < nsvc; i++ {
		s := kubeproxy.Service{Namespace: "diff", Name: fmt.Sprintf("svc%d", i), PortName: "p",
			ClusterIP: netip.AddrFrom4([4]byte{10, 96, 5, byte(10 + i)}), Port: []int{80, 8080}[r.IntN(2)], Protocol: "tcp"}
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
		rd.Mutations = append(rd.Mutations, Mutation{Node: n, Kind: "ipt", Argv: append([]string{"iptables-nft"}, argv...)})
	}
	if chance(0.3) {
		n := node()
		ipt(n, "-P", "FORWARD", "DROP")
		switch r.IntN(4) {
		case 0:
			ipt(n, "-I", "FORWARD", "1", "-s", "10.244.0.0/16", "-d", "10.244.0.0/16", "-j", "ACCEPT")
		case 1:
			ipt(n, "-I", "FORWARD", "1", "-o", "cni0", "-j", "ACCEPT")
		case 2:
			ipt(n, "-I", "FORWARD", "1", "-i", "cni+", "-j", "ACCEPT")
		}
	}
	if chance(0.25) {
		p := pick()
		verdict := []string{"DROP", "REJECT"}[r.IntN(2)]
		ipt(node(), "-I", "FORWARD", "1", "-d", p.ip.String()+"/32", "-p", "tcp", "--dport", fmt.Sprint(lab.ServerPort), "-j", verdict)
	}
	if chance(0.2) {
		p := pick()
		ipt(node(), "-t", "mangle", "-A", "PREROUTING", "-s", p.ip.String()+"/32", "-j", "MARK", "--set-xmark", "0x4000/0x4000")
	}
	if chance(0.2) {
		p := pick()
		ipt(node(), "-t", "nat", "-I", "POSTROUTING", "1", "-s", p.ip.String()+"/32", "-d", "10.244.0.0/16", "-j", "MASQUERADE")
	}
	if chance(0.15) {
		p := pick()
		ipt(node(), "-I", "FORWARD", "1", "-s", p.ip.String()+"/32", "-p", "tcp", "-m", "multiport", "--dports", "8080,9090",
			"-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT", "--reject-with", "tcp-reset")
	}
	if chance(0.1) {
		p := pick()
		ipt(node(), "-I", "FORWARD", "1", "-s", p.ip.String()+"/32", "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP")
	}
	if chance(0.05) {
		p := pick()
		ipt(node(), "-t", "raw", "-A", "PREROUTING", "-s", p.ip.String()+"/32", "-j", "NOTRACK")
	}
	if chance(0.1) {
		p := pick()
		rd.Mutations = append(rd.Mutations, Mutation{Node: node(), Kind: "legacy",
			Argv: []string{"iptables-legacy", "-w", "5", "-A", "FORWARD", "-s", p.ip.String() + "/32", "-j", "DROP"}})
	}
	if chance(0.1) {
		p := pick()
		verdict := []string{"drop", "accept"}[r.IntN(2)]
		policy := []string{"accept", "drop"}[r.IntN(4)/3]
		rd.Mutations = append(rd.Mutations, Mutation{Node: node(), Kind: "nft", Text: fmt.Sprintf(
			"table inet twdiff {\n chain fwdcheck {\n  type filter hook forward priority %d; policy %s;\n  ct state established,related accept\n  ip daddr %s tcp dport %d %s\n  ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 accept\n }\n}\n",
			[]int{-10, 10}[r.IntN(2)], policy, p.ip, lab.ServerPort, verdict)})
	}
	for _, sc := range []struct {
		id   string
		p    float64
		vxon bool
	}{{"F1", 0.25, false}, {"F2", 0.08, false}, {"F6-route", 0.1, false}, {"F6-fdb", 0.1, true}, {"F6-neigh", 0.08, true}} {
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

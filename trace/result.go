package trace

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Request says which packet to trace.
type Request struct {
	// From is a pod name, a pod address, a node name or a node address.
	From string `json:"from"`
	// To is the destination address and Port its port (0 for icmp).
	To    netip.Addr `json:"to"`
	Port  uint16     `json:"port,omitempty"`
	Proto string     `json:"proto"` // tcp (default), udp, sctp, icmp
	// Sport is the client's source port (default 40000).
	Sport uint16 `json:"sport,omitempty"`
}

// Protocols are the protocols a trace can follow.
var Protocols = []string{"tcp", "udp", "sctp", "icmp"}

// Validate checks a request's protocol (Protocols; "" is tcp), its port
// (needed except for icmp) and that the destination is an IPv4 or IPv6
// address.
func (r Request) Validate() error {
	switch p := strings.ToLower(r.Proto); p {
	case "", "tcp", "udp", "sctp":
		if r.Port == 0 {
			return fmt.Errorf("--to %s: --proto %s needs a port (--to IP:PORT)", r.To, cmp.Or(p, "tcp"))
		}
	case "icmp":
	default:
		return fmt.Errorf("--proto %q: want %s", r.Proto, strings.Join(Protocols, ", "))
	}
	if !r.To.IsValid() || r.To.Is4In6() {
		return fmt.Errorf("--to %s: want an IPv4 or IPv6 address (IPv6 with a port: --to [ADDR]:PORT)", r.To)
	}
	return nil
}

// Outcome kinds.
const (
	// Established: the packet reached Receiver and the reply came back to
	// the client from the address it called (TCP handshake completes; UDP
	// and ICMP answered).
	Established = "established"
	// Dropped: the packet was dropped on the way (Where says by what).
	Dropped = "dropped"
	// Refused: rejected with an ICMP port-unreachable or a TCP RST (or a
	// local socket that does not exist): the client sees "connection refused".
	Refused = "refused"
	// Unreachable: an ICMP host/net unreachable comes back (no route,
	// unreachable/prohibit route, forwarding off).
	Unreachable = "unreachable"
	// Reset: the reply reached the client from an address it did not call
	// (no reverse NAT); the client answers RST and the call times out.
	Reset = "reset"
	// ReplyDropped: the packet arrived, the reply was lost on the way back.
	ReplyDropped = "reply-dropped"
	// Lost: the packet left the modelled nodes (no snapshot has its next hop).
	Lost = "lost"
	// Local: delivered to a socket on a node itself (whether something
	// listens there is not known).
	Local = "local"
)

// Outcome is how one path ends.
type Outcome struct {
	Kind string `json:"kind"`
	// Receiver is the pod (or node, for Local) that got the packet.
	Receiver string `json:"receiver,omitempty"`
	// SeenSrc is the source address and port as the receiver saw them.
	SeenSrc netip.AddrPort `json:"seenSrc,omitzero"`
	// SeenDst is the destination as the receiver saw it.
	SeenDst netip.AddrPort `json:"seenDst,omitzero"`
	// ReplyFrom is the source of the reply as the client saw it.
	ReplyFrom netip.AddrPort `json:"replyFrom,omitzero"`
	// Where says where the packet (or the reply) was dropped and by what.
	Where string `json:"where,omitempty"`
	// Cause says in one word what ended the path (where the decision was
	// made), for programs: Where is for people and may be reworded.
	Cause Cause `json:"cause,omitempty"`
	// Failure names the FAILURES.md entry and doctor check the path matches.
	Failure *Failure `json:"failure,omitempty"`
}

// Cause is what ended a path, set where the simulator decides it.
type Cause string

// Causes.
const (
	// CauseNetfilter: a netfilter rule or chain policy dropped or rejected
	// the packet (the path's last hook step names it).
	CauseNetfilter Cause = "netfilter"
	// CauseForwardingOff: net.ipv4.ip_forward=0 on a node that had to forward.
	CauseForwardingOff Cause = "ip-forward-off"
	// CauseRoute: no route, or a blackhole, unreachable or prohibit route.
	CauseRoute Cause = "route"
	// CauseNoNeighbour: no neighbour entry (VTEP MAC) for a vxlan next hop.
	CauseNoNeighbour Cause = "no-neighbour"
	// CauseStaleNeighbour: the neighbour entry holds a MAC that is not the
	// peer's VTEP MAC.
	CauseStaleNeighbour Cause = "stale-neighbour"
	// CauseNoFDB: no FDB entry (underlay address) for the VTEP MAC.
	CauseNoFDB Cause = "no-fdb"
	// CauseLocalRoute: accepted by a local route on a non-loopback device
	// (kube-ipvs0).
	CauseLocalRoute Cause = "local-route"
	// CauseRouteLocalnet: a loopback address on another device without
	// net.ipv4.conf.*.route_localnet=1 (martian).
	CauseRouteLocalnet Cause = "route-localnet"
	// CauseLoopbackV6: ::1 as the source or destination of a packet on a
	// device other than the loopback one, which IPv6 never allows (no
	// sysctl changes it).
	CauseLoopbackV6 Cause = "ipv6-loopback"
)

// Failure ties a path to FAILURES.md and a doctor check.
type Failure struct {
	ID    string `json:"id"`    // "F1"
	Check string `json:"check"` // "TW002"
	Why   string `json:"why"`
}

// Path is one way the packet can go (statistic rules fork paths).
type Path struct {
	// Prob is the probability of this path (1 when nothing was random).
	Prob    float64 `json:"prob"`
	Forward []Step  `json:"forward"`
	Reply   []Step  `json:"reply,omitempty"`
	Outcome Outcome `json:"outcome"`
	// Uncertain lists what could not be evaluated on this path, naming rules.
	Uncertain []string `json:"uncertain,omitempty"`
	// Assumes lists the orders of equal-priority base chains this path
	// takes, when the order changes the outcome (Result.OrderUnknown says
	// why they are not known). Paths with different Assumes are
	// alternatives, not branches of one packet: Prob is the probability
	// given those orders.
	Assumes []string `json:"assumes,omitempty"`

	// bridgedNoNF lists nodes where the reply was bridged without the IP hooks.
	bridgedNoNF []string
	assume      []orderChoice
	decided     *nfDecision
}

// nfDecision is the netfilter step that dropped or rejected a packet.
type nfDecision struct {
	step    Step
	verdict string // drop, reject
}

// Result is a trace: every path with its probability.
type Result struct {
	Request Request `json:"request"`
	// Client is who sends ("node1-a", "node1").
	Client string `json:"client"`
	// Packet is the first packet as the client sends it.
	Packet Packet  `json:"packet"`
	Paths  []*Path `json:"paths"`
	// Uncertain is true when any path has something that could not be evaluated.
	Uncertain bool `json:"uncertain"`
	// Notes are caveats on the whole trace.
	Notes []string `json:"notes,omitempty"`
	// OrderUnknown names every group of base chains that hook in at the
	// same hook and priority where the order changed the outcome: the
	// kernel's order is not known, so every order is reported (each path
	// says which it assumes).
	OrderUnknown []string `json:"orderUnknown,omitempty"`
}

// Summary is one distinct outcome with its total probability.
type Summary struct {
	Outcome
	Prob float64 `json:"prob"`
	// Assumes are the orders of equal-priority base chains the outcome
	// depends on (empty: whatever the order). Prob is given those orders.
	Assumes []string `json:"assumes,omitempty"`
}

// Summaries merges paths with the same outcome (kind, receiver, source seen,
// where) under the same assumed hook orders: the outcomes that hold
// whatever the order first, then per assumed order; most likely first.
func (r *Result) Summaries() []Summary {
	var out []Summary
	for _, p := range r.Paths {
		found := false
		for i := range out {
			o := &out[i]
			if o.Kind == p.Outcome.Kind && o.Receiver == p.Outcome.Receiver && o.SeenSrc.Addr() == p.Outcome.SeenSrc.Addr() && o.SeenDst == p.Outcome.SeenDst && o.Where == p.Outcome.Where && slices.Equal(o.Assumes, p.Assumes) {
				o.Prob += p.Prob
				found = true
				break
			}
		}
		if !found {
			out = append(out, Summary{Outcome: p.Outcome, Prob: p.Prob, Assumes: p.Assumes})
		}
	}
	slices.SortStableFunc(out, func(a, b Summary) int {
		if c := slices.Compare(a.Assumes, b.Assumes); c != 0 {
			return c
		}
		switch {
		case a.Prob > b.Prob:
			return -1
		case a.Prob < b.Prob:
			return 1
		}
		return 0
	})
	return out
}

// Failures lists the distinct FAILURES.md entries the paths match.
func (r *Result) Failures() []Failure {
	var out []Failure
	for _, p := range r.Paths {
		if f := p.Outcome.Failure; f != nil && !slices.ContainsFunc(out, func(x Failure) bool { return x.ID == f.ID && x.Check == f.Check }) {
			out = append(out, *f)
		}
	}
	return out
}

func (o Outcome) String() string {
	switch o.Kind {
	case Established:
		return fmt.Sprintf("established with %s (it sees the client as %s)", o.Receiver, o.SeenSrc.Addr())
	case Local:
		return fmt.Sprintf("delivered locally on %s to %s (answered only if a socket listens there)", o.Receiver, o.SeenDst)
	case Reset:
		return fmt.Sprintf("reached %s, but the reply comes from %s, not the address called: the client resets it and the call hangs", o.Receiver, o.ReplyFrom)
	case ReplyDropped:
		return fmt.Sprintf("reached %s (sees %s), reply lost: %s", o.Receiver, o.SeenSrc.Addr(), o.Where)
	}
	return fmt.Sprintf("%s: %s", o.Kind, strings.TrimSpace(o.Where))
}

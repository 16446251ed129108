package lab

import (
	"context"
	"fmt"
	"github.com/twillnet/twill/checkid"
	"io"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Scenario is one way to break a node, taken from FAILURES.md, with the
// doctor check that should find it.
type Scenario struct {
	// ID is the canonical name ("F1", "F4-split", "F6-fdb").
	ID string
	// Alias is a second, descriptive name ("bridge-nf"), may be empty.
	Alias string
	// Section is the FAILURES.md section ("F1").
	Section string
	// Check is the doctor check ID it should produce ("TW002").
	Check string
	// Summary says in one line what break does.
	Summary string
	// Effect says what a user sees afterwards.
	Effect string
	// layer groups scenarios that one fix resets together ("nft": the
	// iptables-nft rules are re-rendered as a whole).
	layer     string
	needsPeer bool
	vxlanOnly bool
	// ipv6Twin: the scenario breaks its IPv6 twin too on a lab with IPv6,
	// so it runs in IPv6-only labs.
	ipv6Twin bool
	apply    func(ctx context.Context, st *State, n, peer *Node) error
	undo     func(ctx context.Context, st *State, n, peer *Node) error
}

// Scenarios lists every scenario in FAILURES.md order.
func Scenarios() []Scenario { return scenarios }

var scenarios = []Scenario{
	{ID: "F1", Alias: "bridge-nf", Section: "F1", Check: checkid.BridgeNFCallIptables, layer: "sysctl",
		Summary:  "net.bridge.bridge-nf-call-iptables=0 in the node (and its IPv6 twin bridge-nf-call-ip6tables=0 on a lab with IPv6)",
		Effect:   "a pod calling a Service whose endpoint is on the same bridge times out (try 10.96.1.<i>:80 from node<i>-a)",
		ipv6Twin: true, apply: bridgeNFScenario("0"), undo: bridgeNFScenario("1")},
	{ID: "F2", Alias: "ip-forward", Section: "F2", Check: checkid.IPForward, layer: "sysctl",
		Summary:  "net.ipv4.ip_forward=0 in the node (and its IPv6 twin net.ipv6.conf.all.forwarding=0 on a lab with IPv6)",
		Effect:   "nothing crosses the node: its pods cannot reach other nodes' pods",
		ipv6Twin: true, apply: forwardScenario("0"), undo: forwardScenario("1")},
	{ID: "F3", Alias: "forward-drop", Section: "F3", Check: checkid.ForwardPolicyDrop, layer: "nft",
		Summary:  "Docker-style filter FORWARD policy DROP with DOCKER-USER/DOCKER/DOCKER-ISOLATION chains (iptables-nft; ip6tables-nft too on a lab with IPv6)",
		Effect:   "new connections forwarded by the node are dropped: other nodes' pods cannot reach its pods",
		ipv6Twin: true, apply: breakForwardDrop, undo: fixForwardDrop},
	{ID: "F4-split", Section: "F4", Check: checkid.IptablesBackendsSplit, layer: "legacy",
		Summary: "a copy of KUBE-FORWARD written through iptables-legacy, so both backends hold rules",
		Effect:  "two rule sets run in an undefined order; nothing visibly breaks yet",
		apply:   breakSplit, undo: fixSplit},
	{ID: "F4-corrupt", Section: "F4", Check: checkid.KubeRuleLostMatch, layer: "nft",
		Summary: "iptables-save | edit | iptables-restore drops the mark matches: KUBE-FIREWALL drops all, KUBE-FORWARD accepts all",
		Effect:  "the node drops its own traffic (KUBE-FIREWALL is drop-all)",
		apply:   breakCorrupt, undo: fixFirewall},
	{ID: "F5a", Alias: "no-dnat", Section: "F5", Check: checkid.ServiceVIPNotTranslated, layer: "nft",
		Summary:  "the KUBE-SERVICES rule of default/kubernetes (10.96.0.1:443) is deleted: no DNAT (on a lab with IPv6 its IPv6 twin [fd00:96::1]:443 in ip6tables too; etcd store)",
		Effect:   "10.96.0.1:443 is not translated; calls to it time out",
		ipv6Twin: true, apply: breakNoDNAT, undo: fixFirewall},
	{ID: "F6-fdb", Section: "F6", Check: checkid.VxlanFDB, layer: "overlay", needsPeer: true, vxlanOnly: true,
		Summary:  "the FDB entry of one peer's VTEP MAC on twill.1 is deleted (and on twill-v6.1 on a lab with IPv6)",
		Effect:   "pods of this node cannot reach the peer's pods (and back)",
		ipv6Twin: true, apply: breakFDB, undo: fixPeer},
	{ID: "F6-neigh", Section: "F6", Check: checkid.VxlanNeighbour, layer: "overlay", needsPeer: true, vxlanOnly: true,
		Summary:  "one peer's neighbour entry on twill.1 gets a stale MAC, as after the peer rebooted (and on twill-v6.1 on a lab with IPv6)",
		Effect:   "pods of this node cannot reach the peer's pods",
		ipv6Twin: true, apply: breakNeigh, undo: fixPeer},
	{ID: "F6-route", Section: "F6", Check: checkid.OverlayRoute, layer: "overlay", needsPeer: true,
		Summary:  "the route to one peer's pod subnet is deleted (each family's on a lab with IPv6)",
		Effect:   "pods of this node cannot reach the peer's pods",
		ipv6Twin: true, apply: breakRoute, undo: fixPeer},
	{ID: "F6-mtu", Section: "F6", Check: checkid.PodMTU, layer: "mtu", vxlanOnly: true,
		Summary: "the node's pod veths (both ends) and cni0 get MTU 1500 while twill.1 stays 1450",
		Effect:  "small packets pass, large ones across nodes are lost",
		apply:   setPodMTU(underlayMTU), undo: setPodMTU(PodMTU(BackendVXLAN))},
}

// LookupScenario finds a scenario by ID or alias, ignoring case.
func LookupScenario(name string) (Scenario, error) {
	for _, s := range scenarios {
		if strings.EqualFold(name, s.ID) || (s.Alias != "" && strings.EqualFold(name, s.Alias)) {
			return s, nil
		}
	}
	var ids []string
	for _, s := range scenarios {
		ids = append(ids, s.ID)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q: want one of %s (see `twill lab scenarios`)", name, strings.Join(ids, ", "))
}

// Break applies scenario to node of lab name and records it in state.json.
// Applying a scenario that is already applied does nothing.
func Break(ctx context.Context, name, scenario, node string, out io.Writer) (Applied, error) {
	if out == nil {
		out = io.Discard
	}
	st, s, n, err := prepare(name, scenario, node)
	if err != nil {
		return Applied{}, err
	}
	for _, a := range st.Scenarios {
		if a.Scenario == s.ID && a.Node == n.Name {
			fmt.Fprintf(out, "%s is already applied on %s; nothing to do.\n", s.ID, n.Name)
			return a, nil
		}
	}
	peer, err := st.peerOf(s, n)
	if err != nil {
		return Applied{}, err
	}
	if st.AgentMode() {
		if err := pauseForScenario(n, out); err != nil {
			return Applied{}, err
		}
	}
	apply := s.apply
	if st.RealMode() {
		apply = func(ctx context.Context, st *State, n, _ *Node) error { return breakReal(ctx, st, s, n, out) }
	}
	if err := apply(ctx, st, n, peer); err != nil {
		return Applied{}, fmt.Errorf("break %s on %s: %w", s.ID, n.Name, err)
	}
	a := Applied{Scenario: s.ID, Node: n.Name, At: time.Now().UTC().Truncate(time.Second)}
	if peer != nil {
		a.Peer = peer.Name
	}
	st.Scenarios = append(st.Scenarios, a)
	sort.SliceStable(st.Scenarios, func(i, j int) bool { return st.Scenarios[i].Node < st.Scenarios[j].Node })
	if err := st.save(); err != nil {
		return Applied{}, err
	}
	fmt.Fprintf(out, "Broke %s on %s: %s.\nExpect: %s.\n`twill doctor` should report %s; undo with `twill lab fix %s %s`.\n",
		s.ID, n.Name, s.Summary, s.Effect, s.Check, s.ID, n.Name)
	return a, nil
}

// Fix restores the healthy state that scenario broke on node (whether or not
// it is recorded as applied) and removes it from state.json. Fixing one
// iptables scenario re-renders the node's rules, so other iptables scenarios
// still recorded on that node are applied again afterwards.
func Fix(ctx context.Context, name, scenario, node string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	st, s, n, err := prepare(name, scenario, node)
	if err != nil {
		return err
	}
	peer, err := st.peerOf(s, n)
	if err != nil {
		return err
	}
	if st.RealMode() {
		return fixRealScenario(ctx, st, s, n, out)
	}
	if err := s.undo(ctx, st, n, peer); err != nil {
		return fmt.Errorf("fix %s on %s: %w", s.ID, n.Name, err)
	}
	was := st.dropApplied(s.ID, n.Name)
	kept := st.Scenarios
	for _, a := range kept {
		other, _ := LookupScenario(a.Scenario)
		if a.Node == n.Name && other.layer == s.layer && s.layer == "nft" {
			p, _ := st.peerOf(other, n)
			if err := other.apply(ctx, st, n, p); err != nil {
				return fmt.Errorf("fix %s on %s: re-apply %s: %w", s.ID, n.Name, other.ID, err)
			}
		}
	}
	if err := st.save(); err != nil {
		return err
	}
	if was {
		fmt.Fprintf(out, "Fixed %s on %s.\n", s.ID, n.Name)
	} else {
		fmt.Fprintf(out, "%s was not recorded as broken on %s; restored its healthy state anyway.\n", s.ID, n.Name)
	}
	if st.AgentMode() {
		return resumeAfterScenarios(st, n, out)
	}
	return nil
}

// pauseForScenario stops node n's agent (SIGSTOP) so that it does not
// repair the failure about to be applied: repairing drift is its job.
func pauseForScenario(n *Node, out io.Writer) error {
	switch {
	case !n.Agent.Alive():
		fmt.Fprintf(out, "(%s's agent is not running, so nothing will repair this.)\n", n.Name)
		return nil
	case n.Agent.Paused():
		return nil
	}
	if err := signalAgent(n, syscall.SIGSTOP); err != nil {
		return err
	}
	fmt.Fprintf(out, "Paused %s's agent so the failure stays; `twill lab fix` resumes it.\n", n.Name)
	return nil
}

// resumeAfterScenarios resumes node n's agent (SIGCONT) once no scenario
// is recorded on n any more.
func resumeAfterScenarios(st *State, n *Node, out io.Writer) error {
	var left []string
	for _, a := range st.Scenarios {
		if a.Node == n.Name {
			left = append(left, a.Scenario)
		}
	}
	if !n.Agent.Paused() {
		return nil
	}
	if len(left) > 0 {
		fmt.Fprintf(out, "%s's agent stays paused: %s still applied there.\n", n.Name, strings.Join(left, ", "))
		return nil
	}
	if err := signalAgent(n, syscall.SIGCONT); err != nil {
		return err
	}
	fmt.Fprintf(out, "Resumed %s's agent; it repairs drift again.\n", n.Name)
	return nil
}

// prepare loads the lab and resolves the scenario and node.
func prepare(name, scenario, node string) (*State, Scenario, *Node, error) {
	if err := requireRoot(); err != nil {
		return nil, Scenario{}, nil, err
	}
	s, err := LookupScenario(scenario)
	if err != nil {
		return nil, Scenario{}, nil, err
	}
	st, err := Load(name)
	if err != nil {
		return nil, Scenario{}, nil, err
	}
	n, err := st.node(node)
	if err != nil {
		return nil, Scenario{}, nil, err
	}
	if _, ok := realScenarios[s.ID]; st.RealMode() && !ok {
		return nil, Scenario{}, nil, fmt.Errorf("lab %s: scenario %s is %w yet; these are: %s (break the node by hand with `twill lab exec %s -- ...`; `twill doctor` works as usual)",
			st.Name, s.ID, errNotReal, strings.Join(realScenarioIDs(), ", "), n.Name)
	}
	if s.vxlanOnly && st.Backend != BackendVXLAN {
		return nil, Scenario{}, nil, fmt.Errorf("scenario %s needs the vxlan backend; lab %s uses %s (start one with --backend vxlan)", s.ID, st.Name, st.Backend)
	}
	if !st.HasIPv4() && !s.ipv6Twin {
		return nil, Scenario{}, nil, fmt.Errorf("scenario %s breaks IPv4 state; lab %s is IPv6 only (scenarios run in ipv4 and dual labs; %s also in IPv6-only ones)", s.ID, st.Name, strings.Join(ipv6TwinIDs(), ", "))
	}
	return st, s, n, nil
}

// peerOf is the node whose overlay state a peer scenario breaks on n: the
// lowest-numbered other node.
func (st *State) peerOf(s Scenario, n *Node) (*Node, error) {
	if !s.needsPeer {
		return nil, nil
	}
	for i := range st.Nodes {
		if st.Nodes[i].Index != n.Index {
			return &st.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("scenario %s needs a second node; lab %s has one (use --nodes 2 or more)", s.ID, st.Name)
}

// ScenarioTable writes the scenario list for people.
func ScenarioTable(w io.Writer) {
	fmt.Fprintf(w, "%-11s %-13s %-9s %-7s %s\n", "SCENARIO", "ALIAS", "FAILURES", "DOCTOR", "WHAT `lab break` DOES")
	for _, s := range scenarios {
		alias := s.Alias
		if alias == "" {
			alias = "-"
		}
		fmt.Fprintf(w, "%-11s %-13s %-9s %-7s %s\n", s.ID, alias, s.Section, s.Check, s.Summary)
	}
}

// ipv6TwinIDs are the scenarios that also run in IPv6-only labs.
func ipv6TwinIDs() []string {
	var ids []string
	for _, s := range scenarios {
		if s.ipv6Twin {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// dropApplied removes scenario id on node from the lab's applied scenarios
// and tells whether it was there.
func (st *State) dropApplied(id, node string) bool {
	var kept []Applied
	was := false
	for _, a := range st.Scenarios {
		if a.Scenario == id && a.Node == node {
			was = true
			continue
		}
		kept = append(kept, a)
	}
	st.Scenarios = kept
	return was
}

package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/netfilter"
)

// podProbes returns the two forwarded flows every pod network needs: a new
// connection from a pod on another node to a pod here, and back. ok is false
// when the pod network is unknown.
func (e *env) podProbes() (probes []probe, ok bool) {
	if !e.cluster.IsValid() || !e.cluster.Addr().Is4() {
		return nil, false
	}
	br := e.podBridge()
	if br == "" {
		br = "cni0"
	}
	local := e.subnet
	if !local.IsValid() {
		for _, p := range e.addrsOf(br) {
			if e.cluster.Contains(p.Addr()) {
				local = p.Masked()
			}
		}
	}
	if !local.IsValid() {
		return nil, false
	}
	localPod := local.Addr().Next().Next()
	// A remote pod: behind a route into the cluster network that is not ours.
	remotePod, remoteDev := netip.Addr{}, ""
	for _, r := range e.snap.Routes {
		if r.Table == 254 && r.Dst.IsValid() && r.Dst.Addr().Is4() && e.cluster.Contains(r.Dst.Addr()) && !r.Dst.Overlaps(local) && r.Dev != "" {
			remotePod, remoteDev = r.Dst.Masked().Addr().Next().Next(), r.Dev
			break
		}
	}
	if !remotePod.IsValid() {
		// No peer yet: synthesize one just past our subnet.
		a := local.Masked().Addr()
		for range 1 << (32 - local.Bits()) {
			a = a.Next()
		}
		remotePod = a.Next().Next()
		if !e.cluster.Contains(remotePod) {
			remotePod = e.cluster.Masked().Addr().Next().Next()
		}
		remoteDev = "eth0"
		if vx := e.vxlanLinks(); len(vx) > 0 {
			remoteDev = vx[0].Name
		}
	}
	locals := map[netip.Addr]bool{}
	for _, a := range e.snap.Addrs {
		locals[a.Prefix.Addr()] = true
	}
	in := probe{src: remotePod, dst: localPod, proto: "tcp", dport: 8080, in: remoteDev, out: br, ctstate: "NEW", local: locals}
	out := probe{src: localPod, dst: remotePod, proto: "tcp", dport: 8080, in: br, out: remoteDev, ctstate: "NEW", local: locals}
	return []probe{in, out}, true
}

func checkForwardIptables(e *env) ([]Finding, string) {
	if why := e.iptParseProblem(); why != "" {
		return nil, why
	}
	bks := e.iptBackends()
	if len(bks) == 0 {
		return nil, e.iptUnavailable()
	}
	probes, ok := e.podProbes()
	if !ok {
		return nil, "pod network unknown (no subnet file and no pod bridge address): pass --cluster-cidr"
	}
	var out []Finding
	for _, b := range bks {
		filter := b.rs.Table("filter")
		if filter == nil {
			continue
		}
		var evidence []string
		var blocked bool
		var decided verdict
		for _, p := range probes {
			v, err := evalBuiltin(filter, "FORWARD", p)
			if err != nil {
				evidence = append(evidence, fmt.Sprintf("iptables-%s: %v", b.name, err))
				continue
			}
			if v.action == "ACCEPT" {
				continue
			}
			blocked, decided = true, v
			evidence = append(evidence, fmt.Sprintf("iptables-%s: %s is dropped by %s", b.name, p, v.describe("filter")))
			if len(v.path) > 0 {
				evidence = append(evidence, "  via "+strings.Join(v.path, " -> "))
			}
			for _, u := range v.uncertain {
				evidence = append(evidence, fmt.Sprintf("  not evaluated (assumed not to match): %s/%s rule %d: %s", "filter", u.Chain, u.Num, u.Text))
			}
		}
		if !blocked {
			continue
		}
		chain := forwardAcceptChain(filter)
		cidr := e.cluster.String()
		comment := "twill: accept the pod network (doctor --fix)"
		f := Finding{
			Severity: Error,
			Failure:  "F3",
			Title:    fmt.Sprintf("iptables-%s filter FORWARD drops pod traffic (%s)", b.name, shortVerdict(decided)),
			Evidence: evidence,
			Explanation: "New connections between pods on different nodes (and from outside to pods) are forwarded by this node and hit a DROP. " +
				"Docker sets the FORWARD policy to DROP; kube-proxy's KUBE-FORWARD only accepts marked or established packets. Local traffic still works, so it looks like a network partition between nodes.",
			Fix: fmt.Sprintf("accept the pod network where the drop is: iptables-%[1]s -I %[2]s 1 -s %[3]s -j ACCEPT; iptables-%[1]s -I %[2]s 1 -d %[3]s -j ACCEPT (twill agent owns and re-asserts these)", b.name, chain, cidr),
			Actions: []Action{
				{Kind: ActIptables, Backend: b.name, Table: "filter", Chain: chain, Rule: []string{"-d", cidr, "-m", "comment", "--comment", comment, "-j", "ACCEPT"}},
				{Kind: ActIptables, Backend: b.name, Table: "filter", Chain: chain, Rule: []string{"-s", cidr, "-m", "comment", "--comment", comment, "-j", "ACCEPT"}},
			},
		}
		out = append(out, f)
	}
	return out, ""
}

func shortVerdict(v verdict) string {
	if v.rule == nil {
		return fmt.Sprintf("chain %s policy %s", v.chain, v.action)
	}
	return fmt.Sprintf("%s rule %d, -j %s", v.chain, v.rule.Num, v.action)
}

// forwardAcceptChain picks the chain where an accept must go: Docker's
// DOCKER-USER when FORWARD jumps there first (Docker rewrites FORWARD but
// leaves DOCKER-USER alone), else FORWARD itself.
func forwardAcceptChain(filter *netfilter.Table) string {
	fwd := filter.Chain("FORWARD")
	if fwd != nil && filter.Chain("DOCKER-USER") != nil {
		for _, r := range fwd.Rules {
			if r.Target == "DOCKER-USER" && !r.Source.Set() && !r.Destination.Set() && len(r.Matches) == 0 {
				return "DOCKER-USER"
			}
			if r.Target == "ACCEPT" || r.Target == "DROP" || r.Target == "REJECT" {
				break
			}
		}
	}
	return "FORWARD"
}

// iptUnavailable explains why no iptables backend could be read.
func (e *env) iptUnavailable() string {
	var why []string
	for _, b := range []struct {
		name string
		err  string
	}{{"iptables-legacy", e.snap.Iptables.Legacy.Err}, {"iptables-nft", e.snap.Iptables.NFT.Err}} {
		if err, ok := e.parseErr[b.name]; ok {
			why = append(why, fmt.Sprintf("%s: %v", b.name, err))
		} else if b.err != "" {
			why = append(why, fmt.Sprintf("%s: %s", b.name, b.err))
		} else {
			why = append(why, b.name+": not captured")
		}
	}
	return "no iptables rules could be read (" + strings.Join(why, "; ") + ")"
}

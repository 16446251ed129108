package trace

import (
	"cmp"
	"fmt"
	"github.com/twillnet/twill/nodestate"
	"net/netip"
	"slices"
	"strings"
)

// maxPaths bounds how many paths one trace follows; maxHops bounds one path.
const (
	maxPaths = 10000
	maxHops  = 64
)

// flow is one path under construction.
type flow struct {
	prob      float64
	steps     []Step
	pkt       Packet
	ct        conntrack
	uncertain []string
	hops      int

	reply bool
	ack   bool // the client's handshake ACK (third leg), after the reply
	// rejectKind is set while a REJECT's answer travels to the client
	// (Refused or Unreachable); icmpKey is the tuple an ICMP error carries.
	rejectKind string
	icmpKey    *tuple
	// final marks an outcome decided at the client (not a loss on the way).
	final   bool
	fwd     []Step  // forward steps, once the reply is traced
	seen    Outcome // what the receiver saw (during the reply)
	client  string
	first   Packet // the client's first packet
	srcPod  *Pod
	srcHost *Host
	// bridgedNoNF records nodes where the reply was bridged without the
	// iptables hooks (for F1).
	bridgedNoNF []string
	pass        ctPass
	// assume are the orders of equal-priority base chains this path took
	// (see runTied).
	assume []orderChoice
	// decided is the netfilter step that dropped or rejected the packet
	// (set with Cause CauseNetfilter).
	decided *nfDecision
}

func (f *flow) clone() *flow {
	n := *f
	n.steps = slices.Clip(f.steps)
	n.uncertain = slices.Clip(f.uncertain)
	n.bridgedNoNF = slices.Clip(f.bridgedNoNF)
	n.assume = slices.Clip(f.assume)
	n.ct = f.ct.clone()
	return &n
}

func (f *flow) add(s Step) {
	if s.Packet == nil {
		p := f.pkt
		s.Packet = &p
	}
	f.steps = append(f.steps, s)
}

// run is one trace in progress.
type run struct {
	w     *World
	paths []*Path
	// walks counts hook evaluations: a trace that forks without end is cut.
	walks int
}

// maxWalks bounds the hook evaluations of one trace.
const maxWalks = 20000

func (r *run) finish(f *flow, o Outcome) {
	if len(r.paths) >= maxPaths {
		return
	}
	if f.reply && !f.final && o.Kind != Established && o.Kind != Reset && o.Kind != ReplyDropped && o.Receiver == "" {
		seen := f.seen
		where := o.Where
		if f.rejectKind != "" {
			seen.Kind, seen.Where = Dropped, "the answer to the client was lost: "+where
		} else if f.ack {
			seen.Kind, seen.Where = Dropped, "the client's handshake ACK was lost: "+where+" (the client thinks it is connected; the server never accepts)"
		} else {
			seen.Kind, seen.Where = ReplyDropped, where
		}
		seen.Cause = o.Cause
		o = seen
	}
	p := &Path{Prob: f.prob, Outcome: o, Uncertain: f.uncertain, bridgedNoNF: f.bridgedNoNF, assume: f.assume, decided: f.decided}
	for _, c := range f.assume {
		p.Assumes = append(p.Assumes, c.String())
	}
	if f.reply {
		p.Forward, p.Reply = f.fwd, f.steps
	} else {
		p.Forward = f.steps
	}
	r.paths = append(r.paths, p)
}

// Trace simulates req through the world and returns every path.
func (w *World) Trace(req Request) (*Result, error) {
	if req.Proto == "" {
		req.Proto = "tcp"
	}
	req.Proto = strings.ToLower(req.Proto)
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.To.Is6() != w.isV6 {
		// The other family's half of the nodes answers.
		switch {
		case w.isV6:
			return nil, fmt.Errorf("--to %s: an IPv4 address in the IPv6 half of the world (trace it with the World NewWorld returned)", req.To)
		case w.v6 == nil:
			return nil, fmt.Errorf("--to %s: no node of this trace has a global IPv6 address, so nothing routes IPv6 (snapshots without IPv6)", req.To)
		}
		return w.v6.Trace(req)
	}
	if req.Proto == "icmp" {
		req.Port = 0
	}
	if req.Sport == 0 && req.Proto != "icmp" {
		req.Sport = 40000
	}
	f := &flow{prob: 1, ct: conntrack{}}
	f.pkt = Packet{Dst: req.To, Proto: req.Proto, Sport: req.Sport, Dport: req.Port}
	switch req.Proto {
	case "tcp":
		f.pkt.Flags = "SYN"
	case "sctp":
		f.pkt.Flags = "INIT"
	case "icmp":
		f.pkt.Flags = "echo-request"
	}
	res := &Result{Request: req}
	rn := &run{w: w}
	pod, host, err := w.resolveFrom(req.From)
	if err != nil {
		return nil, err
	}
	switch {
	case pod != nil:
		f.pkt.Src = pod.IP.Addr()
		f.srcPod, f.client = pod, pod.Label()
		if pod.Synthesized {
			res.Notes = append(res.Notes, fmt.Sprintf("%s is not a known pod: modelled as a pod on %s's %s (address, default route via %s)", pod.IP.Addr(), pod.Node, pod.Bridge, pod.Gateway))
		}
		f.first = f.pkt
		res.Client, res.Packet = f.client, f.pkt
		rn.podSend(f, pod)
	default:
		f.srcHost, f.client = host, host.Name
		rt := host.lookup(f.pkt, "")
		f.pkt.Src = rt.src
		if !f.pkt.Src.IsValid() {
			f.pkt.Src = host.primaryAddr("", f.pkt.Dst)
		}
		if a, err := netip.ParseAddr(req.From); err == nil && host.local[a] != "" {
			f.pkt.Src = a
		}
		f.first = f.pkt
		res.Client, res.Packet = f.client, f.pkt
		rn.localOut(f, host)
	}
	res.Paths = rn.paths
	for _, p := range res.Paths {
		if len(p.Uncertain) > 0 {
			res.Uncertain = true
		}
		for _, c := range p.assume {
			if t := c.tie(); !slices.Contains(res.OrderUnknown, t) {
				res.OrderUnknown = append(res.OrderUnknown, t)
			}
		}
		p.Outcome.Failure = diagnose(w, res, p)
	}
	for _, h := range w.Hosts {
		res.Notes = append(res.Notes, h.Warnings...)
	}
	return res, nil
}

// resolveFrom finds the sender: a pod (by name or address) or a node (by
// name or one of its addresses).
func (w *World) resolveFrom(from string) (*Pod, *Host, error) {
	if p := w.PodByName(from); p != nil {
		return p, nil, nil
	}
	if h := w.byName[from]; h != nil {
		return nil, h, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(from, "["), "]"))
	if err != nil {
		return nil, nil, fmt.Errorf("--from %q: not a pod, node or address of this trace (pods: %s; nodes: %s)", from, podNames(w), strings.Join(w.hostNames(), ", "))
	}
	if h, _ := w.hostOwning(a); h != nil {
		return nil, h, nil
	}
	if p := w.podFor(a); p != nil {
		return p, nil, nil
	}
	if a.Is6() != w.isV6 {
		return nil, nil, fmt.Errorf("--from %s and --to are of different IP families: a packet has one (use the pod's or node's name, or its address of the --to family)", a)
	}
	return nil, nil, fmt.Errorf("--from %s: no node has this address and it is in no node's pod bridge subnet", a)
}

func podNames(w *World) string {
	var n []string
	for _, p := range w.Pods {
		n = append(n, p.Name)
	}
	if len(n) == 0 {
		return "none known"
	}
	return strings.Join(n, ", ")
}

func (r *run) tooLong(f *flow) bool {
	f.hops++
	if f.hops > maxHops {
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("more than %d hops: a routing loop", maxHops)})
		return true
	}
	return false
}

// podSend: the pod's own routing (on-link subnet or default via the gateway).
func (r *run) podSend(f *flow, pod *Pod) {
	if r.tooLong(f) {
		return
	}
	h := r.w.byName[pod.Node]
	dst := f.pkt.Dst
	f.add(Step{Host: pod.Label(), Stage: "send", Text: fmt.Sprintf("%s sends %s", pod.Label(), f.pkt)})
	if dst == pod.IP.Addr() {
		// The pod's own address: delivered over its loopback, no node involved.
		f.add(Step{Host: pod.Label(), Stage: "deliver", Text: fmt.Sprintf("%s is the pod's own address: delivered over lo", dst)})
		r.arrive(f, pod.Label(), func(g *flow) { r.podSend(g, pod) })
		return
	}
	if pod.IP.Contains(dst) && dst != pod.Gateway {
		// On-link: ARP for dst on the bridge.
		to := r.w.podFor(dst)
		if to == nil || to.Node != pod.Node {
			f.add(Step{Host: pod.Label(), Stage: "route", Text: fmt.Sprintf("%s is on-link (%s dev eth0); no pod with that address on %s's %s answers ARP", dst, pod.IP.Masked(), pod.Node, pod.Bridge)})
			r.finish(f, Outcome{Kind: Unreachable, Where: fmt.Sprintf("%s: no host %s on the pod subnet (ARP unanswered)", pod.Label(), dst)})
			return
		}
		f.add(Step{Host: pod.Label(), Stage: "route", Text: fmt.Sprintf("%s dev eth0 (on-link): frame straight to %s over %s", pod.IP.Masked(), to.Label(), pod.Bridge)})
		r.bridgeIn(f, h, pod.Bridge, pod.HostVeth, to)
		return
	}
	f.add(Step{Host: pod.Label(), Stage: "route", Text: fmt.Sprintf("default via %s dev eth0: frame to %s's bridge %s", pod.Gateway, pod.Node, pod.Bridge)})
	r.bridgeIn(f, h, pod.Bridge, pod.HostVeth, nil)
}

// bridgeIn: a frame enters bridge br on host h from port inPort. to is the
// pod whose MAC the frame is for, nil when it is for the bridge itself.
func (r *run) bridgeIn(f *flow, h *Host, br, inPort string, to *Pod) {
	f.pkt.Mark = 0
	if h.links[br] == nil {
		f.add(Step{Host: h.Name, Stage: "bridge", Text: fmt.Sprintf("bridge %s is not in %s's snapshot", br, h.Name)})
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: no bridge %s", h.Name, br)})
		return
	}
	if to == nil {
		f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "bridge", Text: fmt.Sprintf("frame for %s's own MAC: up into the IP stack (routed)", br)})
		physIn := ""
		if h.bridgeNF() {
			physIn = inPort
		}
		r.ipRcv(f, h, br, physIn)
		return
	}
	outPort := to.HostVeth
	if inPort != "" && outPort == inPort {
		if l := h.links[inPort]; l == nil || l.BridgePort == nil || !l.BridgePort.Hairpin {
			f.add(Step{Host: h.Name, Stage: "bridge", Text: fmt.Sprintf("frame would leave %s by its ingress port %s: hairpin is off there", br, inPort)})
			r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: bridge %s does not send back out of %s (hairpin off)", h.Name, br, inPort)})
			return
		}
	}
	if !h.bridgeNF() {
		f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "bridge", NoIPHooks: true, Text: fmt.Sprintf("bridged %s -> %s on %s; %s is %s: no %s, no conntrack, no NAT", orDash(inPort), orDash(outPort), br, h.bridgeNFKey(), sysctlWord(h, h.bridgeNFKey()), h.iptablesTool())})
		if f.reply {
			f.bridgedNoNF = append(f.bridgedNoNF, h.Name)
		}
		r.deliverPod(f, to)
		return
	}
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "bridge", Text: fmt.Sprintf("bridged %s -> %s on %s; %s=1: the IP hooks run with -i/-o %s and physdev", orDash(inPort), orDash(outPort), br, strings.TrimPrefix(h.bridgeNFKey(), "net.bridge."), br)})
	env := hookEnv{hook: "PREROUTING", in: br, physIn: inPort, bridged: true}
	before := f.pkt.Dst
	r.hook(f, h, env, func(f *flow) {
		if f.pkt.Dst != before {
			// br_netfilter: the destination changed, so the frame is routed.
			f.add(Step{Host: h.Name, Stage: "bridge", Text: fmt.Sprintf("destination rewritten to %s: br_netfilter hands the packet to IP routing", f.pkt.Dst)})
			r.afterPre(f, h, br, inPort, true)
			return
		}
		env := hookEnv{hook: "FORWARD", in: br, out: br, physIn: inPort, physOut: outPort, bridged: true}
		r.hook(f, h, env, func(f *flow) {
			env := hookEnv{hook: "POSTROUTING", out: br, physIn: inPort, physOut: outPort, bridged: true, nexthop: f.pkt.Dst.String()}
			r.hook(f, h, env, func(f *flow) { r.deliverPod(f, to) })
		})
	})
}

func orDash(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func sysctlWord(h *Host, name string) string {
	v, ok := h.sysctl(name)
	if !ok {
		return "absent (br_netfilter not loaded)"
	}
	return v
}

// ipRcv: a packet enters the IP stack of h on iif.
func (r *run) ipRcv(f *flow, h *Host, iif, physIn string) {
	if r.tooLong(f) {
		return
	}
	if src := f.pkt.Src; h.local[src] != "" && iif != "lo" && h.Snap != nil {
		f.add(Step{Host: h.Name, Stage: "route", Text: fmt.Sprintf("source %s is one of %s's own addresses: martian, dropped", src, h.Name)})
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: martian source %s on %s", h.Name, src, iif)})
		return
	}
	env := hookEnv{hook: "PREROUTING", in: iif, physIn: physIn, bridged: physIn != ""}
	before := f.pkt.Dst
	r.hook(f, h, env, func(f *flow) { r.afterPre(f, h, iif, physIn, f.pkt.Dst != before) })
}

// afterPre: the routing decision for a received packet, then INPUT or
// FORWARD. dnat tells whether PREROUTING rewrote the destination.
func (r *run) afterPre(f *flow, h *Host, iif, physIn string, dnat bool) {
	if r.martianLoopback(f, h, iif, false) {
		return
	}
	rt := h.lookup(f.pkt, iif)
	switch rt.typ {
	case "local":
		f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "route", Text: "local: " + rt.describe()})
		env := hookEnv{hook: "INPUT", in: iif, physIn: physIn}
		r.hook(f, h, env, func(f *flow) { r.deliverLocal(f, h, rt) })
		return
	case "unicast":
	default:
		r.noRoute(f, h, rt)
		return
	}
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "route", Text: "forward: " + rt.describe()})
	if !h.forwarding() && h.V6 && dnat && h.bridgeNF() && rt.dev == iif && h.links[iif] != nil && h.links[iif].Kind == "bridge" {
		// br_netfilter (br_nf_pre_routing_finish_ipv6): an IPv6 frame that
		// came in over the bridge, DNATed to an address routed back out of
		// that bridge, is bridged to it; IPv6 forwarding is not needed.
		// (IPv4 is not: with ip_forward=0 the kernel drops it; the lab
		// shows both.)
		f.add(Step{Host: h.Name, Stage: "route", Text: h.forwardingKey() + "=0, but br_netfilter bridges a DNATed frame whose route leads back out of " + iif + ": no forwarding needed"})
	} else if !h.forwarding() {
		f.add(Step{Host: h.Name, Stage: "route", Text: h.forwardingKey() + "=0: the node does not forward; it answers ICMP host unreachable"})
		r.finish(f, Outcome{Kind: Unreachable, Cause: CauseForwardingOff, Where: fmt.Sprintf("%s: %s=0", h.Name, h.forwardingKey())})
		return
	}
	env := hookEnv{hook: "FORWARD", in: iif, out: rt.dev, physIn: physIn, bridged: physIn != ""}
	r.hook(f, h, env, func(f *flow) {
		env := hookEnv{hook: "POSTROUTING", out: rt.dev, nexthop: rt.nexthop.String(), physIn: physIn}
		r.hook(f, h, env, func(f *flow) { r.xmit(f, h, rt) })
	})
}

func (r *run) noRoute(f *flow, h *Host, rt routeResult) {
	kind, what := Unreachable, ""
	switch rt.typ {
	case "none":
		what = fmt.Sprintf("no route to %s", f.pkt.Dst)
	case "blackhole":
		kind, what = Dropped, "blackhole route "+rt.describe()
	case "unreachable":
		what = "unreachable route " + rt.describe()
	case "prohibit":
		kind, what = Refused, "prohibit route "+rt.describe()
	default:
		what = fmt.Sprintf("route of type %s (%s) is not modelled", rt.typ, rt.describe())
		f.uncertain = append(f.uncertain, fmt.Sprintf("%s: %s", h.Name, what))
		kind = Dropped
	}
	if rt.rule != nil && rt.route == nil {
		what = fmt.Sprintf("ip rule %d: %s", rt.rule.Priority, rt.typ)
	}
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "route", Text: what})
	r.finish(f, Outcome{Kind: kind, Cause: CauseRoute, Where: fmt.Sprintf("%s: %s", h.Name, what)})
}

// localOut: a packet generated by h itself.
func (r *run) localOut(f *flow, h *Host) {
	rt := h.lookup(f.pkt, "")
	switch rt.typ {
	case "local":
		f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "route", Text: "local: " + rt.describe()})
		env := hookEnv{hook: "OUTPUT", out: "lo", localOut: true}
		r.hook(f, h, env, func(f *flow) {
			if rt2 := h.lookup(f.pkt, ""); rt2.typ != "local" {
				f.add(Step{Host: h.Name, Stage: "route", Text: "rerouted after NAT in OUTPUT"})
				r.outAfterRoute(f, h, rt2)
				return
			}
			env := hookEnv{hook: "POSTROUTING", out: "lo", localOut: true}
			r.hook(f, h, env, func(f *flow) {
				env := hookEnv{hook: "INPUT", in: "lo"}
				r.hook(f, h, env, func(f *flow) { r.deliverLocal(f, h, rt) })
			})
		})
		return
	case "unicast":
	default:
		r.noRoute(f, h, rt)
		return
	}
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "route", Text: "output: " + rt.describe()})
	env := hookEnv{hook: "OUTPUT", out: rt.dev, localOut: true}
	before := f.pkt.Dst
	r.hook(f, h, env, func(f *flow) {
		rt := rt
		if f.pkt.Dst != before {
			rt = h.lookup(f.pkt, "")
			f.add(Step{Host: h.Name, Stage: "route", Text: "rerouted after DNAT: " + rt.describe()})
			if rt.typ == "local" {
				env := hookEnv{hook: "POSTROUTING", out: "lo", localOut: true}
				r.hook(f, h, env, func(f *flow) {
					r.hook(f, h, hookEnv{hook: "INPUT", in: "lo"}, func(f *flow) { r.deliverLocal(f, h, rt) })
				})
				return
			}
			if rt.typ != "unicast" {
				r.noRoute(f, h, rt)
				return
			}
		}
		r.outAfterRoute(f, h, rt)
	})
}

func (r *run) outAfterRoute(f *flow, h *Host, rt routeResult) {
	if rt.typ != "unicast" {
		r.noRoute(f, h, rt)
		return
	}
	if r.martianLoopback(f, h, rt.dev, true) {
		return
	}
	env := hookEnv{hook: "POSTROUTING", out: rt.dev, nexthop: rt.nexthop.String(), localOut: true}
	r.hook(f, h, env, func(f *flow) { r.xmit(f, h, rt) })
}

// martianLoopback ends the path when a loopback address (127.0.0.0/8) is
// routed on another device without net.ipv4.conf.{all,DEV}.route_localnet=1:
// the kernel's input routing drops a received packet with a loopback source
// or destination (martian), and output routing refuses a loopback source
// out of a non-loopback device — as after kube-proxy DNATs a call to a
// localhost NodePort to a pod.
func (r *run) martianLoopback(f *flow, h *Host, dev string, out bool) bool {
	src, dst := f.pkt.Src.IsLoopback(), f.pkt.Dst.IsLoopback() && !out
	if dev == "lo" || dev == "" || (!src && !dst) {
		return false
	}
	if h.links[dev] != nil && h.links[dev].Kind == "loopback" {
		return false
	}
	if f.pkt.Src.Is6() {
		return r.martianLoopback6(f, h, dev, out)
	}
	all, dv := h.routeLocalnet("all"), h.routeLocalnet(dev)
	if all == "1" || dv == "1" {
		return false
	}
	if all == "" && dv == "" {
		f.uncertain = append(f.uncertain, fmt.Sprintf("%s: net.ipv4.conf.all.route_localnet and net.ipv4.conf.%s.route_localnet are not in the snapshot; the kernel default 0 is assumed", h.Name, dev))
	}
	which, a := "destination", f.pkt.Dst
	if src {
		which, a = "source", f.pkt.Src
	}
	dir := "received on"
	if out {
		dir = "routed out of"
	}
	what := fmt.Sprintf("loopback %s %s %s %s with net.ipv4.conf.all.route_localnet=%s and net.ipv4.conf.%s.route_localnet=%s: martian, dropped (localhost NodePorts need route_localnet=1)",
		which, a, dir, dev, cmp.Or(all, "0 (assumed)"), dev, cmp.Or(dv, "0 (assumed)"))
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "route", Text: what})
	r.finish(f, Outcome{Kind: Dropped, Cause: CauseRouteLocalnet, Where: h.Name + ": " + what})
	return true
}

// martianLoopback6 is martianLoopback for IPv6, which has no
// route_localnet: ::1 never leaves the loopback device (RFC 4291 2.5.3), so
// a call to [::1]:NODEPORT DNATed to a pod is dropped whatever the sysctls
// say, masqueraded or not (which is why kube-proxy offers localhost
// NodePorts on IPv4 only).
func (r *run) martianLoopback6(f *flow, h *Host, dev string, out bool) bool {
	which, a := "destination", f.pkt.Dst
	if f.pkt.Src.IsLoopback() {
		which, a = "source", f.pkt.Src
	}
	dir := "received on"
	if out {
		dir = "routed out of"
	}
	what := fmt.Sprintf("loopback %s %s %s %s: IPv6 never lets ::1 leave the loopback device (RFC 4291 2.5.3; there is no route_localnet for IPv6): dropped", which, a, dir, dev)
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "route", Text: what})
	r.finish(f, Outcome{Kind: Dropped, Cause: CauseLoopbackV6, Where: h.Name + ": " + what})
	return true
}

// xmit: the packet leaves h by rt.dev towards rt.nexthop.
func (r *run) xmit(f *flow, h *Host, rt routeResult) {
	dev := rt.dev
	l := h.links[dev]
	if l == nil {
		f.add(Step{Host: h.Name, Stage: "send", Text: fmt.Sprintf("device %s is not in the snapshot", dev)})
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: unknown device %s", h.Name, dev)})
		return
	}
	if !l.Up {
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: device %s is down", h.Name, dev)})
		return
	}
	switch {
	case l.Kind == "bridge":
		to := r.w.podFor(rt.nexthop)
		if to == nil || to.Node != h.Name || to.Bridge != dev {
			f.add(Step{Host: h.Name, Stage: "send", Text: fmt.Sprintf("no pod with address %s on %s answers ARP", rt.nexthop, dev)})
			r.finish(f, Outcome{Kind: Unreachable, Where: fmt.Sprintf("%s: nobody at %s on %s (ARP unanswered)", h.Name, rt.nexthop, dev)})
			return
		}
		f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "bridge", Text: fmt.Sprintf("out of %s to %s via port %s", dev, to.Label(), orDash(to.HostVeth))})
		r.deliverPod(f, to)
	case l.Kind == "vxlan":
		r.vxlanXmit(f, h, l, rt)
	default:
		r.wireXmit(f, h, dev, rt.nexthop)
	}
}

// wireXmit sends a packet on an underlay device to the node owning nexthop.
func (r *run) wireXmit(f *flow, h *Host, dev string, nexthop netip.Addr) {
	peer, pdev := r.w.hostOwning(nexthop)
	onSegment := false
	for _, p := range h.addrs[dev] {
		if p.Contains(nexthop) {
			onSegment = true
		}
	}
	if peer == nil || peer == h {
		f.add(Step{Host: h.Name, Stage: "wire", Text: fmt.Sprintf("out of %s to %s: no node of this trace has that address", dev, nexthop)})
		r.finish(f, Outcome{Kind: Lost, Where: fmt.Sprintf("%s: left via %s to %s, outside the traced nodes", h.Name, dev, nexthop)})
		return
	}
	if !onSegment {
		if rt := h.links[dev]; rt == nil {
			onSegment = false
		}
		f.uncertain = append(f.uncertain, fmt.Sprintf("%s: next hop %s is not in a subnet of %s; assumed reachable on the same segment (onlink)", h.Name, nexthop, dev))
	}
	f.add(Step{Host: h.Name, Stage: "wire", Text: fmt.Sprintf("out of %s to %s (%s)", dev, nexthop, peer.Name)})
	f.pkt.Mark = 0
	r.ipRcv(f, peer, pdev, "")
}

// vxlanXmit encapsulates towards the FDB destination of the next hop's MAC.
func (r *run) vxlanXmit(f *flow, h *Host, l *nodestate.Link, rt routeResult) {
	mac, ok := h.neigh[l.Name+"|"+rt.nexthop.String()]
	if !ok || mac == "" {
		f.add(Step{Host: h.Name, Stage: "vxlan", Text: fmt.Sprintf("no neighbour entry for %s on %s: the VTEP MAC is unknown", rt.nexthop, l.Name)})
		r.finish(f, Outcome{Kind: Dropped, Cause: CauseNoNeighbour, Where: fmt.Sprintf("%s: no neighbour %s on %s", h.Name, rt.nexthop, l.Name)})
		return
	}
	fe, ok := h.fdb[l.Name+"|"+mac]
	if (!ok || !fe.Dst.IsValid()) && r.staleNeighbour(f, h, l, rt.nexthop, mac) {
		return
	}
	if !ok || !fe.Dst.IsValid() {
		f.add(Step{Host: h.Name, Stage: "vxlan", Text: fmt.Sprintf("neighbour %s lladdr %s, but no FDB entry for %s on %s: nowhere to send", rt.nexthop, mac, mac, l.Name)})
		r.finish(f, Outcome{Kind: Dropped, Cause: CauseNoFDB, Where: fmt.Sprintf("%s: no FDB entry for %s on %s", h.Name, mac, l.Name)})
		return
	}
	inner := f.pkt
	port := uint16(8472)
	vni := 0
	local := netip.Addr{}
	if l.Vxlan != nil {
		port, vni, local = uint16(l.Vxlan.Port), l.Vxlan.VNI, l.Vxlan.Local
	}
	outer := Packet{Src: local, Dst: fe.Dst, Proto: "udp", Sport: 0, Dport: port, Mark: inner.Mark}
	ort := h.lookup(outer, "")
	if !outer.Src.IsValid() {
		outer.Src = ort.src
	}
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "vxlan", Text: fmt.Sprintf("neighbour %s lladdr %s, FDB %s dst %s: encapsulated in udp %s -> %s:%d vni %d", rt.nexthop, mac, mac, fe.Dst, outer.Src, fe.Dst, port, vni)})
	if ort.typ != "unicast" {
		f.add(Step{Host: h.Name, Stage: "route", Text: fmt.Sprintf("underlay route for %s: %s", fe.Dst, ort.typ)})
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: no underlay route to %s", h.Name, fe.Dst)})
		return
	}
	// The outer packet is sent by the node itself: OUTPUT and POSTROUTING.
	of := &flow{prob: 1, pkt: outer, ct: conntrack{}, assume: f.assume}
	sub := &run{w: r.w}
	oks := []*flow{}
	sub.hookUntracked(of, h, hookEnv{hook: "OUTPUT", out: ort.dev, localOut: true}, func(of *flow) {
		sub.hookUntracked(of, h, hookEnv{hook: "POSTROUTING", out: ort.dev, nexthop: ort.nexthop.String(), localOut: true}, func(of *flow) {
			oks = append(oks, of)
		})
	})
	for _, p := range sub.paths {
		g := f.clone()
		g.prob *= p.Prob
		g.steps = append(g.steps, p.Forward...)
		g.uncertain = append(g.uncertain, p.Uncertain...)
		g.assume, g.decided = p.assume, p.decided
		r.finish(g, Outcome{Kind: p.Outcome.Kind, Cause: p.Outcome.Cause, Where: "vxlan packet: " + p.Outcome.Where})
	}
	for _, of := range oks {
		g := f.clone()
		g.prob *= of.prob
		g.steps = append(g.steps, of.steps...)
		g.uncertain = append(g.uncertain, of.uncertain...)
		g.assume = of.assume
		r.underlayToVtep(g, h, ort, of.pkt, inner, mac)
	}
}

// underlayToVtep carries a vxlan packet to the node owning its destination
// and decapsulates it there.
func (r *run) underlayToVtep(f *flow, h *Host, ort routeResult, outer, inner Packet, mac string) {
	peer, pdev := r.w.hostOwning(outer.Dst)
	if peer == nil {
		f.add(Step{Host: h.Name, Stage: "wire", Text: fmt.Sprintf("vxlan packet to %s: no node of this trace has that address", outer.Dst)})
		r.finish(f, Outcome{Kind: Lost, Where: fmt.Sprintf("%s: vxlan to %s, outside the traced nodes", h.Name, outer.Dst)})
		return
	}
	f.add(Step{Host: h.Name, Stage: "wire", Text: fmt.Sprintf("underlay: out of %s to %s (%s)", ort.dev, outer.Dst, peer.Name)})
	// Outer packet on the receiving node: PREROUTING, INPUT, then the VTEP.
	of := &flow{prob: 1, pkt: outer, ct: conntrack{}, assume: f.assume}
	of.pkt.Mark = 0
	sub := &run{w: r.w}
	var oks []*flow
	sub.hookUntracked(of, peer, hookEnv{hook: "PREROUTING", in: pdev}, func(of *flow) {
		sub.hookUntracked(of, peer, hookEnv{hook: "INPUT", in: pdev}, func(of *flow) { oks = append(oks, of) })
	})
	for _, p := range sub.paths {
		g := f.clone()
		g.prob *= p.Prob
		g.steps = append(g.steps, p.Forward...)
		g.uncertain = append(g.uncertain, p.Uncertain...)
		g.assume, g.decided = p.assume, p.decided
		r.finish(g, Outcome{Kind: p.Outcome.Kind, Cause: p.Outcome.Cause, Where: "vxlan packet: " + p.Outcome.Where})
	}
	for _, of := range oks {
		g := f.clone()
		g.prob *= of.prob
		g.steps = append(g.steps, of.steps...)
		g.assume = of.assume
		var vtep *nodestate.Link
		for _, l := range peer.Snap.Links {
			// A vxlan device listens on a socket of its local address's
			// family: twill-v6.1 takes the IPv6 outer packets, twill.1 the IPv4 ones.
			if l.Kind == "vxlan" && l.Vxlan != nil && uint16(l.Vxlan.Port) == outer.Dport &&
				(!l.Vxlan.Local.IsValid() || l.Vxlan.Local.Is6() == outer.Dst.Is6()) {
				vtep = &l
				break
			}
		}
		if vtep == nil {
			g.add(Step{Host: peer.Name, Stage: "vxlan", Text: fmt.Sprintf("no vxlan device on udp port %d", outer.Dport)})
			r.finish(g, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: no vxlan device listens on udp %d", peer.Name, outer.Dport)})
			continue
		}
		if !strings.EqualFold(vtep.MAC, mac) {
			g.add(Step{Host: peer.Name, Stage: "vxlan", Text: fmt.Sprintf("inner frame is for MAC %s but %s's %s has MAC %s: dropped (stale neighbour on %s)", mac, peer.Name, vtep.Name, vtep.MAC, h.Name)})
			r.finish(g, Outcome{Kind: Dropped, Cause: CauseStaleNeighbour, Where: fmt.Sprintf("%s: inner MAC %s is not %s's VTEP MAC %s (stale neighbour entry on %s)", peer.Name, mac, vtep.Name, vtep.MAC, h.Name)})
			continue
		}
		g.pkt = inner
		g.pkt.Mark = 0
		g.add(Step{Host: peer.Name, Netns: peer.Snap.Netns, Stage: "vxlan", Text: fmt.Sprintf("decapsulated on %s", vtep.Name)})
		r.ipRcv(g, peer, vtep.Name, "")
	}
}

// hookUntracked runs a hook for a packet outside the traced connection (the
// vxlan outer packet): ctstate NEW, NAT allowed.
func (r *run) hookUntracked(f *flow, h *Host, env hookEnv, next func(*flow)) {
	env.ctstate, env.allowNAT = "NEW", true
	start := hookOutcome{prob: 1, pkt: f.pkt, ctmark: env.ctmark, verdict: "accept", assume: f.assume}
	for _, o := range h.runChains(f.pkt, env, h.chains[env.hook], start) {
		g := f.clone()
		g.prob *= o.prob
		g.steps = append(g.steps, o.steps...)
		g.uncertain = append(g.uncertain, o.uncertain...)
		g.assume = o.assume
		g.pkt = o.pkt
		if o.verdict != "accept" {
			r.hookDrop(g, h, env, o)
			continue
		}
		next(g)
	}
}

// deliverPod: the packet arrives in a pod.
func (r *run) deliverPod(f *flow, pod *Pod) {
	f.pkt.Mark = 0
	if f.pkt.Dst != pod.IP.Addr() {
		f.add(Step{Host: pod.Label(), Stage: "deliver", Text: fmt.Sprintf("%s is not for %s (%s): dropped", f.pkt.Dst, pod.Label(), pod.IP.Addr())})
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: not its address %s", pod.Label(), f.pkt.Dst)})
		return
	}
	if f.pkt.Src == pod.IP.Addr() {
		f.add(Step{Host: pod.Label(), Stage: "deliver", Text: fmt.Sprintf("source %s is the pod's own address: martian, dropped (hairpin without masquerade)", f.pkt.Src)})
		r.finish(f, Outcome{Kind: Dropped, Where: fmt.Sprintf("%s: martian source (its own address)", pod.Label())})
		return
	}
	f.add(Step{Host: pod.Label(), Stage: "deliver", Text: fmt.Sprintf("%s receives %s", pod.Label(), f.pkt)})
	if !f.reply && pod.Ports != nil && !slices.Contains(pod.Ports, f.pkt.Dport) && f.pkt.Proto != "icmp" {
		f.seen = Outcome{Receiver: pod.Label(), SeenSrc: netip.AddrPortFrom(f.pkt.Src, f.pkt.Sport), SeenDst: netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport)}
		where := fmt.Sprintf("%s: nothing listens on %s port %d", pod.Label(), f.pkt.Proto, f.pkt.Dport)
		if f.pkt.Proto == "tcp" {
			r.answerClient(f, &Host{Name: pod.Label(), Snap: &nodestate.Snapshot{}}, Refused, where, "tcp-reset", func(g *flow) { r.podSend(g, pod) })
			return
		}
		r.finish(f, Outcome{Kind: Refused, Receiver: pod.Label(), Where: where})
		return
	}
	r.arrive(f, pod.Label(), func(g *flow) { r.podSend(g, pod) })
}

// deliverLocal: the packet reaches a local socket of h.
func (r *run) deliverLocal(f *flow, h *Host, rt routeResult) {
	f.add(Step{Host: h.Name, Netns: h.Snap.Netns, Stage: "deliver", Text: fmt.Sprintf("%s accepts %s locally (%s)", h.Name, f.pkt, rt.describe())})
	if f.reply {
		r.arrive(f, h.Name, nil)
		return
	}
	if f.srcHost == h {
		// A node talking to itself: the reply is local too.
		r.startReply(f, h.Name, func(g *flow) { r.localOut(g, h) })
		return
	}
	o := Outcome{Kind: Local, Receiver: h.Name, SeenSrc: netip.AddrPortFrom(f.pkt.Src, f.pkt.Sport), SeenDst: netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport)}
	if rt.route != nil && rt.route.Dev != "" && h.links[rt.route.Dev] != nil && h.links[rt.route.Dev].Kind == "dummy" {
		o.Where = fmt.Sprintf("%s: local route on %s", h.Name, rt.route.Dev)
		o.Cause = CauseLocalRoute
	}
	r.finish(f, o)
}

// startReply turns the flow around at the receiver.
func (r *run) startReply(f *flow, receiver string, send func(*flow)) {
	f.seen = Outcome{Receiver: receiver, SeenSrc: netip.AddrPortFrom(f.pkt.Src, f.pkt.Sport), SeenDst: netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport)}
	f.fwd = f.steps
	f.steps = nil
	f.reply = true
	f.hops = 0
	p := f.pkt
	f.pkt = Packet{Src: p.Dst, Dst: p.Src, Proto: p.Proto, Sport: p.Dport, Dport: p.Sport}
	switch p.Proto {
	case "tcp":
		f.pkt.Flags = "SYN,ACK"
	case "sctp":
		f.pkt.Flags = "INIT_ACK"
	case "icmp":
		f.pkt.Flags = "echo-reply"
	}
	send(f)
}

// endReply: the reply reached the client (or someone else).
func (r *run) endReply(f *flow, who string) {
	o := f.seen
	o.ReplyFrom = netip.AddrPortFrom(f.pkt.Src, f.pkt.Sport)
	if who != f.client || f.pkt.Dst != f.first.Src || f.pkt.Dport != f.first.Sport {
		o.Kind = ReplyDropped
		o.Where = fmt.Sprintf("the reply went to %s (%s), not to the client", who, netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport))
		r.finish(f, o)
		return
	}
	if f.pkt.Src != f.first.Dst || f.pkt.Sport != f.first.Dport {
		o.Kind = Reset
		o.Where = fmt.Sprintf("%s: reply from %s, but the client called %s", who, o.ReplyFrom, netip.AddrPortFrom(f.first.Dst, f.first.Dport))
		f.add(Step{Host: who, Stage: "deliver", Text: fmt.Sprintf("%s has no connection from %s: answers RST; the connection to %s stays unanswered", who, o.ReplyFrom, netip.AddrPortFrom(f.first.Dst, f.first.Dport))})
		r.finish(f, o)
		return
	}
	if f.pkt.Proto == "tcp" {
		// Third leg: the client's ACK must reach the server too (conntrack
		// entries that never saw the reply call it INVALID).
		f.seen.ReplyFrom = o.ReplyFrom
		f.ack, f.hops = true, 0
		f.pkt = Packet{Src: f.first.Src, Dst: f.first.Dst, Proto: "tcp", Sport: f.first.Sport, Dport: f.first.Dport, Flags: "ACK"}
		f.add(Step{Host: who, Stage: "send", Text: fmt.Sprintf("%s completes the handshake: %s", who, f.pkt)})
		if f.srcPod != nil {
			r.podSend(f, f.srcPod)
		} else {
			r.localOut(f, f.srcHost)
		}
		return
	}
	o.Kind = Established
	r.finish(f, o)
}

// arrive is a packet reaching a socket's namespace: the server turns the
// first packet around, the client checks the reply, the server takes the ACK.
func (r *run) arrive(f *flow, who string, sendReply func(*flow)) {
	switch {
	case !f.reply:
		if sendReply == nil {
			r.finish(f, Outcome{Kind: Local, Receiver: who, SeenSrc: netip.AddrPortFrom(f.pkt.Src, f.pkt.Sport), SeenDst: netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport)})
			return
		}
		r.startReply(f, who, sendReply)
	case f.rejectKind != "":
		o := f.seen
		if who != f.client {
			o.Kind, o.Where = Dropped, fmt.Sprintf("the answer (%s) reached %s, not the client", f.pkt, who)
		} else if f.pkt.Proto == "tcp" && (f.pkt.Src != f.first.Dst || f.pkt.Sport != f.first.Dport || f.pkt.Dport != f.first.Sport) {
			o.Kind, o.Where = Dropped, fmt.Sprintf("%s: reset from %s, but the client called %s: ignored, the client keeps waiting", o.Where, netip.AddrPortFrom(f.pkt.Src, f.pkt.Sport), netip.AddrPortFrom(f.first.Dst, f.first.Dport))
		} else {
			o.Kind = f.rejectKind
		}
		f.final = true
		r.finish(f, o)
	case !f.ack:
		r.endReply(f, who)
	default:
		o := f.seen
		if who != o.Receiver || netip.AddrPortFrom(f.pkt.Dst, f.pkt.Dport) != o.SeenDst || netip.AddrPortFrom(f.pkt.Src, f.pkt.Sport) != o.SeenSrc {
			o.Kind = Dropped
			o.Where = fmt.Sprintf("the client's handshake ACK reached %s as %s, not the server's connection", who, f.pkt)
			r.finish(f, o)
			return
		}
		o.Kind = Established
		r.finish(f, o)
	}
}

// staleNeighbour ends the path when the neighbour entry of a vxlan next hop
// holds a MAC that is not the VTEP MAC of the traced node owning that next
// hop (as after the peer rebooted with a new MAC).
func (r *run) staleNeighbour(f *flow, h *Host, l *nodestate.Link, nexthop netip.Addr, mac string) bool {
	peer, dev := r.w.hostOwning(nexthop)
	if peer == nil || peer.links[dev] == nil || peer.links[dev].Kind != "vxlan" || strings.EqualFold(peer.links[dev].MAC, mac) {
		return false
	}
	want := peer.links[dev].MAC
	f.add(Step{Host: h.Name, Stage: "vxlan", Text: fmt.Sprintf("neighbour %s lladdr %s on %s, but %s's VTEP %s has MAC %s: stale neighbour entry (and no FDB entry for the stale MAC)", nexthop, mac, l.Name, peer.Name, dev, want)})
	r.finish(f, Outcome{Kind: Dropped, Cause: CauseStaleNeighbour, Where: fmt.Sprintf("%s: stale neighbour %s lladdr %s on %s (%s's VTEP MAC is %s)", h.Name, nexthop, mac, l.Name, peer.Name, want)})
	return true
}

package doctor

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	be "github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
)

// The overlay checks (TW040-TW045) do not decide what the overlay should
// be: they rebuild the agent's input from the snapshot (its lease and its
// peers' leases, the backend options the agent recorded in the subnet file,
// the underlay as backend.FindUnderlay picks it), ask backend.Compute, and
// compare with backend.Diff, exactly as the agent's drift repair does. A
// node the agent programmed is therefore clean by construction, whatever the
// backend (vxlan, vxlan with DirectRouting, host-gw).

// overlay is the expected overlay of the node and how the node differs.
type overlay struct {
	// want is backend.Compute's answer; peerErrs the peers it skipped.
	want     be.Desired
	peerErrs be.PeerErrors
	// changes are what the agent would change (backend.Diff); only
	// meaningful when peersKnown.
	changes []be.Change
	// peersKnown: the snapshot holds the leases, so the peer set is known.
	peersKnown bool
	// leases maps a pod subnet to its lease, to name nodes in findings.
	leases map[netip.Prefix]nodestate.Lease
	// assumed lists what doctor had to assume because the snapshot does
	// not record it; it is added to the findings' evidence.
	assumed []string
}

// noOverlay says why the expected overlay could not be computed.
type noOverlay struct{ why string }

func (n noOverlay) Error() string { return n.why }

// overlayMemo is expectedOverlay's answer, computed once per run.
type overlayMemo struct {
	ov  *overlay
	err error
}

// expectedOverlay returns the node's expected overlay (computed once).
func (e *env) expectedOverlay() (*overlay, error) {
	if e.overlayMemo == nil {
		ov, err := e.computeOverlay()
		e.overlayMemo = &overlayMemo{ov, err}
	}
	return e.overlayMemo.ov, e.overlayMemo.err
}

// computeOverlay computes the node's expected overlay from the snapshot,
// for each family the node runs: IPv4 when it has an IPv4 pod subnet, IPv6
// when it has an IPv6 one (a dual-stack node both, as the agent programs).
func (e *env) computeOverlay() (*overlay, error) {
	ov := &overlay{leases: map[netip.Prefix]nodestate.Lease{}, peersKnown: len(e.snap.Leases) > 0}
	for _, l := range e.snap.Leases {
		if l.Subnet.IsValid() {
			ov.leases[l.Subnet.Masked()] = l
		}
		if l.IPv6Subnet.IsValid() {
			ov.leases[l.IPv6Subnet.Masked()] = l
		}
	}
	self, selfFound := e.selfLease()
	subnet, subnet6 := e.subnet, e.subnet6
	if !subnet.IsValid() && !subnet6.IsValid() && selfFound {
		subnet, subnet6 = self.Subnet.Masked(), self.IPv6Subnet.Masked()
	}
	if !subnet.IsValid() && !subnet6.IsValid() {
		return nil, noOverlay{"this node's pod subnet is unknown: no subnet file, and no lease with one of this node's addresses (pass --etcd-endpoints)"}
	}
	var cfg netconf.Config
	if subnet.IsValid() {
		cfg.Network = e.cluster
		if !cfg.Network.IsValid() {
			cfg.Network = coveringPrefix(subnet, e.snap.Leases, func(l nodestate.Lease) netip.Prefix { return l.Subnet })
			ov.assumed = append(ov.assumed, fmt.Sprintf("pod network assumed to be %s (no subnet file; pass --cluster-cidr)", cfg.Network))
		}
	}
	if subnet6.IsValid() {
		cfg.IPv6Network = e.cluster6
		if !cfg.IPv6Network.IsValid() {
			cfg.IPv6Network = coveringPrefix(subnet6, e.snap.Leases, func(l nodestate.Lease) netip.Prefix { return l.IPv6Subnet })
			ov.assumed = append(ov.assumed, fmt.Sprintf("IPv6 pod network assumed to be %s (no subnet file)", cfg.IPv6Network))
		}
	}
	vx, vx6 := e.overlayVxlanLink(), e.overlayVxlanLinkV6()
	switch {
	case e.subnetInfo != nil && e.subnetInfo.Backend != "":
		cfg.Backend.Type = e.subnetInfo.Backend
		cfg.Backend.DirectRouting = e.subnetInfo.DirectRouting
	case selfFound && self.Backend != "":
		cfg.Backend.Type = self.Backend
	case vx != nil || vx6 != nil:
		cfg.Backend.Type = netconf.BackendVXLAN
	default:
		cfg.Backend.Type = netconf.BackendHostGW
	}
	if cfg.Backend.Type == netconf.BackendVXLAN {
		for _, l := range []*nodestate.Link{vx6, vx} {
			if l != nil {
				cfg.Backend.VNI, cfg.Backend.Port = l.Vxlan.VNI, l.Vxlan.Port
			}
		}
	}
	u, err := e.underlay(self, selfFound, vx, vx6)
	if err != nil {
		return nil, noOverlay{"the node's underlay is unknown: " + err.Error()}
	}
	if !selfFound {
		self = nodestate.Lease{Subnet: subnet, IPv6Subnet: subnet6, PublicIP: u.IP, PublicIPv6: u.IPv6, Backend: cfg.Backend.Type}
	}
	if cfg.Backend.Type == netconf.BackendVXLAN && (e.subnetInfo == nil || e.subnetInfo.Backend == "") {
		// Flannel's subnet file does not record DirectRouting: the routes tell.
		cfg.Backend.DirectRouting = e.routesDirectly(u.Dev, cfg.Network, subnet) || e.routesDirectly(u.Dev, cfg.IPv6Network, subnet6)
		ov.assumed = append(ov.assumed, fmt.Sprintf("DirectRouting assumed %t (the subnet file does not record it)", cfg.Backend.DirectRouting))
	}
	peers := make([]lease.Lease, 0, len(e.snap.Leases))
	for _, l := range e.snap.Leases {
		peers = append(peers, storeLease(l))
	}
	n := be.NodeOf(storeLease(self), peers, cfg, u)
	if vx != nil && vx.Name != be.DeviceName(vx.Vxlan.VNI) {
		n.VxlanDev = vx.Name
	}
	if vx6 != nil && vx6.Name != be.DeviceNameV6(vx6.Vxlan.VNI) {
		n.VxlanDevV6 = vx6.Name
	}
	want, err := be.Compute(n)
	if !errors.As(err, &ov.peerErrs) && err != nil {
		return nil, noOverlay{"the expected overlay cannot be computed: " + err.Error()}
	}
	ov.want = want
	if ov.peersKnown {
		ov.changes = be.Diff(want, e.snap)
	}
	return ov, nil
}

// storeLease is the store's form of a snapshot lease, as backend.Compute
// takes it. This is the one place doctor converts leases.
func storeLease(l nodestate.Lease) lease.Lease {
	out := lease.Lease{Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet, Attrs: lease.Attrs{BackendType: l.Backend, Node: l.Node,
		PublicIP: l.PublicIP, PublicIPv6: l.PublicIPv6}}
	if l.VtepMAC != "" {
		out.Attrs.BackendData = &lease.BackendData{VtepMAC: l.VtepMAC}
	}
	if l.VtepMACv6 != "" {
		out.Attrs.BackendV6Data = &lease.BackendData{VtepMAC: l.VtepMACv6}
	}
	return out
}

// selfLease finds this node's lease: the one for its subnet file's subnet
// (either family), else the one whose public IP (either family) is an
// address of this node.
func (e *env) selfLease() (nodestate.Lease, bool) {
	for _, l := range e.snap.Leases {
		if (e.subnet.IsValid() && l.Subnet.Masked() == e.subnet) || (e.subnet6.IsValid() && l.IPv6Subnet.Masked() == e.subnet6) {
			return l, true
		}
	}
	for _, l := range e.snap.Leases {
		for _, a := range e.snap.Addrs {
			if ip := a.Prefix.Addr(); (l.PublicIP.IsValid() && ip == l.PublicIP) || (l.PublicIPv6.IsValid() && ip == l.PublicIPv6) {
				return l, true
			}
		}
	}
	return nodestate.Lease{}, false
}

// overlayVxlanLink is the node's IPv4 pod-network vxlan device: twill's
// ("twill.<VNI>") when there is one, else the first vxlan device with an
// IPv4 (or no) underlay address (Flannel's "flannel.1" on a node Flannel
// programmed); nil when none.
func (e *env) overlayVxlanLink() *nodestate.Link {
	return e.familyVxlanLink(false)
}

// overlayVxlanLinkV6 is the node's IPv6 pod-network vxlan device:
// "twill-v6.<VNI>", else the first vxlan device on an IPv6 underlay
// address (Flannel's "flannel-v6.1"); nil when none.
func (e *env) overlayVxlanLinkV6() *nodestate.Link {
	return e.familyVxlanLink(true)
}

func (e *env) familyVxlanLink(v6 bool) *nodestate.Link {
	name := be.DeviceName
	if v6 {
		name = be.DeviceNameV6
	}
	var first *nodestate.Link
	for _, l := range e.vxlanLinks() {
		if l.Vxlan.Local.Is6() != v6 {
			continue
		}
		if l.Name == name(l.Vxlan.VNI) {
			return l
		}
		if first == nil {
			first = l
		}
	}
	return first
}

// underlay picks the underlay the way the agent does: the interface that
// holds the node's lease address (either family), else a vxlan device's
// underlay device, else the default route's.
func (e *env) underlay(self nodestate.Lease, selfFound bool, vxs ...*nodestate.Link) (be.Underlay, error) {
	if selfFound && self.PublicIP.IsValid() {
		if u, err := be.FindUnderlay(e.snap, "", self.PublicIP); err == nil {
			return u, nil
		}
	}
	iface := ""
	if selfFound && self.PublicIPv6.IsValid() {
		for _, a := range e.snap.Addrs {
			if a.Prefix.Addr() == self.PublicIPv6 {
				iface = a.Link
			}
		}
	}
	for _, vx := range vxs {
		if iface == "" && vx != nil && vx.Vxlan != nil {
			iface = vx.Vxlan.Dev
		}
	}
	return be.FindUnderlay(e.snap, iface, netip.Addr{})
}

// routesDirectly reports whether a main-table route into the pod network
// (not the node's own subnet) goes straight through the underlay device:
// the sign of vxlan DirectRouting when the config is not recorded.
func (e *env) routesDirectly(dev string, network, self netip.Prefix) bool {
	if !network.IsValid() {
		return false
	}
	for _, r := range e.snap.Routes {
		if r.Table == nodestate.TableMain && r.Dev == dev && r.Gateway.IsValid() && network.Contains(r.Dst.Addr()) && r.Dst.Masked() != self {
			return true
		}
	}
	return false
}

// coveringPrefix is the smallest prefix holding subnet and every leased
// subnet of its family (of picks it from a lease): the pod network as far
// as the leases show it.
func coveringPrefix(subnet netip.Prefix, leases []nodestate.Lease, of func(nodestate.Lease) netip.Prefix) netip.Prefix {
	p := subnet.Masked()
	for _, l := range leases {
		sn := of(l)
		if !sn.IsValid() || sn.Addr().Is4() != p.Addr().Is4() {
			continue
		}
		for !p.Contains(sn.Addr()) || p.Bits() > sn.Bits() {
			p = netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()
		}
	}
	return p
}

func overlayExplain(what string) string {
	return "Each peer needs its overlay entries: with vxlan a route to its pod subnet via its VTEP address on the vxlan device, a permanent neighbour mapping that address to " +
		"the peer's VTEP MAC, and an FDB entry sending that MAC to the peer's underlay address; with host-gw, or vxlan DirectRouting to a peer on the same segment, " +
		"a route via the peer's underlay address. With the " + what + " missing or stale, packets to that node's pods are black-holed or go astray."
}

const overlayFix = "restart the node's network agent (twill agent re-programs peers from the store and repairs drift by itself)"

// nodeOf names the node owning subnet dst for findings.
func (ov *overlay) nodeOf(dst netip.Prefix) string {
	l, ok := ov.leases[dst.Masked()]
	if !ok {
		return "no current lease"
	}
	at := l.PublicIP
	if dst.Addr().Is6() && l.PublicIPv6.IsValid() {
		at = l.PublicIPv6
	}
	if l.Node != "" {
		return fmt.Sprintf("node %s at %s", l.Node, at)
	}
	return fmt.Sprintf("node at %s", at)
}

// changeFinding turns one difference between the node and its expected
// overlay into a finding. A leftover object no lease asks for is a warning;
// anything missing or wrong is an error.
func (ov *overlay) changeFinding(c be.Change, title, what, fix string) Finding {
	sev := Error
	if c.Action == be.ActionDelete && c.Reason == "not desired" {
		sev = Warning
	}
	ev := []string{fmt.Sprintf("the agent would %s %s %s (%s)", c.Action, c.Kind, c.Object(), c.Reason)}
	ev = append(ev, ov.assumed...)
	return Finding{Severity: sev, Failure: "F6", Title: title, Evidence: ev, Explanation: overlayExplain(what), Fix: fix + "; or " + overlayFix}
}

func checkOverlayRoutes(e *env) ([]Finding, string) {
	ov, err := e.expectedOverlay()
	if err != nil {
		return nil, err.Error()
	}
	if !ov.peersKnown {
		return nil, "no leases in the snapshot, so the expected peers are unknown (pass --etcd-endpoints, or run inside the lab with `twill lab exec`)"
	}
	var out []Finding
	for _, c := range ov.changes {
		if c.Kind != be.KindRoute {
			continue
		}
		r := *c.Route
		var title, fix string
		switch c.Action {
		case be.ActionDelete:
			title = fmt.Sprintf("route %s should not exist (%s; %s)", be.RouteString(r), ov.nodeOf(r.Dst), c.Reason)
			fix = "ip route del " + be.RouteString(r)
		default:
			title = fmt.Sprintf("route to %s (%s) is %s, want %s", r.Dst, ov.nodeOf(r.Dst), routeState(c), be.RouteString(r))
			fix = "ip route replace " + be.RouteString(r)
		}
		out = append(out, ov.changeFinding(c, title, "route", fix))
	}
	for _, pe := range ov.peerErrs {
		if pe.Cause == be.PeerOffSegment {
			continue // TW045
		}
		out = append(out, Finding{Severity: Error, Failure: "F6",
			Title:       fmt.Sprintf("no overlay to %s: its lease cannot be used: %s", peerName(pe), pe.Reason),
			Evidence:    append([]string{pe.Error()}, ov.assumed...),
			Explanation: "The agent skips a peer whose lease it cannot program, so this node has no path to that node's pods.",
			Fix:         "fix the peer's lease: restart the agent on that node so it publishes a complete lease (public IP, VTEP MAC, backend)"})
	}
	return out, ""
}

func routeState(c be.Change) string {
	if c.Action == be.ActionAdd {
		return "missing"
	}
	return strings.TrimPrefix(c.Reason, "was ")
}

func peerName(pe be.PeerError) string {
	if pe.Node != "" {
		return "node " + pe.Node
	}
	return "the node at " + pe.PublicIP.String()
}

func checkVxlanNeighbours(e *env) ([]Finding, string) {
	ov, err := e.expectedOverlay()
	if err != nil || !ov.peersKnown {
		return checkVxlanNeighboursWithoutLeases(e), ""
	}
	var out []Finding
	for _, c := range ov.changes {
		if c.Kind != be.KindNeighbor {
			continue
		}
		n := *c.Neighbor
		who := "no current lease"
		for dst := range ov.leases {
			if dst.Addr() == n.IP {
				who = ov.nodeOf(dst)
			}
		}
		var title, fix string
		switch c.Action {
		case be.ActionDelete:
			title = fmt.Sprintf("neighbour %s lladdr %s on %s is not expected (%s)", n.IP, n.MAC, n.Dev, who)
			fix = fmt.Sprintf("ip neigh del %s dev %s", n.IP, n.Dev)
		case be.ActionAdd:
			title = fmt.Sprintf("no neighbour entry for %s on %s (%s's VTEP MAC is %s)", n.IP, n.Dev, who, n.MAC)
			fix = fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", n.IP, n.MAC, n.Dev)
		default:
			title = fmt.Sprintf("neighbour %s on %s is stale: %s (%s's VTEP MAC is %s)", n.IP, n.Dev, c.Reason, who, n.MAC)
			fix = fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", n.IP, n.MAC, n.Dev)
		}
		out = append(out, ov.changeFinding(c, title, "neighbour entry", fix))
	}
	return out, ""
}

func checkVxlanFDB(e *env) ([]Finding, string) {
	ov, err := e.expectedOverlay()
	if err != nil || !ov.peersKnown {
		return checkVxlanFDBWithoutLeases(e), ""
	}
	var out []Finding
	for _, c := range ov.changes {
		if c.Kind != be.KindFDB {
			continue
		}
		f := *c.FDB
		var title, fix string
		switch c.Action {
		case be.ActionDelete:
			title = fmt.Sprintf("FDB entry %s on %s to %s is not expected (%s)", f.MAC, f.Dev, f.Dst, c.Reason)
			fix = fmt.Sprintf("bridge fdb del %s dev %s dst %s self", f.MAC, f.Dev, f.Dst)
		case be.ActionAdd:
			title = fmt.Sprintf("no FDB entry for VTEP MAC %s on %s (want dst %s)", f.MAC, f.Dev, f.Dst)
			fix = fmt.Sprintf("bridge fdb replace %s dev %s dst %s self permanent", f.MAC, f.Dev, f.Dst)
		default:
			title = fmt.Sprintf("FDB entry %s on %s is stale: %s", f.MAC, f.Dev, c.Reason)
			fix = fmt.Sprintf("bridge fdb replace %s dev %s dst %s self permanent", f.MAC, f.Dev, f.Dst)
		}
		out = append(out, ov.changeFinding(c, title, "FDB entry", fix))
	}
	return out, ""
}

// Without leases the expected peers are unknown; what can still be checked
// is that the vxlan entries that exist agree with each other: every route
// via a vxlan device has a neighbour, and every such neighbour's MAC has an
// FDB entry.

func (e *env) neighbor(dev string, ip netip.Addr) *nodestate.Neighbor {
	for i, n := range e.snap.Neighbors {
		if n.Dev == dev && n.IP == ip {
			return &e.snap.Neighbors[i]
		}
	}
	return nil
}

func (e *env) fdbFor(dev, mac string) *nodestate.FDBEntry {
	for i, f := range e.snap.FDB {
		if f.Dev == dev && strings.EqualFold(f.MAC, mac) && f.Dst.IsValid() {
			return &e.snap.FDB[i]
		}
	}
	return nil
}

// vxlanPeerRoutes returns the routes that send traffic through a vxlan device.
func (e *env) vxlanPeerRoutes() map[string][]nodestate.Route {
	out := map[string][]nodestate.Route{}
	for _, l := range e.vxlanLinks() {
		for _, r := range e.snap.Routes {
			if r.Table == nodestate.TableMain && r.Dev == l.Name && r.Gateway.IsValid() {
				out[l.Name] = append(out[l.Name], r)
			}
		}
	}
	return out
}

// unreferencedFDB returns a vxlan FDB entry whose MAC no neighbour uses.
func (e *env) unreferencedFDB(dev string) *nodestate.FDBEntry {
	used := map[string]bool{}
	for _, n := range e.snap.Neighbors {
		if n.Dev == dev {
			used[strings.ToLower(n.MAC)] = true
		}
	}
	for i, f := range e.snap.FDB {
		if f.Dev == dev && f.Dst.IsValid() && !used[strings.ToLower(f.MAC)] && f.MAC != "00:00:00:00:00:00" {
			return &e.snap.FDB[i]
		}
	}
	return nil
}

const withoutLeases = "(no leases in the snapshot: checked only that the vxlan entries present agree with each other)"

func checkVxlanNeighboursWithoutLeases(e *env) []Finding {
	var out []Finding
	for dev, routes := range e.vxlanPeerRoutes() {
		for _, r := range routes {
			n := e.neighbor(dev, r.Gateway)
			var problem string
			switch {
			case n == nil || n.MAC == "":
				problem = fmt.Sprintf("no neighbour entry for %s on %s (route %s)", r.Gateway, dev, r.Dst)
			case e.fdbFor(dev, n.MAC) == nil && e.unreferencedFDB(dev) != nil:
				u := e.unreferencedFDB(dev)
				problem = fmt.Sprintf("neighbour %s on %s has MAC %s, which no FDB entry knows, while FDB entry %s -> %s is used by no neighbour (stale)", r.Gateway, dev, n.MAC, u.MAC, u.Dst)
			default:
				continue
			}
			out = append(out, Finding{Severity: Error, Failure: "F6", Title: problem, Evidence: []string{problem, withoutLeases},
				Explanation: overlayExplain("neighbour entry"),
				Fix:         fmt.Sprintf("ip neigh replace %s lladdr <remote VTEP MAC> dev %s nud permanent; or %s", r.Gateway, dev, overlayFix)})
		}
	}
	return out
}

func checkVxlanFDBWithoutLeases(e *env) []Finding {
	var out []Finding
	for dev, routes := range e.vxlanPeerRoutes() {
		for _, r := range routes {
			n := e.neighbor(dev, r.Gateway)
			if n == nil || n.MAC == "" || e.fdbFor(dev, n.MAC) != nil || e.unreferencedFDB(dev) != nil {
				continue // no neighbour, or a stale one: TW041 reports it
			}
			problem := fmt.Sprintf("no FDB entry for VTEP MAC %s on %s (route %s via %s)", n.MAC, dev, r.Dst, r.Gateway)
			out = append(out, Finding{Severity: Error, Failure: "F6", Title: problem, Evidence: []string{problem, withoutLeases},
				Explanation: overlayExplain("FDB entry"),
				Fix:         fmt.Sprintf("bridge fdb replace %s dev %s dst <remote node IP> self permanent; or %s", n.MAC, dev, overlayFix)})
		}
	}
	return out
}

// podMTU is the MTU pods must fit in: backend.PodMTU of the node's backend,
// families and underlay (what the agent writes into the subnet file), or a
// vxlan device's MTU when that is smaller. why names where the limit comes
// from.
func (e *env) podMTU() (limit int, why string, ok bool) {
	vx, vx6 := e.overlayVxlanLink(), e.overlayVxlanLinkV6()
	iface := ""
	for _, l := range []*nodestate.Link{vx6, vx} {
		if l != nil {
			iface = l.Vxlan.Dev
		}
	}
	u, err := be.FindUnderlay(e.snap, iface, netip.Addr{})
	if err != nil {
		return 0, "", false
	}
	cfg := netconf.Config{Backend: netconf.Backend{Type: netconf.BackendHostGW}}
	if vx != nil || vx6 != nil {
		cfg.Backend.Type = netconf.BackendVXLAN
	}
	overhead := be.VxlanOverhead
	if e.runsIPv6() {
		cfg.IPv6Network = e.cluster6
		overhead = be.VxlanOverheadV6
	}
	limit = be.PodMTU(cfg, u.MTU)
	why = fmt.Sprintf("underlay %s MTU %d", u.Dev, u.MTU)
	if cfg.Backend.Type == netconf.BackendVXLAN {
		why = fmt.Sprintf("underlay %s MTU %d less %d bytes of vxlan", u.Dev, u.MTU, overhead)
		if e.runsIPv6() {
			why = fmt.Sprintf("underlay %s MTU %d less %d bytes of vxlan over IPv6", u.Dev, u.MTU, overhead)
		}
		for _, l := range []*nodestate.Link{vx, vx6} {
			if l != nil && l.MTU < limit {
				limit, why = l.MTU, fmt.Sprintf("vxlan device %s MTU %d", l.Name, l.MTU)
			}
		}
	}
	return limit, why, true
}

// runsIPv6 reports whether the node runs IPv6 pods: its subnet file has an
// IPv6 subnet and network (what the agent writes for a dual-stack or
// IPv6-only cluster).
func (e *env) runsIPv6() bool {
	return e.subnet6.IsValid() && e.cluster6.IsValid()
}

// vxlanOverheadOf is what encapsulation costs on vxlan device l: more on an
// IPv6 underlay (backend.VxlanOverheadV6) than on IPv4.
func vxlanOverheadOf(l *nodestate.Link) int {
	if l.Vxlan != nil && l.Vxlan.Local.Is6() {
		return be.VxlanOverheadV6
	}
	return be.VxlanOverhead
}

func checkVxlanMTU(e *env) ([]Finding, string) {
	var out []Finding
	for _, l := range e.vxlanLinks() {
		u, err := be.FindUnderlay(e.snap, l.Vxlan.Dev, netip.Addr{})
		if err != nil {
			continue
		}
		over := vxlanOverheadOf(l)
		want := u.MTU - over
		if l.MTU > want {
			family := "IPv4"
			if over == be.VxlanOverheadV6 {
				family = "IPv6"
			}
			out = append(out, Finding{Severity: Error, Failure: "F6",
				Title:       fmt.Sprintf("vxlan device %s MTU %d is larger than underlay %s MTU %d minus %d bytes of encapsulation over %s", l.Name, l.MTU, u.Dev, u.MTU, over, family),
				Evidence:    []string{fmt.Sprintf("%s mtu %d (local %s), %s mtu %d", l.Name, l.MTU, l.Vxlan.Local, u.Dev, u.MTU)},
				Explanation: "Full-size packets no longer fit in one underlay frame after encapsulation: small requests work, large transfers hang.",
				Fix:         fmt.Sprintf("ip link set %s mtu %d (and the pods' MTU to the same)", l.Name, want)})
		}
	}
	return out, ""
}

func checkPodMTU(e *env) ([]Finding, string) {
	br := e.podBridge()
	if br == "" {
		return nil, ""
	}
	limit, limitWhy, ok := e.podMTU()
	if !ok {
		return nil, ""
	}
	var evidence []string
	for _, l := range e.snap.Links {
		if (l.Name == br || l.Master == br) && l.MTU > limit {
			evidence = append(evidence, fmt.Sprintf("%s (%s) mtu %d", l.Name, l.Kind, l.MTU))
		}
	}
	if e.subnetInfo != nil && e.subnetInfo.MTU > limit {
		evidence = append(evidence, fmt.Sprintf("%s: MTU=%d (new pods get it)", e.subnetPath, e.subnetInfo.MTU))
	}
	if len(evidence) == 0 {
		return nil, ""
	}
	return []Finding{{Severity: Error, Failure: "F6",
		Title:       fmt.Sprintf("pod MTU is larger than the overlay allows (%s)", limitWhy),
		Evidence:    evidence,
		Explanation: "Pods send frames larger than the overlay can carry: pings and small requests work, large responses and uploads hang (or crawl on fragmentation).",
		Fix:         fmt.Sprintf("set the pod MTU to %d: in the subnet file / CNI config, then recreate the pods (or ip link set <veth> mtu %d on both ends)", limit, limit)}}, ""
}

func checkHostGWSegment(e *env) ([]Finding, string) {
	ov, err := e.expectedOverlay()
	if err != nil || !ov.peersKnown {
		return checkHostGWRoutesWithoutLeases(e), ""
	}
	var out []Finding
	for _, pe := range ov.peerErrs {
		if pe.Cause != be.PeerOffSegment {
			continue
		}
		out = append(out, Finding{Severity: Error, Failure: "F6",
			Title:       fmt.Sprintf("host-gw cannot reach %s: %s is not on this node's segment", peerName(pe), pe.PublicIP),
			Evidence:    append([]string{pe.Error()}, ov.assumed...),
			Explanation: "host-gw only works when all nodes share one L2 segment: the agent programs no route to a peer it cannot reach directly, so that node's pods are unreachable from here.",
			Fix:         "use the vxlan backend (or vxlan with DirectRouting) when nodes are on different subnets"})
	}
	return out, ""
}

// checkHostGWRoutesWithoutLeases reports pod-network routes via a gateway
// that is not on the route's device's segment (no onlink), which the kernel
// cannot forward.
func checkHostGWRoutesWithoutLeases(e *env) []Finding {
	if !e.cluster.IsValid() {
		return nil
	}
	vxNames := map[string]bool{}
	for _, l := range e.vxlanLinks() {
		vxNames[l.Name] = true
	}
	var out []Finding
	for _, r := range e.snap.Routes {
		if r.Table != nodestate.TableMain || !r.Gateway.IsValid() || vxNames[r.Dev] || r.Onlink || !e.cluster.Contains(r.Dst.Addr()) {
			continue
		}
		connected := false
		for _, p := range e.addrsOf(r.Dev) {
			if p.Masked().Contains(r.Gateway) {
				connected = true
			}
		}
		if connected {
			continue
		}
		out = append(out, Finding{Severity: Error, Failure: "F6",
			Title:       fmt.Sprintf("host-gw route %s via %s: the gateway is not on %s's segment", r.Dst, r.Gateway, r.Dev),
			Evidence:    []string{fmt.Sprintf("route %s via %s dev %s; %s has %v", r.Dst, r.Gateway, r.Dev, r.Dev, e.addrsOf(r.Dev))},
			Explanation: "host-gw only works when all nodes share one L2 segment: a pod-subnet route via a node that is not directly reachable black-holes that node's pods.",
			Fix:         "use the vxlan backend (or vxlan with DirectRouting) when nodes are on different subnets"})
	}
	return out
}

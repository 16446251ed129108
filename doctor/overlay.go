package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/nodestate"
)

// peers returns the other nodes' leases and whether leases were captured.
func (e *env) peers() ([]nodestate.Lease, bool) {
	if len(e.snap.Leases) == 0 {
		return nil, false
	}
	locals := map[netip.Addr]bool{}
	for _, a := range e.snap.Addrs {
		locals[a.Prefix.Addr()] = true
	}
	var out []nodestate.Lease
	for _, l := range e.snap.Leases {
		if locals[l.PublicIP] || (e.subnet.IsValid() && l.Subnet.Masked() == e.subnet) {
			continue
		}
		out = append(out, l)
	}
	return out, true
}

// routeTo finds the main-table route whose destination is exactly dst.
func (e *env) routeTo(dst netip.Prefix) *nodestate.Route {
	for i, r := range e.snap.Routes {
		if r.Table == nodestate.TableMain && r.Dst.Masked() == dst.Masked() {
			return &e.snap.Routes[i]
		}
	}
	return nil
}

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

func overlayExplain(what string) string {
	return "vxlan needs three entries per remote node: a route to its pod subnet via its VTEP address, a permanent neighbour mapping that address to the remote VTEP MAC, " +
		"and an FDB entry sending that MAC to the node's underlay address. With the " + what + " missing or stale, every packet to that node's pods is silently black-holed."
}

const overlayFix = "restart the node's network agent (twill agent re-programs peers from the store and repairs drift by itself)"

func checkOverlayRoutes(e *env) ([]Finding, string) {
	peers, ok := e.peers()
	if !ok {
		return nil, "no leases in the snapshot, so the expected peers are unknown (pass --etcd-endpoints, or run inside the lab with `twill lab exec`)"
	}
	vx := e.vxlanLinks()
	var out []Finding
	for _, p := range peers {
		var wantDev string
		var wantGw netip.Addr
		switch p.Backend {
		case "host-gw":
			wantGw = p.PublicIP
		default:
			if len(vx) == 0 {
				continue // TW044 and friends report a missing vxlan device
			}
			wantDev, wantGw = vx[0].Name, p.Subnet.Masked().Addr()
		}
		r := e.routeTo(p.Subnet)
		var problem string
		switch {
		case r == nil:
			problem = fmt.Sprintf("no route to %s (node %s at %s)", p.Subnet, p.Node, p.PublicIP)
		case r.Gateway != wantGw || (wantDev != "" && r.Dev != wantDev):
			problem = fmt.Sprintf("route to %s goes via %s dev %s, want via %s dev %s", p.Subnet, r.Gateway, r.Dev, wantGw, orDefault(wantDev, "(underlay)"))
		case wantDev != "" && !r.Onlink:
			problem = fmt.Sprintf("route to %s via %s dev %s lacks the onlink flag", p.Subnet, r.Gateway, r.Dev)
		default:
			continue
		}
		fix := fmt.Sprintf("ip route replace %s via %s dev %s onlink; or %s", p.Subnet, wantGw, wantDev, overlayFix)
		if p.Backend == "host-gw" {
			fix = fmt.Sprintf("ip route replace %s via %s; or %s", p.Subnet, wantGw, overlayFix)
		}
		out = append(out, Finding{Severity: Error, Failure: "F6", Title: problem, Evidence: []string{problem}, Explanation: overlayExplain("route"), Fix: fix})
	}
	return out, ""
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

// leaseFor finds the peer lease owning a subnet.
func leaseFor(peers []nodestate.Lease, dst netip.Prefix) *nodestate.Lease {
	for i := range peers {
		if peers[i].Subnet.Masked() == dst.Masked() {
			return &peers[i]
		}
	}
	return nil
}

func checkVxlanNeighbours(e *env) ([]Finding, string) {
	peers, _ := e.peers()
	var out []Finding
	for dev, routes := range e.vxlanPeerRoutes() {
		for _, r := range routes {
			n := e.neighbor(dev, r.Gateway)
			l := leaseFor(peers, r.Dst)
			var problem string
			switch {
			case n == nil || n.MAC == "":
				problem = fmt.Sprintf("no neighbour entry for %s on %s (route %s)", r.Gateway, dev, r.Dst)
			case l != nil && l.VtepMAC != "" && !strings.EqualFold(n.MAC, l.VtepMAC):
				problem = fmt.Sprintf("neighbour %s on %s has MAC %s, but node %s's VTEP MAC is %s (stale)", r.Gateway, dev, n.MAC, l.Node, l.VtepMAC)
			case l == nil && e.fdbFor(dev, n.MAC) == nil && e.unreferencedFDB(dev) != nil:
				u := e.unreferencedFDB(dev)
				problem = fmt.Sprintf("neighbour %s on %s has MAC %s, which no FDB entry knows, while FDB entry %s -> %s is used by no neighbour (stale)", r.Gateway, dev, n.MAC, u.MAC, u.Dst)
			default:
				continue
			}
			want := "<remote VTEP MAC>"
			if l != nil && l.VtepMAC != "" {
				want = l.VtepMAC
			}
			out = append(out, Finding{Severity: Error, Failure: "F6", Title: problem, Evidence: []string{problem},
				Explanation: overlayExplain("neighbour entry"),
				Fix:         fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent; or %s", r.Gateway, want, dev, overlayFix)})
		}
	}
	return out, ""
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

func checkVxlanFDB(e *env) ([]Finding, string) {
	peers, _ := e.peers()
	var out []Finding
	for dev, routes := range e.vxlanPeerRoutes() {
		for _, r := range routes {
			n := e.neighbor(dev, r.Gateway)
			l := leaseFor(peers, r.Dst)
			mac := ""
			switch {
			case l != nil && l.VtepMAC != "":
				mac = l.VtepMAC
			case n != nil && n.MAC != "":
				if l == nil && e.fdbFor(dev, n.MAC) == nil && e.unreferencedFDB(dev) != nil {
					continue // a stale neighbour: TW041 reports it
				}
				mac = n.MAC
			default:
				continue
			}
			f := e.fdbFor(dev, mac)
			var problem string
			switch {
			case f == nil:
				problem = fmt.Sprintf("no FDB entry for VTEP MAC %s on %s (route %s via %s)", mac, dev, r.Dst, r.Gateway)
			case l != nil && f.Dst != l.PublicIP:
				problem = fmt.Sprintf("FDB entry %s on %s sends to %s, but node %s is at %s (stale)", mac, dev, f.Dst, l.Node, l.PublicIP)
			default:
				continue
			}
			dst := "<remote node IP>"
			if l != nil {
				dst = l.PublicIP.String()
			}
			out = append(out, Finding{Severity: Error, Failure: "F6", Title: problem, Evidence: []string{problem},
				Explanation: overlayExplain("FDB entry"),
				Fix:         fmt.Sprintf("bridge fdb replace %s dev %s dst %s self permanent; or %s", mac, dev, dst, overlayFix)})
		}
	}
	return out, ""
}

// underlayMTU returns the MTU of the device carrying vxlan traffic (or the
// default route's device).
func (e *env) underlayMTU(vx *nodestate.Link) (string, int) {
	dev := ""
	if vx != nil && vx.Vxlan != nil {
		dev = vx.Vxlan.Dev
	}
	if dev == "" {
		for _, r := range e.snap.Routes {
			if r.Table == nodestate.TableMain && r.Dst.Bits() == 0 && r.Dst.Addr().Is4() {
				dev = r.Dev
				break
			}
		}
	}
	if l := e.links[dev]; l != nil {
		return dev, l.MTU
	}
	return "", 0
}

func checkVxlanMTU(e *env) ([]Finding, string) {
	var out []Finding
	for _, vx := range e.vxlanLinks() {
		dev, mtu := e.underlayMTU(vx)
		if mtu == 0 {
			continue
		}
		overhead := 50
		if vx.Vxlan.Local.Is6() {
			overhead = 70
		}
		if vx.MTU > mtu-overhead {
			out = append(out, Finding{Severity: Error, Failure: "F6",
				Title:       fmt.Sprintf("vxlan device %s MTU %d is larger than underlay %s MTU %d minus %d bytes of encapsulation", vx.Name, vx.MTU, dev, mtu, overhead),
				Evidence:    []string{fmt.Sprintf("%s mtu %d, %s mtu %d", vx.Name, vx.MTU, dev, mtu)},
				Explanation: "Full-size packets no longer fit in one underlay frame after encapsulation: small requests work, large transfers hang.",
				Fix:         fmt.Sprintf("ip link set %s mtu %d (and the pods' MTU to the same)", vx.Name, mtu-overhead)})
		}
	}
	return out, ""
}

func checkPodMTU(e *env) ([]Finding, string) {
	br := e.podBridge()
	if br == "" {
		return nil, ""
	}
	limit, limitWhy := 0, ""
	if vx := e.vxlanLinks(); len(vx) > 0 {
		limit, limitWhy = vx[0].MTU, fmt.Sprintf("vxlan device %s MTU %d", vx[0].Name, vx[0].MTU)
	} else if dev, mtu := e.underlayMTU(nil); mtu > 0 {
		limit, limitWhy = mtu, fmt.Sprintf("underlay %s MTU %d", dev, mtu)
	}
	if limit == 0 {
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
	var out []Finding
	vxNames := map[string]bool{}
	for _, l := range e.vxlanLinks() {
		vxNames[l.Name] = true
	}
	if !e.cluster.IsValid() {
		return nil, ""
	}
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
	return out, ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

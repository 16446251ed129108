package backend

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/twillnet/twill/nodestate"
)

// Diff returns the changes that turn the observed state into the desired
// one. It is pure. Only objects that want.Own says twill owns are changed or
// deleted:
//
//   - twill's vxlan device (want.Own.VxlanDev, or any vxlan device named
//     "twill.<n>") and, on it, IPv4 addresses, main-table IPv4 routes,
//     permanent IPv4 neighbours and FDB entries with a remote address;
//   - when want.Own.VxlanDevV6 is set (the node runs IPv6): twill's IPv6
//     vxlan device (it, or any vxlan device named "twill-v6.<n>") and the
//     same for IPv6 on it, link-local addresses and routes excepted;
//   - main-table routes into want.Own.Network (IPv6Network) via
//     want.Own.UnderlayDev, except the node's own subnet.
//
// Everything else (other devices, the pod bridge, a user's routes, dynamic
// neighbour entries, IPv6 link-local addresses) is left alone. Deletions
// come first, then additions in dependency order (link, address, FDB,
// neighbour, route). A nil snapshot is an empty node.
func Diff(want Desired, have *nodestate.Snapshot) []Change {
	if have == nil {
		have = &nodestate.Snapshot{}
	}
	own := want.Own
	d := differ{own: own, fresh: map[string]bool{}, gone: map[string]bool{}, vx: map[string]bool{}}
	for _, l := range have.Links {
		if d.ownedLink(l) {
			d.vx[l.Name] = true
		}
	}
	d.links(want.Links, have.Links)
	d.addrs(want.Addrs, have.Addrs)
	d.fdb(want.FDB, have.FDB)
	d.neighbors(want.Neighbors, have.Neighbors)
	d.routes(want.Routes, have.Routes)
	var out []Change
	for i := len(d.delByKind) - 1; i >= 0; i-- { // routes first, links last
		out = append(out, d.delByKind[i]...)
	}
	return append(out, d.add...)
}

type differ struct {
	own Ownership
	// vx are the owned vxlan devices present on the node.
	vx map[string]bool
	// fresh are devices that will be (re)created: nothing on them exists.
	fresh map[string]bool
	// gone are devices that will be deleted: nothing on them needs deleting.
	gone map[string]bool

	delByKind [5][]Change // link, addr, fdb, neighbor, route
	add       []Change
}

func (d *differ) delete(kindIdx int, c Change) {
	c.Action = ActionDelete
	d.delByKind[kindIdx] = append(d.delByKind[kindIdx], c)
}

// ownedLink reports whether a device is one of twill's vxlan devices.
func (d *differ) ownedLink(l nodestate.Link) bool {
	if (l.Name == d.own.VxlanDev && d.own.VxlanDev != "") || (l.Name == d.own.VxlanDevV6 && d.own.VxlanDevV6 != "") {
		return true
	}
	prefixes := []string{"twill."}
	if d.own.VxlanDevV6 != "" {
		// Only a node that runs IPv6 owns IPv6 devices: the desired state
		// of an IPv4 config (doctor reads one from an IPv4 subnet file)
		// must never delete a live IPv6 overlay.
		prefixes = append(prefixes, "twill-v6.")
	}
	for _, prefix := range prefixes {
		if n, ok := strings.CutPrefix(l.Name, prefix); ok && l.Kind == "vxlan" {
			if _, err := strconv.Atoi(n); err == nil {
				return true
			}
		}
	}
	return false
}

// v6Dev reports whether an owned device is an IPv6 one (its addresses,
// routes and neighbours are IPv6).
func (d *differ) v6Dev(dev string) bool {
	return (dev == d.own.VxlanDevV6 && dev != "") || strings.HasPrefix(dev, "twill-v6.")
}

// ownedOn reports whether an address (of an address, neighbour or route
// destination) on the live owned device dev is twill's: of the device's
// family, and not link-local (the kernel's, on every IPv6 device).
func (d *differ) ownedOn(dev string, a netip.Addr) bool {
	return d.live(dev) && a.IsValid() && a.Is6() == d.v6Dev(dev) && !(a.Is6() && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()))
}

// live reports whether objects on dev exist and are owned (an owned device
// that stays).
func (d *differ) live(dev string) bool { return d.vx[dev] && !d.fresh[dev] && !d.gone[dev] }

func (d *differ) links(want []LinkSpec, have []nodestate.Link) {
	wanted := map[string]bool{}
	byName := map[string]nodestate.Link{}
	for _, l := range have {
		byName[l.Name] = l
	}
	for _, w := range want {
		w := w
		wanted[w.Name] = true
		h, ok := byName[w.Name]
		if !ok {
			d.fresh[w.Name] = true
			d.add = append(d.add, Change{Action: ActionAdd, Kind: KindLink, Link: &w, Reason: "missing"})
			continue
		}
		if why := immutableDiff(w, h); why != "" {
			d.fresh[w.Name] = true
			d.add = append(d.add, Change{Action: ActionReplace, Kind: KindLink, Link: &w, Recreate: true, Reason: why})
			continue
		}
		var why []string
		if h.MTU != w.MTU {
			why = append(why, fmt.Sprintf("mtu %d != %d", h.MTU, w.MTU))
		}
		if !strings.EqualFold(h.MAC, w.MAC) {
			why = append(why, fmt.Sprintf("mac %s != %s", h.MAC, w.MAC))
		}
		if !h.Up {
			why = append(why, "down")
		}
		if len(why) > 0 {
			d.add = append(d.add, Change{Action: ActionReplace, Kind: KindLink, Link: &w, Reason: strings.Join(why, ", ")})
		}
	}
	for _, h := range have {
		if d.vx[h.Name] && !wanted[h.Name] {
			d.gone[h.Name] = true
			d.delete(0, Change{Kind: KindLink, Link: &LinkSpec{Name: h.Name, Kind: h.Kind}, Reason: "not desired"})
		}
	}
}

// immutableDiff says which attributes that cannot be changed in place differ.
func immutableDiff(w LinkSpec, h nodestate.Link) string {
	if h.Kind != "vxlan" || h.Vxlan == nil {
		return fmt.Sprintf("kind %s != vxlan", h.Kind)
	}
	v := h.Vxlan
	var why []string
	if v.VNI != w.VNI {
		why = append(why, fmt.Sprintf("vni %d != %d", v.VNI, w.VNI))
	}
	if v.Port != w.Port {
		why = append(why, fmt.Sprintf("port %d != %d", v.Port, w.Port))
	}
	if v.Local != w.Local {
		why = append(why, fmt.Sprintf("local %v != %v", v.Local, w.Local))
	}
	if v.Dev != w.Dev {
		why = append(why, fmt.Sprintf("dev %q != %q", v.Dev, w.Dev))
	}
	if v.Learning != w.Learning {
		why = append(why, fmt.Sprintf("learning %v != %v", v.Learning, w.Learning))
	}
	return strings.Join(why, ", ")
}

func (d *differ) addrs(want, have []nodestate.Addr) {
	type key struct {
		dev string
		p   netip.Prefix
	}
	present := map[key]bool{}
	for _, h := range have {
		if d.ownedOn(h.Link, h.Prefix.Addr()) {
			present[key{h.Link, h.Prefix}] = true
		}
	}
	wanted := map[key]bool{}
	for _, w := range want {
		w := w
		k := key{w.Link, w.Prefix}
		wanted[k] = true
		if !present[k] {
			d.add = append(d.add, Change{Action: ActionAdd, Kind: KindAddr, Addr: &w, Reason: "missing"})
		}
	}
	for _, h := range have {
		h := h
		if d.ownedOn(h.Link, h.Prefix.Addr()) && !wanted[key{h.Link, h.Prefix}] {
			d.delete(1, Change{Kind: KindAddr, Addr: &h, Reason: "not desired"})
		}
	}
}

func (d *differ) fdb(want, have []nodestate.FDBEntry) {
	type key struct{ dev, mac string }
	owned := map[key][]nodestate.FDBEntry{}
	var order []key
	for _, h := range have {
		if !d.live(h.Dev) || !h.Dst.IsValid() {
			continue
		}
		k := key{h.Dev, strings.ToLower(h.MAC)}
		if _, ok := owned[k]; !ok {
			order = append(order, k)
		}
		owned[k] = append(owned[k], h)
	}
	wanted := map[key]bool{}
	for _, w := range want {
		w := w
		k := key{w.Dev, strings.ToLower(w.MAC)}
		wanted[k] = true
		hs := owned[k]
		right := -1
		for i, h := range hs {
			if h.Dst == w.Dst {
				right = i
				break
			}
		}
		switch {
		case right >= 0:
			for i, h := range hs {
				if i != right {
					h := h
					d.delete(2, Change{Kind: KindFDB, FDB: &h, Reason: "extra destination"})
				}
			}
		case len(hs) == 0:
			d.add = append(d.add, Change{Action: ActionAdd, Kind: KindFDB, FDB: &w, Reason: "missing"})
		default:
			for _, h := range hs[1:] {
				h := h
				d.delete(2, Change{Kind: KindFDB, FDB: &h, Reason: "extra destination"})
			}
			d.add = append(d.add, Change{Action: ActionReplace, Kind: KindFDB, FDB: &w, Reason: fmt.Sprintf("dst %s != %s", hs[0].Dst, w.Dst)})
		}
	}
	for _, k := range order {
		if wanted[k] {
			continue
		}
		for _, h := range owned[k] {
			h := h
			d.delete(2, Change{Kind: KindFDB, FDB: &h, Reason: "not desired"})
		}
	}
}

func (d *differ) neighbors(want, have []nodestate.Neighbor) {
	type key struct {
		dev string
		ip  netip.Addr
	}
	byKey := map[key]nodestate.Neighbor{}
	for _, h := range have {
		if d.ownedOn(h.Dev, h.IP) {
			byKey[key{h.Dev, h.IP}] = h
		}
	}
	wanted := map[key]bool{}
	for _, w := range want {
		w := w
		k := key{w.Dev, w.IP}
		wanted[k] = true
		h, ok := byKey[k]
		switch {
		case !ok:
			d.add = append(d.add, Change{Action: ActionAdd, Kind: KindNeighbor, Neighbor: &w, Reason: "missing"})
		case !strings.EqualFold(h.MAC, w.MAC):
			d.add = append(d.add, Change{Action: ActionReplace, Kind: KindNeighbor, Neighbor: &w, Reason: fmt.Sprintf("mac %s != %s", h.MAC, w.MAC)})
		case !strings.Contains(h.State, "permanent"):
			d.add = append(d.add, Change{Action: ActionReplace, Kind: KindNeighbor, Neighbor: &w, Reason: fmt.Sprintf("state %s != permanent", h.State)})
		}
	}
	for _, h := range have {
		h := h
		if d.ownedOn(h.Dev, h.IP) && strings.Contains(h.State, "permanent") && !wanted[key{h.Dev, h.IP}] {
			d.delete(3, Change{Kind: KindNeighbor, Neighbor: &h, Reason: "not desired"})
		}
	}
}

// ownedRoute reports whether a route is twill's to manage.
func (d *differ) ownedRoute(r nodestate.Route) bool {
	if r.Table != nodestate.TableMain || !r.Dst.IsValid() || (r.Type != "" && r.Type != "unicast") {
		return false
	}
	if d.vx[r.Dev] {
		return d.ownedOn(r.Dev, r.Dst.Addr()) && !r.Dst.Addr().IsMulticast()
	}
	n, self := d.own.Network, d.own.Subnet
	if r.Dst.Addr().Is6() {
		n, self = d.own.IPv6Network, d.own.IPv6Subnet
	}
	return r.Dev != "" && r.Dev == d.own.UnderlayDev && n.IsValid() &&
		r.Dst.Bits() >= n.Bits() && n.Contains(r.Dst.Addr()) && r.Dst.Masked() != self
}

func routeMatches(w, h nodestate.Route) bool {
	return h.Gateway == w.Gateway && h.Dev == w.Dev && h.Onlink == w.Onlink && h.Metric == w.Metric
}

func (d *differ) routes(want, have []nodestate.Route) {
	byDst := map[netip.Prefix][]nodestate.Route{}
	for _, h := range have {
		if d.ownedRoute(h) {
			byDst[h.Dst.Masked()] = append(byDst[h.Dst.Masked()], h)
		}
	}
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		w := w
		dst := w.Dst.Masked()
		wanted[dst] = true
		hs := byDst[dst]
		right := -1
		for i, h := range hs {
			if routeMatches(w, h) {
				right = i
				break
			}
		}
		for i, h := range hs {
			// A wrong route with the same metric is overwritten by the
			// replace below; others would shadow or linger: delete them.
			if i != right && (right >= 0 || h.Metric != w.Metric) {
				h := h
				d.delete(4, Change{Kind: KindRoute, Route: &h, Reason: "conflicts with " + RouteString(w)})
			}
		}
		if right >= 0 {
			continue
		}
		c := Change{Action: ActionAdd, Kind: KindRoute, Route: &w, Reason: "missing"}
		for _, h := range hs {
			if h.Metric == w.Metric {
				c.Action, c.Reason = ActionReplace, "was "+RouteString(h)
			}
		}
		d.add = append(d.add, c)
	}
	for _, h := range have {
		h := h
		if d.ownedRoute(h) && !wanted[h.Dst.Masked()] {
			d.delete(4, Change{Kind: KindRoute, Route: &h, Reason: "not desired"})
		}
	}
}

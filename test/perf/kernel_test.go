package perf

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/twillnet/twill/backend"
)

// overlay counts what the vxlan backend programmed in a node namespace.
type overlay struct {
	Routes, Neighbors, FDB int
}

// nsHandle opens a netlink handle inside the named namespace.
func nsHandle(ns string) (*netlink.Handle, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netns %s: netlink: %w", ns, err)
	}
	return nh, nil
}

// countOverlay counts, on twill's vxlan device (VNI 1) in h's namespace,
// the routes into network, the permanent neighbours and the FDB entries.
// A missing device counts as nothing programmed yet.
func countOverlay(h *netlink.Handle, network netip.Prefix) (overlay, error) {
	link, err := h.LinkByName(backend.DeviceName(1))
	if err != nil {
		return overlay{}, nil
	}
	idx := link.Attrs().Index
	var o overlay
	routes, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{LinkIndex: idx, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return o, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok && network.Contains(a) {
				o.Routes++
			}
		}
	}
	neigh, err := h.NeighList(idx, unix.AF_INET)
	if err != nil {
		return o, fmt.Errorf("list neighbours: %w", err)
	}
	for _, n := range neigh {
		if n.State&netlink.NUD_PERMANENT != 0 {
			o.Neighbors++
		}
	}
	fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return o, fmt.Errorf("list fdb: %w", err)
	}
	for _, n := range fdb {
		if n.IP != nil && !n.IP.IsUnspecified() {
			o.FDB++
		}
	}
	return o, nil
}

// hasRoute reports whether h's namespace has a route for exactly dst.
func hasRoute(h *netlink.Handle, dst netip.Prefix) (bool, error) {
	ipn := prefixNet(dst)
	routes, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: ipn, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return false, fmt.Errorf("list routes to %s: %w", dst, err)
	}
	return len(routes) > 0, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Apply makes the changes in the named network namespace ("" for the
// caller's own) and returns a Repair for each change it made. It goes on
// after a failed change (later changes may not depend on it) and returns
// all failures joined; the repairs returned are those that succeeded.
// Deleting an object that is already gone is neither an error nor a repair.
func Apply(ctx context.Context, ns string, changes []backend.Change) ([]backend.Repair, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ch := &cachedHandle{Handle: h, links: map[string]netlink.Link{}}
	var repairs []backend.Repair
	var errs []error
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		done, err := apply(ch, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			continue
		}
		if done {
			repairs = append(repairs, c.Repair())
		}
	}
	if len(errs) > 0 {
		return repairs, fmt.Errorf("netns %s: %w", nsName(ns), errors.Join(errs...))
	}
	return repairs, nil
}

func nsName(ns string) string {
	if ns == "" {
		return "(own)"
	}
	return ns
}

// handle opens a netlink handle whose sockets live in the namespace.
func handle(ns string) (*netlink.Handle, error) { return nsrun.NetlinkHandle(ns) }

// cachedHandle is a netlink handle that remembers device lookups within one
// Apply: thousands of routes, neighbours and FDB entries on twill.1 then cost
// one LinkByName instead of one each.
type cachedHandle struct {
	*netlink.Handle
	links map[string]netlink.Link
}

// LinkByName returns the device, from the cache when it was seen before.
func (h *cachedHandle) LinkByName(name string) (netlink.Link, error) {
	if l, ok := h.links[name]; ok {
		return l, nil
	}
	l, err := h.Handle.LinkByName(name)
	if err == nil {
		h.links[name] = l
	}
	return l, err
}

// forget drops the cached devices.
func (h *cachedHandle) forget() { clear(h.links) }

// apply makes one change; done is false when nothing needed doing.
func apply(h *cachedHandle, c backend.Change) (done bool, err error) {
	switch c.Kind {
	case backend.KindLink:
		h.forget() // links change: later lookups must see the new ones
		defer h.forget()
		return applyLink(h, c)
	case backend.KindAddr:
		return applyAddr(h, c)
	case backend.KindRoute:
		return applyRoute(h, c)
	case backend.KindNeighbor:
		return applyNeighbor(h, c)
	case backend.KindFDB:
		return applyFDB(h, c)
	}
	return false, fmt.Errorf("unknown change kind %q", c.Kind)
}

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

func linkByName(h *cachedHandle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", name, err)
	}
	return l, nil
}

func applyLink(h *cachedHandle, c backend.Change) (bool, error) {
	spec := c.Link
	if spec == nil {
		return false, errors.New("link change without a link")
	}
	existing, err := h.LinkByName(spec.Name)
	if err != nil && !notFound(err) {
		return false, fmt.Errorf("device %s: %w", spec.Name, err)
	}
	if c.Action == backend.ActionDelete {
		if existing == nil {
			return false, nil
		}
		return true, h.LinkDel(existing)
	}
	if existing != nil && (c.Recreate || existing.Type() != "vxlan") {
		if err := h.LinkDel(existing); err != nil && !notFound(err) {
			return false, fmt.Errorf("delete for re-creation: %w", err)
		}
		existing = nil
	}
	if existing == nil {
		return true, addVxlan(h, *spec)
	}
	return fixLink(h, existing, *spec)
}

func addVxlan(h *cachedHandle, s backend.LinkSpec) error {
	under, err := linkByName(h, s.Dev)
	if err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	mac, err := net.ParseMAC(s.MAC)
	if err != nil {
		return fmt.Errorf("mac %q: %w", s.MAC, err)
	}
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: s.Name, MTU: s.MTU, HardwareAddr: mac},
		VxlanId:      s.VNI,
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      net.IP(s.Local.AsSlice()),
		Port:         s.Port,
		Learning:     s.Learning,
	}
	if err := h.LinkAdd(vx); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	l, err := linkByName(h, s.Name)
	if err != nil {
		return err
	}
	// The kernel may not take the MAC at creation on every version: assert it.
	if l.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("set mac %s: %w", mac, err)
		}
	}
	return h.LinkSetUp(l)
}

// fixLink repairs MTU, MAC and up state in place: no delete, no down/up
// unless the kernel refuses to change the MAC of a running device.
func fixLink(h *cachedHandle, l netlink.Link, s backend.LinkSpec) (bool, error) {
	a := l.Attrs()
	done := false
	if a.MTU != s.MTU {
		if err := h.LinkSetMTU(l, s.MTU); err != nil {
			return done, fmt.Errorf("set mtu %d: %w", s.MTU, err)
		}
		done = true
	}
	mac, err := net.ParseMAC(s.MAC)
	if err != nil {
		return done, fmt.Errorf("mac %q: %w", s.MAC, err)
	}
	if a.HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			if !errors.Is(err, syscall.EBUSY) {
				return done, fmt.Errorf("set mac %s: %w", mac, err)
			}
			if err := h.LinkSetDown(l); err != nil {
				return done, err
			}
			if err := h.LinkSetHardwareAddr(l, mac); err != nil {
				return done, fmt.Errorf("set mac %s: %w", mac, err)
			}
		}
		done = true
	}
	if cur, err := h.LinkByIndex(a.Index); err == nil && cur.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return done, fmt.Errorf("set up: %w", err)
		}
		done = true
	}
	return done, nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func applyAddr(h *cachedHandle, c backend.Change) (bool, error) {
	a := c.Addr
	l, err := h.LinkByName(a.Link)
	if err != nil {
		if c.Action == backend.ActionDelete && notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("device %s: %w", a.Link, err)
	}
	na := &netlink.Addr{IPNet: ipnet(a.Prefix)}
	if a.Prefix.Addr().Is6() {
		// No duplicate address detection on twill's IPv6 vxlan address: it
		// is the node's own subnet address, unique by the lease, and a
		// tentative address could not be a source for a second.
		// Nor a prefix route: the /128 needs none, and a kernel route on
		// twill's device would look like drift.
		na.Flags = unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE
	}
	if c.Action == backend.ActionDelete {
		if err := h.AddrDel(l, na); err != nil {
			if notFound(err) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	return true, h.AddrReplace(l, na)
}

func toRoute(h *cachedHandle, r nodestate.Route) (*netlink.Route, error) {
	nr := &netlink.Route{Dst: ipnet(r.Dst.Masked()), Table: r.Table, Priority: r.Metric}
	if nr.Table == 0 {
		nr.Table = nodestate.TableMain
	}
	if r.Dev != "" {
		l, err := h.LinkByName(r.Dev)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", r.Dev, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	if r.Gateway.IsValid() {
		nr.Gw = net.IP(r.Gateway.AsSlice())
	}
	if r.Onlink {
		nr.Flags |= int(netlink.FLAG_ONLINK)
	}
	return nr, nil
}

func applyRoute(h *cachedHandle, c backend.Change) (bool, error) {
	nr, err := toRoute(h, *c.Route)
	if c.Action == backend.ActionDelete {
		if err != nil {
			if notFound(err) {
				return false, nil
			}
			return false, err
		}
		if err := h.RouteDel(nr); err != nil {
			if notFound(err) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return true, h.RouteReplace(nr)
}

func applyNeighbor(h *cachedHandle, c backend.Change) (bool, error) {
	n := c.Neighbor
	l, err := h.LinkByName(n.Dev)
	if err != nil {
		if c.Action == backend.ActionDelete && notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("device %s: %w", n.Dev, err)
	}
	family := netlink.FAMILY_V4
	if n.IP.Is6() {
		family = netlink.FAMILY_V6
	}
	nn := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: family, IP: net.IP(n.IP.AsSlice()), State: netlink.NUD_PERMANENT}
	if c.Action == backend.ActionDelete {
		if err := h.NeighDel(nn); err != nil {
			if notFound(err) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	mac, err := net.ParseMAC(n.MAC)
	if err != nil {
		return false, fmt.Errorf("mac %q: %w", n.MAC, err)
	}
	nn.HardwareAddr = mac
	return true, h.NeighSet(nn)
}

func applyFDB(h *cachedHandle, c backend.Change) (bool, error) {
	f := c.FDB
	l, err := h.LinkByName(f.Dev)
	if err != nil {
		if c.Action == backend.ActionDelete && notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("device %s: %w", f.Dev, err)
	}
	mac, err := net.ParseMAC(f.MAC)
	if err != nil {
		return false, fmt.Errorf("mac %q: %w", f.MAC, err)
	}
	nn := &netlink.Neigh{
		LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: netlink.NUD_PERMANENT, HardwareAddr: mac,
	}
	if f.Dst.IsValid() {
		nn.IP = net.IP(f.Dst.AsSlice())
	}
	if c.Action == backend.ActionDelete {
		if err := h.NeighDel(nn); err != nil {
			if notFound(err) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	return true, h.NeighSet(nn)
}

//go:build linux

package nodestate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// linkNames maps ifindex to link name within the captured namespace.
type linkNames map[int]string

func (n linkNames) name(index int) string {
	if index == 0 {
		return ""
	}
	if name, ok := n[index]; ok {
		return name
	}
	return fmt.Sprintf("if%d", index)
}

// dumpErr tolerates an interrupted dump (the kernel's state changed while it
// was read; the result is still the best we have) and records it.
func dumpErr(s *Snapshot, source string, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		s.addErr(source, fmt.Errorf("%w (state changed during the capture; results may be incomplete, capture again)", err))
		return false
	}
	s.addErr(source, err)
	return true
}

// captureLinks fills s.Links and returns the index-to-name map the other
// parts use to name devices.
func captureLinks(s *Snapshot, h *netlink.Handle) linkNames {
	names := linkNames{}
	links, err := h.LinkList()
	if dumpErr(s, "links", err) {
		return names
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	ports := map[int][]string{} // bridge index -> port names
	for _, l := range links {
		a := l.Attrs()
		kind := l.Type()
		if a.Flags&net.FlagLoopback != 0 {
			kind = "loopback"
		}
		out := Link{
			Index:       a.Index,
			Name:        a.Name,
			Kind:        kind,
			MTU:         a.MTU,
			MAC:         a.HardwareAddr.String(),
			Up:          a.Flags&net.FlagUp != 0,
			OperUp:      a.OperState == netlink.OperUp,
			ParentIndex: a.ParentIndex,
			LinkNetnsID: a.NetNsID,
		}
		if a.MasterIndex != 0 {
			out.Master = names.name(a.MasterIndex)
			ports[a.MasterIndex] = append(ports[a.MasterIndex], a.Name)
		}
		if vx, ok := l.(*netlink.Vxlan); ok {
			out.Vxlan = &VxlanAttrs{
				VNI:      vx.VxlanId,
				Port:     vx.Port,
				Local:    addrFromIP(vx.SrcAddr),
				Dev:      names.name(vx.VtepDevIndex),
				Learning: vx.Learning,
			}
			if out.ParentIndex == 0 {
				out.ParentIndex = vx.VtepDevIndex
			}
		}
		if kind == "bridge" {
			out.Bridge = &BridgeAttrs{Ports: []string{}}
		}
		s.Links = append(s.Links, out)
	}
	// Second pass: bridge ports and their per-port flags.
	isBridge := map[int]bool{}
	for i := range s.Links {
		if b := s.Links[i].Bridge; b != nil {
			isBridge[s.Links[i].Index] = true
			b.Ports = append(b.Ports, ports[s.Links[i].Index]...)
		}
	}
	for i, l := range links {
		if !isBridge[l.Attrs().MasterIndex] {
			continue
		}
		pi, err := h.LinkGetProtinfo(l)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			s.addErr("bridge-port:"+l.Attrs().Name, err)
			continue
		}
		s.Links[i].BridgePort = &BridgePortAttrs{Hairpin: pi.Hairpin}
	}
	return names
}

// captureAddrs fills s.Addrs (IPv4 and IPv6).
func captureAddrs(s *Snapshot, h *netlink.Handle, names linkNames) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if dumpErr(s, "addrs", err) {
		return
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		s.Addrs = append(s.Addrs, Addr{
			Link:   names.name(a.LinkIndex),
			Prefix: prefixFromIPNet(a.IPNet),
			Scope:  ScopeWord(a.Scope),
		})
	}
}

// addrFromIP converts a net.IP (4 or 16 bytes) to netip.Addr; nil gives the
// zero Addr.
func addrFromIP(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a
}

// prefixFromIPNet converts a net.IPNet to netip.Prefix, keeping the host bits
// (an address 10.244.1.1/24 stays 10.244.1.1/24).
func prefixFromIPNet(n *net.IPNet) netip.Prefix {
	a := addrFromIP(n.IP)
	if !a.IsValid() {
		return netip.Prefix{}
	}
	ones, bits := n.Mask.Size()
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones)
}

package cni

import (
	"iter"
	"net/netip"
	"strings"
)

// Allocation is one address handed out to one pod interface.
type Allocation struct {
	Addr        netip.Addr
	ContainerID string
	IfName      string
}

// lineBreak separates the container ID and the interface name in an
// allocation file, as host-local writes it (so state moves between the two).
const lineBreak = "\r\n"

// encodeOwner is the content of the allocation file of (id, ifname).
func encodeOwner(id, ifname string) string {
	return strings.TrimSpace(id) + lineBreak + ifname
}

// decodeOwner reads an allocation file's content. Files written by old
// host-local versions hold only the container ID.
func decodeOwner(content string) (id, ifname string) {
	id, ifname, _ = strings.Cut(strings.TrimSpace(content), lineBreak)
	return strings.TrimSpace(id), strings.TrimSpace(ifname)
}

// owns tells whether an allocation belongs to (id, ifname); an allocation
// without an interface name (old format) belongs to every interface of id.
func (a Allocation) owns(id, ifname string) bool {
	return a.ContainerID == strings.TrimSpace(id) && (a.IfName == "" || a.IfName == ifname)
}

// candidates yields the pod addresses of subnet in allocation order:
// after last (round robin, so a just-released address is not reused at
// once, as host-local does), wrapping around, skipping the network address,
// the subnet's last address (IPv4: broadcast) and the gateway. It is lazy:
// an IPv6 /64 is never listed, the allocator stops at the first free one.
func candidates(subnet netip.Prefix, gateway, last netip.Addr) iter.Seq[netip.Addr] {
	subnet = subnet.Masked()
	first, end := subnet.Addr().Next(), lastAddr(subnet)
	start := first
	if last.IsValid() && subnet.Contains(last) && last.Next().Less(end) {
		start = last.Next()
	}
	return func(yield func(netip.Addr) bool) {
		for _, r := range [][2]netip.Addr{{start, end}, {first, start}} {
			for a := r[0]; a.IsValid() && a.Less(r[1]); a = a.Next() {
				if a != gateway && !yield(a) {
					return
				}
			}
		}
	}
}

package cni

import (
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

// candidates returns the pod addresses of subnet in allocation order: after
// last (round robin, so a just-released address is not reused at once, as
// host-local does), wrapping around, skipping the network address, the
// broadcast address and the gateway.
func candidates(subnet netip.Prefix, gateway, last netip.Addr) []netip.Addr {
	subnet = subnet.Masked()
	first := subnet.Addr().Next()
	bcast := lastAddr(subnet)
	var all []netip.Addr
	for a := first; a.IsValid() && a.Less(bcast); a = a.Next() {
		if a != gateway {
			all = append(all, a)
		}
	}
	start := 0
	if last.IsValid() && subnet.Contains(last) {
		for i, a := range all {
			if last.Less(a) {
				start = i
				break
			}
		}
	}
	return append(all[start:len(all):len(all)], all[:start]...)
}

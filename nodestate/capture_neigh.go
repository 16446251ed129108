//go:build linux

package nodestate

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// captureNeighbors fills s.Neighbors (ARP and NDP entries).
func captureNeighbors(s *Snapshot, h *netlink.Handle, names linkNames) {
	for _, fam := range []struct {
		family int
		name   string
	}{{netlink.FAMILY_V4, "neighbors-v4"}, {netlink.FAMILY_V6, "neighbors-v6"}} {
		neighs, err := h.NeighList(0, fam.family)
		if dumpErr(s, fam.name, err) {
			continue
		}
		for _, n := range neighs {
			s.Neighbors = append(s.Neighbors, Neighbor{
				Dev:   names.name(n.LinkIndex),
				IP:    addrFromIP(n.IP),
				MAC:   n.HardwareAddr.String(),
				State: NeighStateWord(n.State),
			})
		}
	}
}

// captureFDB fills s.FDB from the bridge forwarding database: entries of
// bridges (with their master) and of devices' own tables (vxlan, with the
// remote underlay address in Dst).
func captureFDB(s *Snapshot, h *netlink.Handle, names linkNames) {
	entries, err := h.NeighList(0, unix.AF_BRIDGE)
	if dumpErr(s, "fdb", err) {
		return
	}
	for _, n := range entries {
		s.FDB = append(s.FDB, FDBEntry{
			Dev:    names.name(n.LinkIndex),
			MAC:    n.HardwareAddr.String(),
			Dst:    addrFromIP(n.IP),
			Master: names.name(n.MasterIndex),
			Vlan:   n.Vlan,
			State:  FDBStateWord(n.State),
			Self:   n.Flags&netlink.NTF_SELF != 0,
		})
	}
}

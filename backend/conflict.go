package backend

import (
	"fmt"

	"github.com/twillnet/twill/nodestate"
)

// VxlanConflict returns the vxlan device of snap, other than spec's own,
// that uses spec's VNI and UDP port (Flannel's "flannel.1" on a node
// flanneld ran on); nil when none. The kernel refuses a second device with
// the same VNI and port ("file exists"), so spec cannot be created while it
// is there.
func VxlanConflict(snap *nodestate.Snapshot, spec LinkSpec) *nodestate.Link {
	for i := range snap.Links {
		l := &snap.Links[i]
		if l.Kind == "vxlan" && l.Name != spec.Name && l.Vxlan != nil && l.Vxlan.VNI == spec.VNI && l.Vxlan.Port == spec.Port {
			return l
		}
	}
	return nil
}

// ConflictError says that the vxlan device the node needs cannot be created
// because another device holds its VNI and port, and how to fix that.
type ConflictError struct {
	// Want is the device twill needs.
	Want LinkSpec
	// Holder is the device in the way.
	Holder string
}

// Error names the device in the way and the fix.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("vxlan device %s uses VNI %d port %d, which %s needs (the kernel refuses a second device with both: file exists): if it is Flannel's, stop flanneld and delete it (ip link del %s), or see docs/migrate.md",
		e.Holder, e.Want.VNI, e.Want.Port, e.Want.Name, e.Holder)
}

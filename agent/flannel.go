package agent

import (
	"fmt"
	"strings"

	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
)

// flannelTraces says what a node flanneld ran on means for twill, "" when
// snap shows no sign of it. The signs are a vxlan device named
// "flannel.<VNI>" and Flannel's subnet file; the file counts only when the
// agent does not write it itself (writesFlannelEnv, --flannel-subnet-env),
// as a restarted agent would otherwise warn about its own file.
func flannelTraces(snap *nodestate.Snapshot, writesFlannelEnv bool) string {
	for _, l := range snap.Links {
		if l.Kind == "vxlan" && l.Vxlan != nil && strings.HasPrefix(l.Name, "flannel.") {
			return fmt.Sprintf("flanneld ran on this node; its vxlan device %s uses VNI %d port %d, which twill.%d needs too: stop flanneld and delete %s (ip link del %s), or see docs/migrate.md",
				l.Name, l.Vxlan.VNI, l.Vxlan.Port, l.Vxlan.VNI, l.Name, l.Name)
		}
	}
	if writesFlannelEnv {
		return ""
	}
	for _, f := range snap.Files.SubnetFiles {
		if f.Path == subnetfile.FlannelPath && f.Exists {
			return fmt.Sprintf("flanneld ran on this node (%s exists): stop flanneld before twill takes over the node, or see docs/migrate.md", subnetfile.FlannelPath)
		}
	}
	return ""
}

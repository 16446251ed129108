package trace

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/nodestate"
)

// LabPods returns the pods of a lab as the simulator models them.
func LabPods(st *lab.State) []Pod {
	var pods []Pod
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			pods = append(pods, Pod{
				Name: p.Name, Node: n.Name,
				IP:       netip.PrefixFrom(netip.MustParseAddr(p.IP), netip.MustParsePrefix(n.Subnet).Bits()),
				Gateway:  netip.MustParseAddr(n.Gateway),
				HostVeth: p.HostVeth, Bridge: "cni0",
				Ports: []uint16{lab.ServerPort},
			})
		}
	}
	return pods
}

// CaptureLab snapshots every node of a running lab (live, from its
// namespaces).
func CaptureLab(ctx context.Context, st *lab.State) ([]*nodestate.Snapshot, error) {
	var snaps []*nodestate.Snapshot
	for _, n := range st.Nodes {
		s, err := nodestate.Capture(ctx, nodestate.CaptureOptions{Netns: n.Namespace, Root: n.Root, Node: n.Name})
		if err != nil {
			return nil, fmt.Errorf("lab %s: capture %s: %w", st.Name, n.Name, err)
		}
		snaps = append(snaps, s)
	}
	return snaps, nil
}

// LabWorld captures a running lab's nodes and builds the World with its pods.
func LabWorld(ctx context.Context, name string) (*World, *lab.State, error) {
	st, err := lab.Load(name)
	if err != nil {
		return nil, nil, err
	}
	snaps, err := CaptureLab(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	w, err := NewWorld(snaps, LabPods(st))
	return w, st, err
}

package tracelab

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/lab"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/subnetfile"
	"github.com/twillnet/twill/trace"
)

// Pods returns the pods of a lab as the simulator models them.
func Pods(st *lab.State) []trace.Pod {
	var pods []trace.Pod
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			tp := trace.Pod{
				Name: p.Name, Node: n.Name,
				HostVeth: p.HostVeth, Bridge: "cni0",
				Ports: []uint16{lab.ServerPort},
			}
			if p.IP != "" && n.Subnet != "" {
				tp.IP = netip.PrefixFrom(netip.MustParseAddr(p.IP), netip.MustParsePrefix(n.Subnet).Bits())
				tp.Gateway = netip.MustParseAddr(n.Gateway)
			}
			if p.IPv6 != "" && n.IPv6Subnet != "" {
				sn := netip.MustParsePrefix(n.IPv6Subnet)
				tp.IPv6 = netip.PrefixFrom(netip.MustParseAddr(p.IPv6), sn.Bits())
				tp.Gateway6 = subnetfile.Gateway(sn).Addr()
			}
			pods = append(pods, tp)
		}
	}
	return pods
}

// Capture snapshots every node of a running lab (live, from its
// namespaces).
func Capture(ctx context.Context, st *lab.State) ([]*nodestate.Snapshot, error) {
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

// World captures a running lab's nodes and builds the trace.World with its pods.
func World(ctx context.Context, name string) (*trace.World, *lab.State, error) {
	st, err := lab.Load(name)
	if err != nil {
		return nil, nil, err
	}
	snaps, err := Capture(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	w, err := trace.NewWorld(snaps, Pods(st))
	return w, st, err
}

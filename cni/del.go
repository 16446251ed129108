package cni

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Del is CNI DEL: releases the pod's address and removes its veth. It
// succeeds when there is nothing left to do: the namespace is gone, the
// veth is gone, the address was already released, the subnet file is gone.
func Del(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, os.Getenv(RootEnv))
	if err != nil {
		return cniError(types.ErrInvalidNetworkConfig, err)
	}
	store, err := NewStore(c.DataDir)
	if err != nil {
		return cniError(types.ErrIOFailure, err)
	}
	freed, err := store.Release(args.ContainerID, args.IfName)
	if err != nil {
		return cniError(types.ErrIOFailure, fmt.Errorf("IPAM: %w", err))
	}
	nh, err := netlink.NewHandle()
	if err != nil {
		return failf(types.ErrInternal, "netlink in the node namespace: %v", err)
	}
	defer nh.Close()
	found, err := deleteLink(nh, HostVethName(args.ContainerID, args.IfName))
	if err != nil {
		return cniError(types.ErrInternal, err)
	}
	if found || args.Netns == "" || len(freed) == 0 {
		// No address was allocated to this container: its ADD never got as
		// far as creating an interface (it was refused, e.g. over a foreign
		// eth0), so whatever the pod has under IfName is not twill's.
		return nil
	}
	// No host end under twill's name, but an address was allocated: remove
	// a veth of that name in the pod, if the namespace still exists.
	podNS, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return nil
	}
	defer podNS.Close()
	ph, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return nil
	}
	defer ph.Close()
	if link, err := ph.LinkByName(args.IfName); err == nil && link.Type() == "veth" {
		if _, err := deleteLink(ph, args.IfName); err != nil {
			return cniError(types.ErrInternal, fmt.Errorf("pod namespace %s: %w", args.Netns, err))
		}
	}
	return nil
}

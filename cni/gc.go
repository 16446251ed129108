package cni

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

// GC is CNI GC: releases the address of every attachment not listed in
// cni.dev/valid-attachments and removes its host veth. An absent list means
// no attachment is valid (libcni sends none when asked to GC everything).
func GC(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, os.Getenv(RootEnv))
	if err != nil {
		return cniError(types.ErrInvalidNetworkConfig, err)
	}
	store, err := NewStore(c.DataDir)
	if err != nil {
		return cniError(types.ErrIOFailure, err)
	}
	valid := make(map[[2]string]bool, len(c.ValidAttachments))
	for _, a := range c.ValidAttachments {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	freed, err := store.GC(valid)
	if err != nil {
		return cniError(types.ErrIOFailure, fmt.Errorf("IPAM GC: %w", err))
	}
	if len(freed) == 0 {
		return nil
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return failf(types.ErrInternal, "netlink in the node namespace: %v", err)
	}
	defer h.Close()
	for _, a := range freed {
		slog.Info("GC released a stale address", "address", a.Addr, "containerID", a.ContainerID, "ifname", a.IfName)
		if a.IfName == "" {
			continue
		}
		if _, err := deleteLink(h, HostVethName(a.ContainerID, a.IfName)); err != nil {
			return cniError(types.ErrInternal, fmt.Errorf("GC: %w", err))
		}
	}
	return nil
}

package cni

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

// Status is CNI STATUS: ready when the subnet file is readable and valid,
// the bridge name is free or a bridge, and the IPAM state can be locked.
// Otherwise the error has code 50 ("plugin not available") and says why.
func Status(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, os.Getenv(RootEnv))
	if err != nil {
		return cniError(types.ErrInvalidNetworkConfig, err)
	}
	if err := status(c); err != nil {
		return failf(types.ErrPluginNotAvailable, "twill CNI not ready: %v", err)
	}
	return nil
}

func status(c Config) error {
	if _, err := ReadNode(c); err != nil {
		return err
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink in the node namespace: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(c.Bridge)
	switch {
	case errNotFound(err):
		// ADD creates it.
	case err != nil:
		return fmt.Errorf("bridge %s: %w", c.Bridge, err)
	case link.Type() != "bridge":
		return fmt.Errorf("bridge %s: a %s link has that name, not a bridge: delete it or set \"bridge\" in the CNI config", c.Bridge, link.Type())
	}
	store, err := NewStore(c.DataDir)
	if err != nil {
		return err
	}
	if _, err := store.List(); err != nil {
		return err
	}
	return nil
}

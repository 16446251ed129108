package nsrun

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetlinkHandle opens a netlink handle whose sockets live in the named
// network namespace ("" for the caller's own). Like a socket, the handle
// keeps its namespace whichever goroutine uses it. Close it when done.
func NetlinkHandle(ns string) (*netlink.Handle, error) {
	if ns == "" {
		return netlink.NewHandle()
	}
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w (does it exist? see `ip netns list`)", ns, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, fmt.Errorf("netns %s: netlink: %w", ns, err)
	}
	return h, nil
}

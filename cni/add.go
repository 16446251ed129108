package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Add is CNI ADD: bridge, veth, address, routes; prints the result.
func Add(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, os.Getenv(RootEnv))
	if err != nil {
		return cniError(types.ErrInvalidNetworkConfig, err)
	}
	node, err := ReadNode(c)
	if err != nil {
		return nodeError(err)
	}
	res, err := add(c, node, args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, c.CNIVersion)
}

// handles are netlink handles in the node's (current) and the pod's namespace.
type handles struct {
	node, pod *netlink.Handle
	podNS     netns.NsHandle
}

func openHandles(netnsPath string) (*handles, error) {
	podNS, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, failf(types.ErrInvalidNetNS, "pod network namespace %q: %v", netnsPath, err)
	}
	nh, err := netlink.NewHandle()
	if err != nil {
		podNS.Close()
		return nil, failf(types.ErrInternal, "netlink in the node namespace: %v", err)
	}
	ph, err := netlink.NewHandleAt(podNS)
	if err != nil {
		nh.Close()
		podNS.Close()
		return nil, failf(types.ErrInvalidNetNS, "netlink in pod namespace %s: %v", netnsPath, err)
	}
	return &handles{node: nh, pod: ph, podNS: podNS}, nil
}

func (h *handles) close() {
	h.pod.Close()
	h.node.Close()
	h.podNS.Close()
}

func add(c Config, node Node, args *skel.CmdArgs) (*current.Result, error) {
	h, err := openHandles(args.Netns)
	if err != nil {
		return nil, err
	}
	defer h.close()
	store, err := NewStore(c.DataDir)
	if err != nil {
		return nil, cniError(types.ErrIOFailure, err)
	}
	bridge, err := ensureBridge(h.node, c.Bridge, node)
	if err != nil {
		return nil, cniError(types.ErrInternal, err)
	}
	hostName := HostVethName(args.ContainerID, args.IfName)

	// An interface of that name already in the pod: ours (a repeated ADD)
	// is reused, anything else is refused.
	var host netlink.Link
	if podLink, err := h.pod.LinkByName(args.IfName); err == nil {
		existing, herr := h.node.LinkByName(hostName)
		if herr != nil || podLink.Type() != "veth" || podLink.Attrs().ParentIndex != existing.Attrs().Index {
			return nil, failf(types.ErrInternal, "pod namespace %s already has an interface %s that twill did not create for container %s; the runtime must DEL first or use another CNI_IFNAME",
				args.Netns, args.IfName, args.ContainerID)
		}
		host = existing
		if err := attachPort(h.node, host, bridge, c.Hairpin); err != nil {
			return nil, cniError(types.ErrInternal, err)
		}
	}

	addr, err := store.Allocate(node.Subnet, node.Gateway, args.ContainerID, args.IfName)
	if err != nil {
		return nil, cniError(types.ErrInternal, fmt.Errorf("IPAM: %w", err))
	}
	res, err := func() (*current.Result, error) {
		if host == nil {
			host, err = createVeth(h.node, h.podNS, hostName, args.IfName, node.MTU, bridge, c.Hairpin)
			if err != nil {
				return nil, err
			}
		}
		podAddr := netip.PrefixFrom(addr, node.Subnet.Bits())
		podLink, err := configurePod(h.pod, args.IfName, podAddr, node, c.DefaultGateway)
		if err != nil {
			return nil, err
		}
		return buildResult(node, c, bridge, host, podLink, args.Netns, podAddr), nil
	}()
	if err != nil {
		// Undo what this ADD did so a retry starts clean.
		_, _ = deleteLink(h.node, hostName)
		_, _ = store.Release(args.ContainerID, args.IfName)
		return nil, cniError(types.ErrInternal, fmt.Errorf("pod %s (%s): %w", args.ContainerID, args.Netns, err))
	}
	return res, nil
}

// buildResult is the ADD result: interfaces bridge, host veth, pod
// interface; the pod address with the gateway; the pod routes.
func buildResult(node Node, c Config, bridge, host, pod netlink.Link, sandbox string, addr netip.Prefix) *current.Result {
	gw := net.IP(node.Gateway.AsSlice())
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: bridge.Attrs().Name, Mac: bridge.Attrs().HardwareAddr.String(), Mtu: node.MTU},
			{Name: host.Attrs().Name, Mac: host.Attrs().HardwareAddr.String(), Mtu: node.MTU},
			{Name: pod.Attrs().Name, Mac: pod.Attrs().HardwareAddr.String(), Mtu: node.MTU, Sandbox: sandbox},
		},
		IPs: []*current.IPConfig{{Interface: current.Int(2), Address: *ipNet(addr), Gateway: gw}},
	}
	for _, dst := range podRoutes(node, c.DefaultGateway) {
		res.Routes = append(res.Routes, &types.Route{Dst: *ipNet(dst), GW: gw})
	}
	return res
}

// errNotFound tells whether a netlink lookup failed because the link is absent.
func errNotFound(err error) bool {
	return errors.As(err, new(netlink.LinkNotFoundError))
}

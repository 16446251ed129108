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

	podAddrs, err := allocate(store, node, args.ContainerID, args.IfName)
	if err != nil {
		_, _ = store.Release(args.ContainerID, args.IfName)
		return nil, cniError(types.ErrInternal, fmt.Errorf("IPAM: %w", err))
	}
	res, err := func() (*current.Result, error) {
		if host == nil {
			host, err = createVeth(h.node, h.podNS, hostName, args.IfName, node.MTU, bridge, c.Hairpin)
			if err != nil {
				return nil, err
			}
		}
		podLink, err := configurePod(h.pod, args.IfName, podAddrs, node, c.DefaultGateway)
		if err != nil {
			return nil, err
		}
		return buildResult(node, c, bridge, host, podLink, args.Netns, podAddrs), nil
	}()
	if err != nil {
		// Undo what this ADD did so a retry starts clean.
		_, _ = deleteLink(h.node, hostName)
		_, _ = store.Release(args.ContainerID, args.IfName)
		return nil, cniError(types.ErrInternal, fmt.Errorf("pod %s (%s): %w", args.ContainerID, args.Netns, err))
	}
	return res, nil
}

// allocate gives (id, ifname) one address of each of the node's pod
// networks (range set 0 for the first family, 1 for the second, as
// host-local with one range set per family).
func allocate(store *Store, node Node, id, ifname string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for r, pn := range node.Nets() {
		a, err := store.AllocateIn(r, pn.Subnet, pn.Gateway, id, ifname)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a, pn.Subnet.Bits()))
	}
	return out, nil
}

// buildResult is the ADD result: interfaces bridge, host veth, pod
// interface; the pod addresses (one per family, IPv4 first) with their
// gateways; the pod routes.
func buildResult(node Node, c Config, bridge, host, pod netlink.Link, sandbox string, addrs []netip.Prefix) *current.Result {
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: bridge.Attrs().Name, Mac: bridge.Attrs().HardwareAddr.String(), Mtu: node.MTU},
			{Name: host.Attrs().Name, Mac: host.Attrs().HardwareAddr.String(), Mtu: node.MTU},
			{Name: pod.Attrs().Name, Mac: pod.Attrs().HardwareAddr.String(), Mtu: node.MTU, Sandbox: sandbox},
		},
	}
	for i, pn := range node.Nets() {
		res.IPs = append(res.IPs, &current.IPConfig{Interface: current.Int(2), Address: *ipNet(addrs[i]), Gateway: net.IP(pn.Gateway.AsSlice())})
	}
	for _, r := range podRoutes(node, c.DefaultGateway) {
		res.Routes = append(res.Routes, &types.Route{Dst: *ipNet(r.dst), GW: net.IP(r.gw.AsSlice())})
	}
	return res
}

// errNotFound tells whether a netlink lookup failed because the link is absent.
func errNotFound(err error) bool {
	return errors.As(err, new(netlink.LinkNotFoundError))
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/twillnet/twill/backend"
	"github.com/twillnet/twill/backend/kernel"
	"github.com/twillnet/twill/firewall"
	"github.com/twillnet/twill/netconf"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/subnetfile"
)

// UninstallOptions say what to remove from a node.
type UninstallOptions struct {
	// Netns is the node's namespace ("" for the current one).
	Netns string
	// Root prefixes the node's files.
	Root string
	// Iface is the underlay interface (for host-gw routes); "" finds it.
	Iface string
	// FlannelSubnetEnv also removes /run/flannel/subnet.env.
	FlannelSubnetEnv bool
	// KeepBridge leaves the pod bridge cni0 in place.
	KeepBridge bool
	// KeepHostGWRoutes leaves a host-gw node's routes to its peers in place
	// for the next network daemon to take over (`twill migrate
	// to-flannel`: flanneld programs the same routes); vxlan's device and
	// what hangs on it go all the same.
	KeepHostGWRoutes bool
}

// uninstallFiles are the files twill's agent and its installer write,
// relative to the node's root.
var uninstallFiles = []string{
	subnetfile.TwillPath,
	"/etc/cni/net.d/10-twill.conflist",
	"/opt/cni/bin/twill",
	"/var/lib/cni/networks/twill",
}

// Uninstall removes from the node everything twill created: the vxlan
// device and twill's routes, neighbours and FDB entries, its firewall rules
// in whichever backend holds them (and the FORWARD accepts it placed), the
// pod bridge with the pods' host-side veths, and its files. It returns one
// line per removed thing. The lease is released by the caller (it needs the
// store).
func Uninstall(ctx context.Context, o UninstallOptions) ([]string, error) {
	// o.Root's subnet file is read below and then removed: LeaseSubnet
	// reads it before, for the caller's lease release.
	snap, err := nodestate.Capture(ctx, nodestate.CaptureOptions{Netns: o.Netns, Root: o.Root})
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error

	// The overlay: owned objects are known from the subnet file's network
	// (or, without one, the vxlan device alone).
	cfg, subnet := netconf.Config{}, netip.Prefix{}
	if b, err := os.ReadFile(filepath.Join(rootOr(o.Root), subnetfile.TwillPath)); err == nil {
		if info, err := subnetfile.Parse(subnetfile.TwillPath, string(b)); err == nil {
			cfg.Network, subnet = info.Network, info.Subnet.Masked()
			cfg.IPv6Network = info.IPv6Network // its routes via the underlay are ours too
			cfg.Backend.Type = info.Backend
		}
	}
	dev := o.Iface
	if dev == "" {
		if u, err := backend.FindUnderlay(snap, "", netip.Addr{}); err == nil {
			dev = u.Dev
		}
	}
	if cfg.Backend.Type == "" {
		cfg.Backend.Type = netconf.BackendVXLAN
	}
	if !cfg.Network.IsValid() {
		// Without the network only the vxlan device (and what hangs on it) is known to be ours.
		cfg.Network = netip.MustParsePrefix("255.255.255.255/32")
	}
	if !(o.KeepHostGWRoutes && cfg.Backend.Type == netconf.BackendHostGW) {
		repairs, err := kernel.Teardown(ctx, o.Netns, backend.OwnershipFor(cfg, subnet, dev))
		for _, r := range repairs {
			done = append(done, fmt.Sprintf("removed %s %s", r.Kind, r.Object))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}

	// The firewall, in every backend that holds twill's rules.
	for _, name := range firewallBackendsInUse(snap) {
		fw, err := firewall.New(name, o.Netns)
		if err == nil {
			err = fw.Remove(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall %s: %w", name, err))
			continue
		}
		done = append(done, "removed twill's firewall rules ("+name+")")
	}

	if !o.KeepBridge {
		// The pods' host-side veths hang on the bridge: deleting the bridge
		// leaves them behind, so they go first (each takes its pod end along).
		for _, l := range snap.Links {
			if l.Master != "cni0" || l.Kind != "veth" {
				continue
			}
			if err := deleteLink(o.Netns, l.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			done = append(done, "removed pod veth "+l.Name)
		}
		if err := deleteLink(o.Netns, "cni0"); err != nil {
			errs = append(errs, err)
		} else if hasLink(snap, "cni0") {
			done = append(done, "removed bridge cni0")
		}
	}

	files := uninstallFiles
	if o.FlannelSubnetEnv {
		files = append(files, subnetfile.FlannelPath)
	}
	for _, f := range files {
		p := filepath.Join(rootOr(o.Root), f)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, "removed "+p)
	}
	return done, errors.Join(errs...)
}

// firewallBackendsInUse lists the firewall backends holding twill's rules.
func firewallBackendsInUse(s *nodestate.Snapshot) []string {
	var out []string
	if strings.Contains(s.Nftables.JSON, `"name": "`+firewall.NftTable+`"`) || strings.Contains(s.Nftables.JSON, `"name":"`+firewall.NftTable+`"`) {
		out = append(out, firewall.BackendNft)
	}
	has := func(save string) bool { return strings.Contains(save, "TWILL-") || strings.Contains(save, `"twill:`) }
	// ip6tables rules (an IPv6 cluster) count too: Remove clears both families.
	if has(s.Iptables.NFT.Save) || has(s.Iptables.NFT.Save6) {
		out = append(out, firewall.BackendIptablesNft)
	}
	if has(s.Iptables.Legacy.Save) || has(s.Iptables.Legacy.Save6) {
		out = append(out, firewall.BackendIptablesLegacy)
	}
	return out
}

func hasLink(s *nodestate.Snapshot, name string) bool {
	for _, l := range s.Links {
		if l.Name == name {
			return true
		}
	}
	return false
}

// deleteLink removes a link in the namespace; a missing link is not an error.
func deleteLink(ns, name string) error {
	h, err := nsrun.NetlinkHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// LeaseSubnet returns the node's subnet from its subnet file under root
// (invalid when there is none): `twill uninstall` reads it before Uninstall
// removes the file, to find the node's lease when the node name is wrong.
func LeaseSubnet(root string) netip.Prefix {
	b, err := os.ReadFile(filepath.Join(rootOr(root), subnetfile.TwillPath))
	if err != nil {
		return netip.Prefix{}
	}
	info, err := subnetfile.Parse(subnetfile.TwillPath, string(b))
	if err != nil {
		return netip.Prefix{}
	}
	return info.Subnet.Masked()
}

package agent

import (
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/nodestate"
)

// underlay is the node's interface toward the other nodes.
type underlay struct {
	Dev  string
	IP   netip.Addr
	MTU  int
	Nets []netip.Prefix
}

// findUnderlay picks the underlay from the node's state: the interface named
// iface (or holding publicIP, or carrying the default route), and its
// address (publicIP, or the interface's first global IPv4 address).
func findUnderlay(s *nodestate.Snapshot, iface string, publicIP netip.Addr) (underlay, error) {
	dev := iface
	if dev == "" && publicIP.IsValid() {
		for _, a := range s.Addrs {
			if a.Prefix.Addr() == publicIP {
				dev = a.Link
			}
		}
		if dev == "" {
			return underlay{}, fmt.Errorf("--public-ip %s is not an address of this node", publicIP)
		}
	}
	if dev == "" {
		for _, r := range s.Routes {
			if r.Table == nodestate.TableMain && r.Dst.Bits() == 0 && r.Dst.Addr().Is4() && r.Dev != "" {
				dev = r.Dev
				break
			}
		}
		if dev == "" {
			return underlay{}, fmt.Errorf("no default route to pick the underlay interface from: pass --iface or --public-ip")
		}
	}
	u := underlay{Dev: dev}
	found := false
	for _, l := range s.Links {
		if l.Name == dev {
			u.MTU, found = l.MTU, true
		}
	}
	if !found {
		return underlay{}, fmt.Errorf("interface %s does not exist (see `ip link`)", dev)
	}
	for _, a := range s.Addrs {
		if a.Link != dev || !a.Prefix.Addr().Is4() {
			continue
		}
		u.Nets = append(u.Nets, a.Prefix.Masked())
		if !u.IP.IsValid() && a.Prefix.Addr().IsGlobalUnicast() && (!publicIP.IsValid() || a.Prefix.Addr() == publicIP) {
			u.IP = a.Prefix.Addr()
		}
	}
	if publicIP.IsValid() {
		u.IP = publicIP
	}
	if !u.IP.IsValid() {
		return underlay{}, fmt.Errorf("interface %s has no IPv4 address to use as this node's public IP: pass --public-ip", dev)
	}
	return u, nil
}

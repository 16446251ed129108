package backend

import (
	"fmt"
	"net/netip"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/nodestate"
)

// Underlay is the node's interface toward the other nodes, as the agent
// picks it (FindUnderlay) and as Compute needs it (Node.Underlay*).
type Underlay struct {
	// Dev is the interface name ("eth0").
	Dev string
	// IP is the node's address toward its peers (the lease's PublicIP).
	IP netip.Addr
	// MTU is Dev's MTU.
	MTU int
	// Nets are the prefixes of Dev's IPv4 addresses: the node's L2 segments.
	Nets []netip.Prefix
	// IPv6 is Dev's first global IPv6 address (zero when it has none): the
	// outer address of IPv6 pod traffic (the lease's PublicIPv6).
	IPv6 netip.Addr
	// Nets6 are the prefixes of Dev's global IPv6 addresses.
	Nets6 []netip.Prefix
}

// UnderlayChoice is what the operator said about the underlay (the agent's
// --iface, --public-ip and --public-ipv6); every field may be zero.
type UnderlayChoice struct {
	// Iface names the underlay interface.
	Iface string
	// PublicIP is the node's IPv4 address toward its peers.
	PublicIP netip.Addr
	// PublicIPv6 is the node's IPv6 address toward its peers.
	PublicIPv6 netip.Addr
}

// FindUnderlay picks the underlay from the node's state: the interface named
// iface (or holding publicIP, or carrying the default route), and its
// address (publicIP, or the interface's first global IPv4 address). It is
// pure: the agent calls it on the node it programs, doctor on the snapshot
// it checks, so both see the same underlay. PickUnderlay takes an IPv6
// choice as well.
func FindUnderlay(s *nodestate.Snapshot, iface string, publicIP netip.Addr) (Underlay, error) {
	return PickUnderlay(s, UnderlayChoice{Iface: iface, PublicIP: publicIP})
}

// CheckUnderlayChoice refuses addresses that cannot be a node's public
// address of their flag's family (lease.CheckPublicIP, CheckPublicIPv6:
// the same rules peers apply to the lease).
func CheckUnderlayChoice(c UnderlayChoice) error {
	if ip := c.PublicIP; ip.IsValid() {
		if err := lease.CheckPublicIP(ip); err != nil {
			if ip.Is6() {
				return fmt.Errorf("--public-ip %s: %w (for IPv6 use --public-ipv6)", ip, err)
			}
			return fmt.Errorf("--public-ip %s: %w", ip, err)
		}
	}
	if ip := c.PublicIPv6; ip.IsValid() {
		if err := lease.CheckPublicIPv6(ip); err != nil {
			return fmt.Errorf("--public-ipv6 %s: %w", ip, err)
		}
	}
	return nil
}

// PickUnderlay picks the underlay as FindUnderlay does, from every choice
// the operator made: the interface is c.Iface, else the one holding
// c.PublicIP, else the one holding c.PublicIPv6, else the one carrying the
// default route (IPv4's first, IPv6's on an IPv6-only node). Its IPv4
// address is c.PublicIP or the interface's first global one; its IPv6
// address is c.PublicIPv6 or the interface's first global one.
func PickUnderlay(s *nodestate.Snapshot, c UnderlayChoice) (Underlay, error) {
	if err := CheckUnderlayChoice(c); err != nil {
		return Underlay{}, err
	}
	publicIP := c.PublicIP
	dev := c.Iface
	for _, pick := range []struct {
		ip   netip.Addr
		flag string
	}{{publicIP, "--public-ip"}, {c.PublicIPv6, "--public-ipv6"}} {
		if dev != "" || !pick.ip.IsValid() {
			continue
		}
		for _, a := range s.Addrs {
			if a.Prefix.Addr() == pick.ip {
				dev = a.Link
			}
		}
		if dev == "" {
			return Underlay{}, fmt.Errorf("%s %s is not an address of this node (pass --iface too when it is a NAT address)", pick.flag, pick.ip)
		}
	}
	if dev == "" {
		for _, r := range s.Routes {
			if r.Table == nodestate.TableMain && r.Dst.Bits() == 0 && r.Dst.Addr().Is4() && r.Dev != "" {
				dev = r.Dev
				break
			}
		}
		for _, r := range s.Routes { // an IPv6-only node: its IPv6 default route
			if dev == "" && r.Table == nodestate.TableMain && r.Dst.Bits() == 0 && r.Dst.Addr().Is6() && r.Dev != "" {
				dev = r.Dev
			}
		}
		if dev == "" {
			return Underlay{}, fmt.Errorf("no default route to pick the underlay interface from: pass --iface or --public-ip")
		}
	}
	u := Underlay{Dev: dev}
	found := false
	for _, l := range s.Links {
		if l.Name == dev {
			u.MTU, found = l.MTU, true
		}
	}
	if !found {
		return Underlay{}, fmt.Errorf("interface %s does not exist (see `ip link`)", dev)
	}
	for _, a := range s.Addrs {
		if ip := a.Prefix.Addr(); a.Link == dev && ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() {
			u.Nets6 = append(u.Nets6, a.Prefix.Masked())
			if !u.IPv6.IsValid() {
				u.IPv6 = ip
			}
		}
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
	if c.PublicIPv6.IsValid() {
		u.IPv6 = c.PublicIPv6
	}
	if !u.IP.IsValid() && !u.IPv6.IsValid() {
		return Underlay{}, fmt.Errorf("interface %s has no IPv4 address to use as this node's public IP: pass --public-ip", dev)
	}
	return u, nil
}

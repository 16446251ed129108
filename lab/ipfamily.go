package lab

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/twillnet/twill/kubeproxy"
	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/subnetfile"
)

// IP families of a lab's pod network (Config.IPFamily, State.IPFamily).
const (
	// IPFamilyIPv4 is the lab as it always was: an IPv4 pod network.
	IPFamilyIPv4 = "ipv4"
	// IPFamilyIPv6 is an IPv6-only pod network ("EnableIPv4": false). The
	// underlay keeps its IPv4 addresses for the lab's own control plane
	// (etcd at 192.168.77.1).
	IPFamilyIPv6 = "ipv6"
	// IPFamilyDual is a dual-stack pod network: every pod has one address
	// of each family.
	IPFamilyDual = "dual"
)

// Fixed IPv6 addresses of a lab with IPv6 (unique local addresses, inside
// the lab's namespaces only).
var (
	// UnderlayGatewayV6 is br0's IPv6 address in the underlay namespace:
	// the "outside" of the pod network over IPv6, as UnderlayGateway is
	// over IPv4.
	UnderlayGatewayV6 = netip.MustParseAddr("fd00:77::1")
	// ClusterCIDRv6 is the IPv6 pod network (net-conf IPv6Network).
	ClusterCIDRv6 = netip.MustParsePrefix("fd00:10:244::/56")
)

// underlayV6Bits is the prefix length of the IPv6 underlay segment.
const underlayV6Bits = 64

// NodeIPv6 is node i's IPv6 underlay address (fd00:77::<10+i>, as NodeIP).
func NodeIPv6(i int) netip.Addr {
	b := UnderlayGatewayV6.As16()
	b[15] = byte(0x10 + i)
	return netip.AddrFrom16(b)
}

// NodeSubnetV6 is node i's IPv6 pod subnet (fd00:10:244:<i>::/64, as
// NodeSubnet).
func NodeSubnetV6(i int) netip.Prefix {
	b := ClusterCIDRv6.Addr().As16()
	b[7] = byte(i)
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// validateIPFamily checks Config.IPFamily against the rest of the config.
func (c Config) validateIPFamily() error {
	switch c.IPFamily {
	case IPFamilyIPv4:
		return nil
	case IPFamilyIPv6, IPFamilyDual:
	default:
		return fmt.Errorf("--ip-family %q: want %q, %q or %q", c.IPFamily, IPFamilyIPv4, IPFamilyIPv6, IPFamilyDual)
	}
	switch {
	case !c.Agent:
		return fmt.Errorf("--ip-family %s needs agent mode: the static lab programs IPv4 only (drop --static)", c.IPFamily)
	case c.Kubernetes:
		return fmt.Errorf("--ip-family %s: the lab's real nodes (--kubernetes) are IPv4 only (drop --kubernetes)", c.IPFamily)
	case c.FlannelNodes > 0:
		return fmt.Errorf("--ip-family %s: the lab's Flannel nodes are IPv4 only (drop --flannel-nodes)", c.IPFamily)
	}
	return nil
}

// HasIPv4 tells whether the lab's pod network runs IPv4 (labs made before
// --ip-family: yes).
func (st *State) HasIPv4() bool { return st.IPFamily != IPFamilyIPv6 }

// HasIPv6 tells whether the lab's pod network runs IPv6.
func (st *State) HasIPv6() bool { return st.IPFamily == IPFamilyIPv6 || st.IPFamily == IPFamilyDual }

// Family is the lab's IP family as people say it ("ipv4" in labs made
// before --ip-family).
func (st *State) Family() string {
	if st.IPFamily == "" {
		return IPFamilyIPv4
	}
	return st.IPFamily
}

// planIPFamily fills in the IPv6 half of a planned lab (nothing for IPv4):
// the nodes' IPv6 underlay addresses and subnets; an IPv6-only lab has no
// IPv4 pod subnets.
func planIPFamily(c Config, st *State) {
	if c.IPFamily == IPFamilyIPv4 || c.IPFamily == "" {
		return
	}
	st.IPFamily = c.IPFamily
	for i := range st.Nodes {
		n := &st.Nodes[i]
		n.IPv6 = NodeIPv6(n.Index).String()
		n.IPv6Subnet = NodeSubnetV6(n.Index).String()
		if !st.HasIPv4() {
			n.Subnet, n.Gateway = "", ""
		}
	}
}

// netConfJSON is the lab's net-conf.json. An IPv4 lab's is what it always
// was.
func netConfJSON(st *State) []byte {
	m := map[string]any{"Backend": map[string]any{"Type": st.Backend, "DirectRouting": st.DirectRouting}}
	if st.HasIPv4() {
		m["Network"] = ClusterCIDR.String()
	} else {
		m["EnableIPv4"] = false
	}
	if st.HasIPv6() {
		m["EnableIPv6"] = true
		m["IPv6Network"] = ClusterCIDRv6.String()
	}
	b, _ := json.Marshal(m)
	return b
}

// addUnderlayV6 puts addr on link without duplicate address detection, so
// the address is usable at once (the agent picks the underlay's first
// global IPv6 address when it starts).
func addUnderlayV6(h *netlink.Handle, link netlink.Link, addr netip.Addr, what string) error {
	a := &netlink.Addr{IPNet: ipNet(addr, underlayV6Bits), Flags: unix.IFA_F_NODAD}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("%s: address %s/%d on %s: %w", what, addr, underlayV6Bits, link.Attrs().Name, err)
	}
	return nil
}

// Addrs are pod p's addresses, IPv4 first (one per family the lab runs).
func (p Pod) Addrs() []string {
	var out []string
	for _, a := range []string{p.IP, p.IPv6} {
		if a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Addr is pod p's address of family ("ipv4" or "ipv6"; "" means its first
// address, IPv4 when it has one), or an error naming what the pod has.
func (p Pod) Addr(family string) (netip.Addr, error) {
	var s string
	switch family {
	case "":
		if as := p.Addrs(); len(as) > 0 {
			s = as[0]
		}
	case IPFamilyIPv4:
		s = p.IP
	case IPFamilyIPv6:
		s = p.IPv6
	default:
		return netip.Addr{}, fmt.Errorf("--family %q: want %q or %q", family, IPFamilyIPv4, IPFamilyIPv6)
	}
	if s == "" {
		return netip.Addr{}, fmt.Errorf("pod %s has no %s address (it has %v)", p.Name, family, p.Addrs())
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("pod %s: recorded address %q: %w", p.Name, s, err)
	}
	return a, nil
}

// CallTarget resolves the destination of `lab call`: HOST:PORT or
// [IPv6]:PORT as given; a pod name, which means that pod's address of
// family (see Pod.Addr) on ServerPort; or a lab Service ("lab/web",
// "web", "local-node1", "default/kubernetes"), which means its ClusterIP
// of family (default its primary one) on its port.
func (st *State) CallTarget(dst, family string) (string, error) {
	if s, ok := st.service(dst); ok {
		return serviceTarget(s, family)
	}
	t, err := st.Find(dst)
	if err != nil || t.Pod == nil {
		if family != "" {
			return "", fmt.Errorf("--family %s picks a pod's or Service's address: %q is neither a pod nor a Service of lab %s (give HOST:PORT alone)", family, dst, st.Name)
		}
		return dst, nil
	}
	a, err := t.Pod.Addr(family)
	if err != nil {
		return "", err
	}
	return netip.AddrPortFrom(a, ServerPort).String(), nil
}

// service finds a lab Service by "namespace/name", or by name alone in
// the lab's namespace.
func (st *State) service(name string) (kubeproxy.Service, bool) {
	if !strings.Contains(name, "/") {
		name = KubeNamespace + "/" + name
	}
	for _, s := range st.Services() {
		if s.Namespace+"/"+s.Name == name {
			return s, true
		}
	}
	return kubeproxy.Service{}, false
}

// serviceTarget is Service s's ClusterIP of family ("" means its primary)
// and port, or an error naming the families it has.
func serviceTarget(s kubeproxy.Service, family string) (string, error) {
	var a netip.Addr
	ok := false
	switch family {
	case "":
		a, ok = s.ClusterIP, s.ClusterIP.IsValid()
	case IPFamilyIPv4, IPFamilyIPv6:
		a, ok = s.ClusterIPOf(family == IPFamilyIPv6)
	default:
		return "", fmt.Errorf("--family %q: want %q or %q", family, IPFamilyIPv4, IPFamilyIPv6)
	}
	if !ok {
		return "", fmt.Errorf("Service %s/%s has no %s ClusterIP (it has %v)", s.Namespace, s.Name, family, s.Addrs())
	}
	return netip.AddrPortFrom(a, uint16(s.Port)).String(), nil
}

// hostPort joins an address and port ("10.244.1.2:8080", "[fd00::2]:8080").
func hostPort(addr string, port int) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr + ":" + strconv.Itoa(port)
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// nodeUplinkV6 gives node n's eth0 its IPv6 underlay address and an IPv6
// default route via the underlay's br0 (the lab's "outside").
func nodeUplinkV6(h *netlink.Handle, n *Node, eth netlink.Link) error {
	if err := addUnderlayV6(h, eth, netip.MustParseAddr(n.IPv6), "node "+n.Name); err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(UnderlayGatewayV6.AsSlice())}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("node %s: IPv6 default route via %s: %w", n.Name, UnderlayGatewayV6, err)
	}
	return nil
}

// checkLeased requires node n's lease l to hold the planned subnets of each
// family the lab runs (the seeded subnet file makes the agent ask for them).
func checkLeased(n *Node, l lease.Lease) error {
	if n.Subnet != "" && l.Subnet.String() != n.Subnet {
		return fmt.Errorf("node %s: its agent leased %s, not the planned %s (was the subnet file seeded?)", n.Name, l.Subnet, n.Subnet)
	}
	if n.IPv6Subnet != "" && l.IPv6Subnet.String() != n.IPv6Subnet {
		return fmt.Errorf("node %s: its agent leased IPv6 subnet %s, not the planned %s (was the subnet file seeded?)", n.Name, l.IPv6Subnet, n.IPv6Subnet)
	}
	return nil
}

// recordFamilies records pod p's address of each family from its CNI
// result: IP is the IPv4 one ("" in an IPv6-only lab), IPv6 the IPv6 one.
// A result that lacks a family the lab runs is an error.
func recordFamilies(st *State, n *Node, p *Pod, ips []*current.IPConfig) error {
	p.IP, p.IPv6 = "", ""
	for _, c := range ips {
		a, ok := netip.AddrFromSlice(c.Address.IP)
		if !ok {
			continue
		}
		if a.Unmap().Is4() {
			p.IP = a.Unmap().String()
		} else {
			p.IPv6 = a.String()
		}
	}
	if st.HasIPv4() && p.IP == "" || p.IPv6 == "" {
		return fmt.Errorf("pod %s: CNI ADD on %s returned %d addresses without the %s one the lab needs", p.Name, n.Name, len(ips), map[bool]string{true: "IPv4", false: "IPv6"}[p.IPv6 != ""])
	}
	return nil
}

// nodeFileInfo is the seed subnet file of node n in a lab with IPv6, as
// the agent writes it: the subnets of each family the lab runs.
func nodeFileInfo(st *State, n *Node) subnetfile.Info {
	info := subnetfile.Info{
		IPv6Network:   ClusterCIDRv6,
		IPv6Subnet:    subnetfile.Gateway(netip.MustParsePrefix(n.IPv6Subnet)),
		MTU:           PodMTU(st.Backend),
		IPMasq:        true,
		Backend:       st.Backend,
		DirectRouting: st.DirectRouting,
	}
	if n.Subnet != "" {
		info.Network, info.Subnet = ClusterCIDR, subnetfile.Gateway(netip.MustParsePrefix(n.Subnet))
	}
	return info
}

// joinSet joins the non-empty values of an IPv4/IPv6 pair with ", ".
func joinSet(v4, v6 string) string {
	switch {
	case v4 == "":
		return v6
	case v6 == "":
		return v4
	}
	return v4 + ", " + v6
}

// networksText names the lab's pod networks ("Network 10.244.0.0/16",
// "IPv6Network fd00:10:244::/56" or both).
func (st *State) networksText() string {
	var v4, v6 string
	if st.HasIPv4() {
		v4 = "Network " + ClusterCIDR.String()
	}
	if st.HasIPv6() {
		v6 = "IPv6Network " + ClusterCIDRv6.String()
	}
	return joinSet(v4, v6)
}

// v6Hints are the destinations PrintSummary suggests for a pod-to-pod call
// and a stream to node last: over IPv6 (quoted for the shell) in a lab
// with IPv6, as always otherwise.
func v6Hints(st *State, last Node) (call, stream string) {
	p := last.Pods[0]
	if !st.HasIPv6() {
		return hostPort(p.IP, ServerPort), hostPort(p.IP, EchoPort)
	}
	return p.Name + " --family ipv6", "'" + hostPort(p.IPv6, EchoPort) + "'"
}

// OutsideServerV6 is OutsideServer over IPv6: it listens on br0's IPv6
// address (UnderlayGatewayV6) of a lab with IPv6, where a pod's IPv6
// traffic arrives masqueraded to its node's IPv6 underlay address.
func OutsideServerV6(name string, port int) (stop func(), err error) {
	return outsideServer(name, UnderlayGatewayV6, port)
}

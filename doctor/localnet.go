package doctor

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/netfilter"
	"github.com/twillnet/twill/nodestate"
)

// loopbackOf is the loopback address localhost NodePort calls of a family
// go to: 127.0.0.1, or ::1 for ip6tables.
func loopbackOf(fam ipFamily) netip.Addr {
	if fam.tool == "ip6tables" {
		return netip.IPv6Loopback()
	}
	return netip.MustParseAddr("127.0.0.1")
}

// localhostNodePorts returns the kube-proxy (iptables mode) rules of one
// family that send packets addressed to its loopback address into a
// KUBE-NODEPORTS chain holding NodePort Services: kube-proxy's localhost
// NodePorts. kube-proxy writes the jump as "-m addrtype --dst-type LOCAL
// -j KUBE-NODEPORTS" (LOCAL includes 127.0.0.1) unless
// --iptables-localhost-nodeports=false adds "! -d 127.0.0.0/8", or, with
// --nodeport-addresses, as one "-d <address> -j KUBE-NODEPORTS" per node
// address, 127.0.0.1 included. Its ip6tables jump always carries
// "! -d ::1/128": IPv6 cannot route ::1 off the loopback device.
func localhostNodePorts(fam ipFamily) []string {
	lo := loopbackOf(fam)
	var out []string
	for _, b := range fam.backends {
		nat := b.rs.Table("nat")
		if nat == nil {
			continue
		}
		np := nat.Chain("KUBE-NODEPORTS")
		if np == nil || len(np.Rules) == 0 {
			continue
		}
		for _, c := range nat.Chains {
			for _, r := range c.Rules {
				if r.Target == "KUBE-NODEPORTS" && acceptsLoopback(r, lo) {
					out = append(out, fmt.Sprintf("%s-%s nat: -A %s %s (KUBE-NODEPORTS has %d rules)", fam.tool, b.name, r.Chain, strings.TrimPrefix(r.Text, "-A "+r.Chain+" "), len(np.Rules)))
				}
			}
		}
	}
	return out
}

// acceptsLoopback reports whether a rule's destination match lets packets
// to the loopback address lo through.
func acceptsLoopback(r *netfilter.Rule, lo netip.Addr) bool {
	if r.Destination.Set() {
		p, err := parsePrefixOrAddr(r.Destination.Value)
		if err != nil {
			return false // unknown: do not guess
		}
		covers := p.Contains(lo)
		return covers != r.Destination.Negated
	}
	if m := r.Match("addrtype"); m != nil {
		if o := m.Option("--dst-type"); o != nil {
			local := len(o.Values) > 0 && strings.Contains(strings.ToUpper(o.Values[0]), "LOCAL")
			return local != o.Negated
		}
	}
	return true
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkRouteLocalnet: localhost NodePorts need route_localnet=1. A call to
// 127.0.0.1:<NodePort> is DNATed to a pod address, and the kernel refuses to
// route a packet with a 127.0.0.0/8 source off the loopback device unless
// route_localnet is 1 on the device it leaves by (conf.all or the device's
// own). kube-proxy sets conf.all to 1 when it starts; something that resets
// it (a sysctl.d file, a hardening script) makes those calls hang.
//
// IPv6 has no route_localnet: ip6tables rules that send [::1] into
// KUBE-NODEPORTS (kube-proxy never writes them) offer calls that always
// fail, which is a warning of its own.
func checkRouteLocalnet(e *env) ([]Finding, string) {
	var out []Finding
	for _, fam := range e.families()[1:] {
		if rules := localhostNodePorts(fam); len(rules) > 0 {
			out = append(out, Finding{Severity: Warning, Failure: "F7",
				Title:       "ip6tables sends calls to [::1]:<NodePort> to kube-proxy's NodePorts, but IPv6 never routes ::1 off the loopback device",
				Evidence:    rules,
				Explanation: "A call to [::1]:<NodePort> on this node is translated to a pod address, but the kernel drops IPv6 packets with the loopback address on any other device (RFC 4291 2.5.3), masqueraded or not; unlike IPv4 there is no route_localnet to allow it. The call hangs; the NodePort on the node's own IPv6 address works.",
				Fix:         "add ! -d ::1/128 to that jump, as kube-proxy does for IPv6 (find who wrote it: kube-proxy's own ip6tables rules never include ::1), and call the NodePort on the node's address instead",
			})
		}
	}
	v4, why := routeLocalnet4(e)
	return append(v4, out...), why
}

// routeLocalnet4 is TW063 for IPv4: localhost NodePorts with route_localnet 0.
func routeLocalnet4(e *env) ([]Finding, string) {
	rules := localhostNodePorts(e.families()[0])
	if len(rules) == 0 {
		return nil, ""
	}
	all, ok := e.sysctl(nodestate.RouteLocalnetKey("all"))
	if !ok {
		return nil, "kube-proxy has localhost NodePorts, but net.ipv4.conf.all.route_localnet is not in the snapshot (capture it with this version of twill)"
	}
	if all == "1" {
		return nil, ""
	}
	devs := e.podPathDevices()
	var off []string
	for _, d := range devs {
		if v, ok := e.sysctl(nodestate.RouteLocalnetKey(d)); !ok || v != "1" {
			off = append(off, fmt.Sprintf("%s=%s", nodestate.RouteLocalnetKey(d), orUnknown(v, ok)))
		}
	}
	if len(devs) > 0 && len(off) == 0 {
		return nil, "" // every device toward the pods has it on
	}
	evidence := append([]string{"net.ipv4.conf.all.route_localnet=" + all}, off...)
	evidence = append(evidence, rules...)
	return []Finding{{Severity: Warning, Failure: "F7",
		Title:       "net.ipv4.conf.all.route_localnet is " + all + " but kube-proxy serves NodePorts on localhost",
		Evidence:    evidence,
		Explanation: "A call to 127.0.0.1:<NodePort> on this node is translated to a pod address, but with route_localnet 0 the kernel drops a packet with a loopback source that must leave the loopback device: the call hangs, while the same NodePort on the node's own address works.",
		Fix:         "sysctl -w net.ipv4.conf.all.route_localnet=1 (what kube-proxy sets when it starts; find what reset it, e.g. a file in /etc/sysctl.d); or run kube-proxy with --iptables-localhost-nodeports=false so it stops offering them",
	}}, ""
}

// podPathDevices are the devices a packet to a pod leaves by: the pod
// bridge, the vxlan devices and the default route's device.
func (e *env) podPathDevices() []string {
	var out []string
	if br := e.podBridge(); br != "" {
		out = append(out, br)
	}
	for _, l := range e.vxlanLinks() {
		out = append(out, l.Name)
	}
	for _, r := range e.snap.Routes {
		if r.Table == nodestate.TableMain && r.Dst.Bits() == 0 && r.Dst.Addr().Is4() && r.Dev != "" {
			out = append(out, r.Dev)
			break
		}
	}
	return out
}

func orUnknown(v string, ok bool) string {
	if !ok {
		return "(not captured)"
	}
	return v
}

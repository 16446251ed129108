package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/twillnet/twill/kubeproxy"
)

// Service addresses of every lab.
var (
	// KubernetesVIP is the "default/kubernetes" Service (rules only; F5a removes its DNAT).
	KubernetesVIP = netip.MustParseAddrPort("10.96.0.1:443")
	// WebVIP is the "lab/web" Service: every pod's server.
	WebVIP = netip.MustParseAddrPort("10.96.0.10:80")
)

// IPv6 Service addresses of a lab with IPv6 (--ip-family ipv6 or dual):
// the IPv6 twins of the ones above, in ServiceCIDRv6.
var (
	// ServiceCIDRv6 is the lab's IPv6 Service range: the second
	// --service-cluster-ip-range of its kube-apiserver (kube mode).
	// kube-apiserver takes an IPv6 range of at most 20 host bits (/108).
	ServiceCIDRv6 = netip.MustParsePrefix("fd00:96::/108")
	// KubernetesVIPv6 is default/kubernetes over IPv6 (etcd store only:
	// with the Kubernetes store the API server's own Service has its
	// primary family, IPv4).
	KubernetesVIPv6 = netip.MustParseAddrPort("[fd00:96::1]:443")
	// WebVIPv6 is lab/web over IPv6.
	WebVIPv6 = netip.MustParseAddrPort("[fd00:96::10]:80")
)

// LocalVIP is the "lab/local-node<i>" Service, whose only endpoint is pod b of
// node i: called from pod a of the same node it crosses only the node's
// bridge, which is what F1 (bridge-nf-call-iptables=0) breaks.
func LocalVIP(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, 1, byte(i)}), 80)
}

// LocalVIPv6 is LocalVIP over IPv6: [fd00:96::1:<i>]:80.
func LocalVIPv6(i int) netip.AddrPort {
	b := ServiceCIDRv6.Addr().As16()
	b[13], b[15] = 1, byte(i)
	return netip.AddrPortFrom(netip.AddrFrom16(b), 80)
}

// masqueradeRule is the pod network's own nat rule, appended to POSTROUTING.
var masqueradeRule = []string{"-s", ClusterCIDR.String(), "!", "-d", ClusterCIDR.String(), "-j", "MASQUERADE"}

// clusterIPs gives a lab Service the ClusterIPs of the families its pods
// run: v4 alone in an IPv4 lab (ClusterIPs left empty, as always), v6
// alone in an IPv6-only lab, both in a dual-stack lab (IPv4 first, as the
// lab's API server's primary range is IPv4).
func (st *State) clusterIPs(s *kubeproxy.Service, v4, v6 netip.Addr) {
	switch {
	case !st.HasIPv6():
		s.ClusterIP = v4
	case !st.HasIPv4():
		s.ClusterIP, s.ClusterIPs = v6, []netip.Addr{v6}
	default:
		s.ClusterIP, s.ClusterIPs = v4, []netip.Addr{v4, v6}
	}
}

// Services returns the lab's Services, the same on every node. In a lab
// with IPv6 they have ClusterIPs of each family its pods run, and
// endpoints of each.
//
// default/kubernetes points at 192.168.77.11:6443 (rules only; over IPv6
// [fd00:77::11]:6443), or in kube mode at the lab's real kube-apiserver,
// 192.168.77.1:6443, as its EndpointSlice says: the API server makes that
// Service of its primary family only (IPv4), so a kube-mode lab has no
// IPv6 default/kubernetes.
func (st *State) Services() []kubeproxy.Service {
	kube := kubeproxy.Service{Namespace: "default", Name: "kubernetes", PortName: "https",
		Port: int(KubernetesVIP.Port()), Protocol: "tcp"}
	if st.KubeMode() {
		kube.ClusterIP = KubernetesVIP.Addr()
		kube.Endpoints = []netip.AddrPort{netip.AddrPortFrom(UnderlayGateway, 6443)}
	} else {
		st.clusterIPs(&kube, KubernetesVIP.Addr(), KubernetesVIPv6.Addr())
		if st.HasIPv4() {
			kube.Endpoints = []netip.AddrPort{netip.AddrPortFrom(NodeIP(1), 6443)}
		}
		if st.HasIPv6() {
			kube.Endpoints = append(kube.Endpoints, netip.AddrPortFrom(NodeIPv6(1), 6443))
		}
	}
	svcs := []kubeproxy.Service{kube}
	web := kubeproxy.Service{Namespace: "lab", Name: "web", PortName: "http", Port: int(WebVIP.Port()), Protocol: "tcp"}
	st.clusterIPs(&web, WebVIP.Addr(), WebVIPv6.Addr())
	// A pod without an address yet (real nodes, before its Pod runs) is no
	// endpoint yet.
	endpoint := func(p Pod) []netip.AddrPort {
		var out []netip.AddrPort
		for _, a := range p.Addrs() {
			out = append(out, netip.AddrPortFrom(netip.MustParseAddr(a), ServerPort))
		}
		return out
	}
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			web.Endpoints = append(web.Endpoints, endpoint(p)...)
		}
	}
	svcs = append(svcs, web)
	for _, n := range st.Nodes {
		vip := LocalVIP(n.Index)
		local := kubeproxy.Service{Namespace: "lab", Name: "local-" + n.Name, PortName: "http",
			Port: int(vip.Port()), Protocol: "tcp", Endpoints: endpoint(localPod(&n))}
		st.clusterIPs(&local, vip.Addr(), LocalVIPv6(n.Index).Addr())
		svcs = append(svcs, local)
	}
	return svcs
}

// proxyFamily is one family's kube-proxy: its pod network (kube-proxy's
// --cluster-cidr of that family) and the restore and iptables tools of the
// lab's iptables-nft backend.
type proxyFamily struct {
	cidr          netip.Prefix
	restore, tool string
}

// proxyFamilies are the families whose Service rules the lab loads: those
// its pods run (IPv4 first).
func (st *State) proxyFamilies() []proxyFamily {
	var out []proxyFamily
	if st.HasIPv4() {
		out = append(out, proxyFamily{ClusterCIDR, "iptables-nft-restore", "iptables-nft"})
	}
	if st.HasIPv6() {
		out = append(out, proxyFamily{ClusterCIDRv6, "ip6tables-nft-restore", "ip6tables-nft"})
	}
	return out
}

// healthyRules is the iptables-restore (or ip6tables-restore) input of a
// healthy node for one family: kube-proxy's rules for the lab's Services
// of that family. Tables the renderer leaves out are still listed
// (empty), so restoring flushes whatever a scenario added there.
func (st *State) healthyRules(fam proxyFamily) string {
	rules := kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: fam.cidr}, st.Services())
	for _, table := range []string{"filter", "nat"} {
		if !strings.Contains(rules, "*"+table+"\n") {
			rules += "*" + table + "\nCOMMIT\n"
		}
	}
	return rules
}

// applyFirewall loads the healthy rules of each family the lab runs into
// node n's iptables-nft backend (flushing the tables they name), resets
// the FORWARD policy to ACCEPT and, in static mode, appends the masquerade
// rule (in agent mode masquerade is the agent's, in its own table). It is
// idempotent: Fix uses it too.
func applyFirewall(ctx context.Context, st *State, n *Node) error {
	for _, fam := range st.proxyFamilies() {
		if _, err := runIn(ctx, n.Namespace, st.healthyRules(fam), fam.restore); err != nil {
			return fmt.Errorf("node %s: load kube-proxy rules (%s): %w", n.Name, fam.restore, err)
		}
		if _, err := runIn(ctx, n.Namespace, "", fam.tool, "-t", "filter", "-P", "FORWARD", "ACCEPT"); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if st.AgentMode() {
		return nil
	}
	check := append([]string{"iptables-nft", "-t", "nat", "-C", "POSTROUTING"}, masqueradeRule...)
	if _, err := runIn(ctx, n.Namespace, "", check...); err != nil {
		add := append([]string{"iptables-nft", "-t", "nat", "-A", "POSTROUTING"}, masqueradeRule...)
		if _, err := runIn(ctx, n.Namespace, "", add...); err != nil {
			return fmt.Errorf("node %s: masquerade rule: %w", n.Name, err)
		}
	}
	return nil
}

// servicesText says in a line per family where the lab's Services are
// (lab up's summary).
func (st *State) servicesText() []string {
	var out []string
	if st.HasIPv4() {
		kubernetes := "10.96.0.1:443 (rules only)"
		if st.KubeMode() {
			kubernetes = "10.96.0.1:443 -> kube-apiserver 192.168.77.1:6443"
		}
		out = append(out, fmt.Sprintf("Services: 10.96.0.10:80 -> every pod :%d; 10.96.1.<i>:80 -> pod b of node<i>; %s", ServerPort, kubernetes))
	}
	if st.HasIPv6() {
		kubernetes := "; " + KubernetesVIPv6.String() + " (rules only)"
		if st.KubeMode() {
			kubernetes = " (default/kubernetes is IPv4 only: the API server's primary family)"
		}
		out = append(out, fmt.Sprintf("IPv6 Services (%s): %s -> every pod :%d; [%s:<i>]:80 -> pod b of node<i>%s",
			ServiceCIDRv6, WebVIPv6, ServerPort, strings.TrimSuffix(LocalVIPv6(0).Addr().String(), ":0"), kubernetes))
	}
	return out
}

// localVIPHint is node1's local Service as lab up suggests calling it:
// over IPv6 (quoted for the shell) in a lab with IPv6.
func localVIPHint(st *State) string {
	if st.HasIPv6() {
		return "'" + LocalVIPv6(1).String() + "'"
	}
	return LocalVIP(1).String()
}

// ServiceStatus is one lab Service in a Report: what kube-proxy's rules
// on every node translate.
type ServiceStatus struct {
	// Name is "namespace/name".
	Name string `json:"name"`
	// ClusterIPs are its addresses, one per family the lab runs, primary
	// first.
	ClusterIPs []string `json:"clusterIPs"`
	Port       int      `json:"port"`
	Protocol   string   `json:"protocol"`
	// Endpoints are "addr:port" (IPv6 in brackets).
	Endpoints []string `json:"endpoints"`
}

// serviceStatus lists st's Services for a Report.
func serviceStatus(st *State) []ServiceStatus {
	var out []ServiceStatus
	for _, s := range st.Services() {
		ss := ServiceStatus{Name: s.Namespace + "/" + s.Name, Port: s.Port, Protocol: s.Protocol, Endpoints: []string{}}
		for _, a := range s.Addrs() {
			ss.ClusterIPs = append(ss.ClusterIPs, a.String())
		}
		for _, ep := range s.Endpoints {
			ss.Endpoints = append(ss.Endpoints, ep.String())
		}
		out = append(out, ss)
	}
	return out
}

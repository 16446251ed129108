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

// LocalVIP is the "lab/local-node<i>" Service, whose only endpoint is pod b of
// node i: called from pod a of the same node it crosses only the node's
// bridge, which is what F1 (bridge-nf-call-iptables=0) breaks.
func LocalVIP(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, 1, byte(i)}), 80)
}

// masqueradeRule is the pod network's own nat rule, appended to POSTROUTING.
var masqueradeRule = []string{"-s", ClusterCIDR.String(), "!", "-d", ClusterCIDR.String(), "-j", "MASQUERADE"}

// Services returns the lab's Services, the same on every node.
//
// default/kubernetes points at 192.168.77.11:6443 (rules only), or in kube
// mode at the lab's real kube-apiserver, 192.168.77.1:6443, as its
// EndpointSlice says.
func (st *State) Services() []kubeproxy.Service {
	apiserver := netip.AddrPortFrom(NodeIP(1), 6443)
	if st.KubeMode() {
		apiserver = netip.AddrPortFrom(UnderlayGateway, 6443)
	}
	svcs := []kubeproxy.Service{{
		Namespace: "default", Name: "kubernetes", PortName: "https",
		ClusterIP: KubernetesVIP.Addr(), Port: int(KubernetesVIP.Port()), Protocol: "tcp",
		Endpoints: []netip.AddrPort{apiserver},
	}}
	web := kubeproxy.Service{Namespace: "lab", Name: "web", PortName: "http",
		ClusterIP: WebVIP.Addr(), Port: int(WebVIP.Port()), Protocol: "tcp"}
	// A pod without an address yet (real nodes, before its Pod runs) is no
	// endpoint yet.
	endpoint := func(p Pod) []netip.AddrPort {
		if p.IP == "" {
			return nil
		}
		return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(p.IP), ServerPort)}
	}
	for _, n := range st.Nodes {
		for _, p := range n.Pods {
			web.Endpoints = append(web.Endpoints, endpoint(p)...)
		}
	}
	svcs = append(svcs, web)
	for _, n := range st.Nodes {
		vip := LocalVIP(n.Index)
		svcs = append(svcs, kubeproxy.Service{Namespace: "lab", Name: "local-" + n.Name, PortName: "http",
			ClusterIP: vip.Addr(), Port: int(vip.Port()), Protocol: "tcp",
			Endpoints: endpoint(localPod(&n))})
	}
	return svcs
}

// healthyRules is the iptables-restore input of a healthy node: kube-proxy's
// rules for the lab's Services. Tables the renderer leaves out are still
// listed (empty), so restoring flushes whatever a scenario added there.
func (st *State) healthyRules() string {
	rules := kubeproxy.RenderIptables(kubeproxy.Config{ClusterCIDR: ClusterCIDR}, st.Services())
	for _, table := range []string{"filter", "nat"} {
		if !strings.Contains(rules, "*"+table+"\n") {
			rules += "*" + table + "\nCOMMIT\n"
		}
	}
	return rules
}

// applyFirewall loads the healthy rules into node n's iptables-nft backend
// (flushing the tables they name), resets the FORWARD policy to ACCEPT and,
// in static mode, appends the masquerade rule (in agent mode masquerade is
// the agent's, in its own table). It is idempotent: Fix uses it too.
func applyFirewall(ctx context.Context, st *State, n *Node) error {
	if _, err := runIn(ctx, n.Namespace, st.healthyRules(), "iptables-nft-restore"); err != nil {
		return fmt.Errorf("node %s: load kube-proxy rules: %w", n.Name, err)
	}
	if _, err := runIn(ctx, n.Namespace, "", "iptables-nft", "-t", "filter", "-P", "FORWARD", "ACCEPT"); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
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

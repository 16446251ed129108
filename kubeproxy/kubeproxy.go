// Package kubeproxy renders the iptables rules that kube-proxy (iptables
// mode) writes for a set of Services, so that the lab and the benchmarks
// exercise rule sets shaped like real clusters: KUBE-SERVICES, KUBE-SVC-*
// with statistic random, KUBE-SEP-* DNAT, KUBE-MARK-MASQ, KUBE-POSTROUTING,
// KUBE-FORWARD and KUBE-FIREWALL.
package kubeproxy

import "net/netip"

// Service is one ClusterIP Service with its ready endpoints.
type Service struct {
	Namespace string
	Name      string
	// PortName is the Service port's name ("http"), may be empty.
	PortName string
	// ClusterIP is the Service's primary address (spec.clusterIP).
	ClusterIP netip.Addr
	// ClusterIPs are a dual-stack Service's addresses, one per family,
	// ClusterIP first (spec.clusterIPs). Empty means ClusterIP alone.
	ClusterIPs []netip.Addr
	Port       int
	// Protocol is "tcp" or "udp".
	Protocol  string
	Endpoints []netip.AddrPort
}

// Config is the cluster-wide part of kube-proxy's configuration.
type Config struct {
	// ClusterCIDR is the pod network; traffic to a ClusterIP from outside it is masqueraded.
	ClusterCIDR netip.Prefix
}

// Addrs returns the Service's ClusterIPs, primary first: ClusterIPs, or
// ClusterIP alone when ClusterIPs is empty.
func (s Service) Addrs() []netip.Addr {
	if len(s.ClusterIPs) > 0 {
		return s.ClusterIPs
	}
	if s.ClusterIP.IsValid() {
		return []netip.Addr{s.ClusterIP}
	}
	return nil
}

// ClusterIPOf returns the Service's ClusterIP of one family (IPv6 when v6
// is true) and whether it has one. kube-proxy runs one proxier per
// family, and each renders the Service with its own family's ClusterIP.
func (s Service) ClusterIPOf(v6 bool) (netip.Addr, bool) {
	for _, a := range s.Addrs() {
		if a = a.Unmap(); a.IsValid() && a.Is6() == v6 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

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
	PortName  string
	ClusterIP netip.Addr
	Port      int
	// Protocol is "tcp" or "udp".
	Protocol  string
	Endpoints []netip.AddrPort
}

// Config is the cluster-wide part of kube-proxy's configuration.
type Config struct {
	// ClusterCIDR is the pod network; traffic to a ClusterIP from outside it is masqueraded.
	ClusterCIDR netip.Prefix
}

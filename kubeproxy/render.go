package kubeproxy

import (
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/twillnet/twill/netfilter"
)

// Marks and comments kube-proxy and kubelet use.
const (
	masqMark = "0x4000"
	dropMark = "0x8000"

	commentNodePortsLast = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
)

// RenderIptables returns iptables-restore input (a *filter and a *nat
// table, each ending in COMMIT) with the rules kube-proxy's iptables mode,
// together with kubelet's KUBE-FIREWALL, keeps on a node for svcs.
//
// The output is self-contained: it declares the built-in chains with policy
// ACCEPT, so a full `iptables-restore` (no --noflush) of it replaces both
// tables. Chains are declared in the order iptables-save lists them
// (built-ins, then user chains sorted by name) and each chain's rules are
// written together in that order, with arguments in iptables-save's order;
// apart from MARK's --or-mark/--xor-mark, which iptables-save prints as
// --set-xmark, `iptables-save` prints the loaded rules back identically.
//
// The address family is that of cfg.ClusterCIDR (IPv4 when unset): feed the
// output to iptables-restore or ip6tables-restore accordingly. A
// dual-stack Service (ClusterIPs) is rendered with its ClusterIP of that
// family; Services without one and endpoints of the other family are
// left out. Services are sorted by
// namespace, name, port name and protocol, endpoints by address, so equal
// input gives byte-identical output.
func RenderIptables(cfg Config, svcs []Service) string {
	v6 := cfg.ClusterCIDR.IsValid() && cfg.ClusterCIDR.Addr().Is6()
	list := prepare(svcs, v6)

	var b strings.Builder
	b.Grow(64 + len(list)*900)
	renderFilter(&b, cfg, list, v6)
	renderNat(&b, cfg, list, v6)
	return b.String()
}

// svcInfo is one Service with its derived names.
type svcInfo struct {
	Service
	spn      string // "ns/name:port" as kube-proxy's ServicePortName prints it
	proto    string // lower-case protocol
	chain    string // KUBE-SVC-...
	vip      string // ClusterIP with its host prefix, "10.96.0.1/32"
	eps      []netip.AddrPort
	sepChain []string // KUBE-SEP-... per endpoint
}

func prepare(svcs []Service, v6 bool) []svcInfo {
	list := make([]svcInfo, 0, len(svcs))
	for _, s := range svcs {
		vip, ok := s.ClusterIPOf(v6)
		if !ok {
			continue
		}
		s.ClusterIP = vip
		si := svcInfo{Service: s, proto: strings.ToLower(s.Protocol)}
		if si.proto == "" {
			si.proto = "tcp"
		}
		si.spn = s.Namespace + "/" + s.Name
		if s.PortName != "" {
			si.spn += ":" + s.PortName
		}
		si.chain = ServiceChain(si.spn, si.proto)
		bits := 32
		if v6 {
			bits = 128
		}
		si.vip = s.ClusterIP.String() + "/" + strconv.Itoa(bits)
		for _, ep := range s.Endpoints {
			ep = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
			if ep.Addr().IsValid() && ep.Addr().Is6() == v6 {
				si.eps = append(si.eps, ep)
			}
		}
		slices.SortFunc(si.eps, func(a, b netip.AddrPort) int { return a.Compare(b) })
		si.eps = slices.Compact(si.eps)
		for _, ep := range si.eps {
			si.sepChain = append(si.sepChain, EndpointChain(si.spn, si.proto, ep.String()))
		}
		list = append(list, si)
	}
	slices.SortFunc(list, func(a, b svcInfo) int {
		return cmp.Or(
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.PortName, b.PortName),
			cmp.Compare(a.proto, b.proto),
			cmp.Compare(a.Port, b.Port),
			a.ClusterIP.Compare(b.ClusterIP),
		)
	})
	// Two entries for the same service port would declare its chains twice,
	// which iptables-restore rejects: keep the first.
	return slices.CompactFunc(list, func(a, b svcInfo) bool { return a.chain == b.chain })
}

// ServiceChain returns kube-proxy's KUBE-SVC chain name for a service port
// ("ns/name:port" or "ns/name" when the port has no name) and protocol
// ("tcp"): 16 characters of the base32 of a sha256.
func ServiceChain(servicePortName, protocol string) string {
	return "KUBE-SVC-" + portProtoHash(servicePortName+protocol)
}

// EndpointChain returns kube-proxy's KUBE-SEP chain name for one endpoint
// ("10.244.1.5:8080") of a service port.
func EndpointChain(servicePortName, protocol, endpoint string) string {
	return "KUBE-SEP-" + portProtoHash(servicePortName+protocol+endpoint)
}

func portProtoHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

// Probability returns the --probability kube-proxy gives the i-th (0-based)
// of n endpoints, 1/(n-i), as iptables-save prints it back: kube-proxy
// writes ten decimals, the kernel keeps a 31-bit fraction and iptables
// prints that with eleven decimals.
func Probability(i, n int) string {
	p, _ := strconv.ParseFloat(fmt.Sprintf("%0.10f", 1.0/float64(n-i)), 64)
	frac := math.Round(p * (1 << 31))
	return fmt.Sprintf("%.11f", frac/(1<<31))
}

// rules collects the rule lines of one table, grouped per chain.
type rules map[string][]string

func (r rules) add(chain string, args ...string) {
	r[chain] = append(r[chain], "-A "+chain+" "+strings.Join(args, " "))
}

func comment(s string) string { return "-m comment --comment " + netfilter.QuoteWord(s) }

// writeTable writes one table: built-in chains with policy ACCEPT, user
// chains sorted by name, then every chain's rules in that order.
func writeTable(b *strings.Builder, name string, builtins, user []string, r rules) {
	slices.Sort(user)
	b.WriteString("*" + name + "\n")
	for _, c := range builtins {
		b.WriteString(":" + c + " ACCEPT [0:0]\n")
	}
	for _, c := range user {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, list := range [][]string{builtins, user} {
		for _, c := range list {
			for _, line := range r[c] {
				b.WriteString(line)
				b.WriteByte('\n')
			}
		}
	}
	b.WriteString("COMMIT\n")
}

func renderFilter(b *strings.Builder, cfg Config, list []svcInfo, v6 bool) {
	r := rules{}
	ctNew := "-m conntrack --ctstate NEW"
	r.add("INPUT", ctNew, comment("kubernetes load balancer firewall"), "-j KUBE-PROXY-FIREWALL")
	r.add("INPUT", comment("kubernetes health check service ports"), "-j KUBE-NODEPORTS")
	r.add("INPUT", ctNew, comment("kubernetes externally-visible service portals"), "-j KUBE-EXTERNAL-SERVICES")
	r.add("INPUT", "-j KUBE-FIREWALL")
	r.add("FORWARD", ctNew, comment("kubernetes load balancer firewall"), "-j KUBE-PROXY-FIREWALL")
	r.add("FORWARD", comment("kubernetes forwarding rules"), "-j KUBE-FORWARD")
	r.add("FORWARD", ctNew, comment("kubernetes service portals"), "-j KUBE-SERVICES")
	r.add("FORWARD", ctNew, comment("kubernetes externally-visible service portals"), "-j KUBE-EXTERNAL-SERVICES")
	r.add("OUTPUT", ctNew, comment("kubernetes load balancer firewall"), "-j KUBE-PROXY-FIREWALL")
	r.add("OUTPUT", ctNew, comment("kubernetes service portals"), "-j KUBE-SERVICES")
	r.add("OUTPUT", "-j KUBE-FIREWALL")

	if !v6 {
		r.add("KUBE-FIREWALL", "! -s 127.0.0.0/8 -d 127.0.0.0/8", comment("block incoming localnet connections"),
			"-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
	}
	r.add("KUBE-FIREWALL", comment("kubernetes firewall for dropping marked packets"),
		"-m mark --mark "+dropMark+"/"+dropMark, "-j DROP")

	r.add("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP")
	r.add("KUBE-FORWARD", comment("kubernetes forwarding rules"), "-m mark --mark "+masqMark+"/"+masqMark, "-j ACCEPT")
	r.add("KUBE-FORWARD", comment("kubernetes forwarding conntrack rule"), "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

	reject := "icmp-port-unreachable"
	if v6 {
		reject = "icmp6-port-unreachable"
	}
	for i := range list {
		s := &list[i]
		if len(s.eps) > 0 {
			continue
		}
		r.add("KUBE-SERVICES", "-d "+s.vip, "-p "+s.proto, comment(s.spn+" has no endpoints"),
			"-m "+s.proto, "--dport "+strconv.Itoa(s.Port), "-j REJECT --reject-with "+reject)
	}
	user := []string{"KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"}
	writeTable(b, "filter", []string{"INPUT", "FORWARD", "OUTPUT"}, user, r)
}

func renderNat(b *strings.Builder, cfg Config, list []svcInfo, v6 bool) {
	r := rules{}
	r.add("PREROUTING", comment("kubernetes service portals"), "-j KUBE-SERVICES")
	r.add("OUTPUT", comment("kubernetes service portals"), "-j KUBE-SERVICES")
	r.add("POSTROUTING", comment("kubernetes postrouting rules"), "-j KUBE-POSTROUTING")
	r.add("KUBE-MARK-DROP", "-j MARK --or-mark "+dropMark)
	r.add("KUBE-MARK-MASQ", "-j MARK --or-mark "+masqMark)
	r.add("KUBE-POSTROUTING", "-m mark ! --mark "+masqMark+"/"+masqMark, "-j RETURN")
	r.add("KUBE-POSTROUTING", "-j MARK --xor-mark "+masqMark)
	r.add("KUBE-POSTROUTING", comment("kubernetes service traffic requiring SNAT"), "-j MASQUERADE --random-fully")

	user := []string{"KUBE-MARK-DROP", "KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES"}
	for i := range list {
		s := &list[i]
		if len(s.eps) == 0 {
			continue
		}
		port := strconv.Itoa(s.Port)
		clusterIP := comment(s.spn + " cluster IP")
		r.add("KUBE-SERVICES", "-d "+s.vip, "-p "+s.proto, clusterIP, "-m "+s.proto, "--dport "+port, "-j "+s.chain)
		user = append(user, s.chain)
		if cfg.ClusterCIDR.IsValid() {
			r.add(s.chain, "! -s "+cfg.ClusterCIDR.Masked().String(), "-d "+s.vip, "-p "+s.proto, clusterIP,
				"-m "+s.proto, "--dport "+port, "-j KUBE-MARK-MASQ")
		}
		n := len(s.eps)
		for j, ep := range s.eps {
			sep := s.sepChain[j]
			user = append(user, sep)
			c := comment(s.spn + " -> " + ep.String())
			if j < n-1 {
				r.add(s.chain, c, "-m statistic --mode random --probability "+Probability(j, n), "-j "+sep)
			} else {
				r.add(s.chain, c, "-j "+sep)
			}
			host := "/32"
			if v6 {
				host = "/128"
			}
			spn := comment(s.spn)
			r.add(sep, "-s "+ep.Addr().String()+host, spn, "-j KUBE-MARK-MASQ")
			r.add(sep, "-p "+s.proto, spn, "-m "+s.proto, "-j DNAT --to-destination "+ep.String())
		}
	}
	r.add("KUBE-SERVICES", comment(commentNodePortsLast), "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
	writeTable(b, "nat", []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, user, r)
}

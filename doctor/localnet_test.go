package doctor

import (
	"slices"
	"strings"
	"testing"

	"github.com/twillnet/twill/nodestate"
)

// nodePortRule is a NodePort Service as kube-proxy's iptables mode writes it.
const nodePortRule = `-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-EXT-WEB`

// withNodePort adds a NodePort Service to the fixture's nat table and
// replaces its KUBE-NODEPORTS jump by jump (empty keeps kube-proxy's
// default "-m addrtype --dst-type LOCAL").
func withNodePort(t *testing.T, s *nodestate.Snapshot, jump string) {
	t.Helper()
	save := s.Iptables.NFT.Save
	old := `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`
	if !strings.Contains(save, old) {
		t.Fatal("fixture lacks kube-proxy's KUBE-NODEPORTS jump")
	}
	if jump != "" {
		save = strings.Replace(save, old, jump, 1)
	}
	save = strings.Replace(save, ":KUBE-NODEPORTS - [0:0]\n", ":KUBE-NODEPORTS - [0:0]\n:KUBE-EXT-WEB - [0:0]\n", 1)
	save = strings.Replace(save, "COMMIT\n", "", 2) // filter's and nat's
	save = strings.Replace(save, "*nat\n", "COMMIT\n*nat\n", 1)
	s.Iptables.NFT.Save = save + nodePortRule + "\n-A KUBE-EXT-WEB -j KUBE-MARK-MASQ\nCOMMIT\n"
}

func TestRouteLocalnet(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(t *testing.T, s *nodestate.Snapshot)
		want    []string
		skipped bool
	}{
		{"no NodePorts: nothing to check", func(t *testing.T, s *nodestate.Snapshot) {}, nil, false},
		{"localhost NodePorts, route_localnet on", func(t *testing.T, s *nodestate.Snapshot) {
			withNodePort(t, s, "")
			s.Sysctls["net.ipv4.conf.all.route_localnet"] = "1"
		}, nil, false},
		{"localhost NodePorts, route_localnet off", func(t *testing.T, s *nodestate.Snapshot) {
			withNodePort(t, s, "")
			s.Sysctls["net.ipv4.conf.all.route_localnet"] = "0"
		}, []string{"TW063"}, false},
		{"localhost NodePorts, off in all but on for every pod-path device", func(t *testing.T, s *nodestate.Snapshot) {
			withNodePort(t, s, "")
			s.Sysctls["net.ipv4.conf.all.route_localnet"] = "0"
			for _, d := range []string{"cni0", "twill.1", "eth0"} {
				s.Sysctls[nodestate.RouteLocalnetKey(d)] = "1"
			}
		}, nil, false},
		{"--iptables-localhost-nodeports=false: no localhost NodePorts", func(t *testing.T, s *nodestate.Snapshot) {
			withNodePort(t, s, `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS`)
			s.Sysctls["net.ipv4.conf.all.route_localnet"] = "0"
		}, nil, false},
		{"--nodeport-addresses with 127.0.0.1", func(t *testing.T, s *nodestate.Snapshot) {
			withNodePort(t, s, `-A KUBE-SERVICES -d 192.168.77.11/32 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
-A KUBE-SERVICES -d 127.0.0.1/32 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS`)
			s.Sysctls["net.ipv4.conf.all.route_localnet"] = "0"
		}, []string{"TW063"}, false},
		{"--nodeport-addresses without localhost", func(t *testing.T, s *nodestate.Snapshot) {
			withNodePort(t, s, `-A KUBE-SERVICES -d 192.168.77.11/32 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS`)
			s.Sysctls["net.ipv4.conf.all.route_localnet"] = "0"
		}, nil, false},
		{"localhost NodePorts, route_localnet not captured", func(t *testing.T, s *nodestate.Snapshot) {
			withNodePort(t, s, "")
			delete(s.Sysctls, "net.ipv4.conf.all.route_localnet")
		}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := healthyNode(t)
			c.mutate(t, s)
			r := Run(s, Config{})
			if got := r.IDs(); !slices.Equal(got, c.want) {
				logFindings(t, r)
				t.Fatalf("findings %v, want %v", got, c.want)
			}
			skipped := slices.ContainsFunc(r.NotChecked, func(n NotChecked) bool { return n.ID == "TW063" })
			if skipped != c.skipped || len(r.NotChecked) > 1 {
				t.Fatalf("not checked %+v, want TW063 skipped %t", r.NotChecked, c.skipped)
			}
			if len(c.want) > 0 {
				f := r.Findings[0]
				if f.Severity != Warning || !slices.ContainsFunc(f.Evidence, func(e string) bool { return strings.Contains(e, "-j KUBE-NODEPORTS") }) || !strings.Contains(f.Fix, "route_localnet=1") {
					t.Fatalf("finding %+v", f)
				}
			}
		})
	}
}

// ip6NodePorts is kube-proxy's ip6tables nat table with one NodePort
// Service, its KUBE-NODEPORTS jump given.
func ip6NodePorts(jump string) string {
	return "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
		":KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-EXT-WEB - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n" +
		"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n" +
		"-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n" +
		jump + "\n" + nodePortRule + "\n-A KUBE-EXT-WEB -j KUBE-MARK-MASQ\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\nCOMMIT\n"
}

// TestRouteLocalnetIPv6: IPv6 has no route_localnet. kube-proxy's
// ip6tables jump to KUBE-NODEPORTS excludes ::1 and is fine; a jump that
// lets [::1] in offers NodePort calls that always fail (a warning whatever
// the sysctls), named with the ip6tables rule.
func TestRouteLocalnetIPv6(t *testing.T) {
	const kubeProxyJump = `-A KUBE-SERVICES ! -d ::1/128 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`
	for _, c := range []struct {
		name, jump string
		want       []string
	}{
		{"kube-proxy's IPv6 NodePorts (! -d ::1/128)", kubeProxyJump, nil},
		{"[::1] let into KUBE-NODEPORTS", strings.Replace(kubeProxyJump, "! -d ::1/128 ", "", 1), []string{"TW063 WARNING"}},
		{"--nodeport-addresses with ::1", `-A KUBE-SERVICES -d ::1/128 -j KUBE-NODEPORTS`, []string{"TW063 WARNING"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := loadAgentState(t, "dual-vxlan")
			s.Sysctls["net.ipv4.conf.all.route_localnet"] = "1"
			s.Iptables.NFT.Save6 = ip6NodePorts(c.jump)
			r := Run(s, Config{})
			if got := findingIDs(r); !slices.Equal(got, c.want) {
				logFindings(t, r)
				t.Fatalf("findings %v, want %v", got, c.want)
			}
			if len(c.want) > 0 {
				f := r.Findings[0]
				if !strings.Contains(f.Title, "[::1]") || !slices.ContainsFunc(f.Evidence, func(e string) bool { return strings.HasPrefix(e, "ip6tables-nft nat: ") }) || !strings.Contains(f.Fix, "! -d ::1/128") {
					t.Fatalf("finding %+v", f)
				}
			}
		})
	}
}

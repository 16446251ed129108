package lab

import (
	"strings"
	"testing"

	"github.com/twillnet/twill/netconf"
)

// Pure logic: no root needed.

func TestIPFamilyValidate(t *testing.T) {
	for _, c := range []Config{
		{Agent: true, IPFamily: "ip6"},
		{IPFamily: IPFamilyDual}, // static
		{Agent: true, IPFamily: IPFamilyDual, Nodes: 2, FlannelNodes: 1},
		{Agent: true, IPFamily: IPFamilyDual, Kubernetes: true}, // real nodes
	} {
		err := c.withDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), "--ip-family") {
			t.Errorf("config %+v: %v, want an --ip-family error", c, err)
		}
	}
	for _, f := range []string{"", IPFamilyIPv4, IPFamilyIPv6, IPFamilyDual} {
		for _, store := range []string{StoreEtcd, StoreKubernetes} {
			if err := (Config{Agent: true, IPFamily: f, Store: store}).withDefaults().Validate(); err != nil {
				t.Errorf("--ip-family %q in agent mode, store %s rejected: %v", f, store, err)
			}
		}
	}
}

// TestKubeNodeFamilies checks the Node objects a kube-store lab registers:
// one podCIDR and one InternalIP per family, IPv4 first, and spec.podCIDR
// the first of spec.podCIDRs (what the API server requires).
func TestKubeNodeFamilies(t *testing.T) {
	for _, tc := range []struct {
		family     string
		cidrs, ips []string
	}{
		{IPFamilyIPv4, []string{"10.244.2.0/24"}, []string{"192.168.77.12"}},
		{IPFamilyDual, []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, []string{"192.168.77.12", "fd00:77::12"}},
		{IPFamilyIPv6, []string{"fd00:10:244:2::/64"}, []string{"192.168.77.12", "fd00:77::12"}},
	} {
		st := plan(Config{Name: "x", Nodes: 2, Pods: 1, Agent: true, Backend: BackendVXLAN, Store: StoreKubernetes, IPFamily: tc.family}.withDefaults())
		n := &st.Nodes[1]
		obj := kubeNode(n)
		if strings.Join(obj.Spec.PodCIDRs, ",") != strings.Join(tc.cidrs, ",") || obj.Spec.PodCIDR != tc.cidrs[0] {
			t.Errorf("%s: podCIDR %q podCIDRs %q, want %q", tc.family, obj.Spec.PodCIDR, obj.Spec.PodCIDRs, tc.cidrs)
		}
		var ips []string
		for _, a := range nodeAddresses(n) {
			if a.Type == "InternalIP" {
				ips = append(ips, a.Address)
			}
		}
		if strings.Join(ips, ",") != strings.Join(tc.ips, ",") {
			t.Errorf("%s: InternalIPs %q, want %q", tc.family, ips, tc.ips)
		}
	}
}

func TestPlanIPFamily(t *testing.T) {
	v4 := plan(Config{Name: "x", Nodes: 2, Pods: 1, Agent: true, Backend: BackendVXLAN}.withDefaults())
	if v4.IPFamily != "" || v4.Nodes[1].IPv6 != "" || v4.Nodes[1].IPv6Subnet != "" || !v4.HasIPv4() || v4.HasIPv6() {
		t.Errorf("an IPv4 lab plans IPv6: %+v", v4.Nodes[1])
	}
	for _, f := range []string{IPFamilyDual, IPFamilyIPv6} {
		st := plan(Config{Name: "x", Nodes: MaxNodes, Pods: 1, Agent: true, Backend: BackendVXLAN, IPFamily: f}.withDefaults())
		n := st.Nodes[MaxNodes-1]
		if n.IPv6 != "fd00:77::24" || n.IPv6Subnet != "fd00:10:244:14::/64" || n.IP != "192.168.77.30" {
			t.Errorf("%s: node20 %s %s %s", f, n.IP, n.IPv6, n.IPv6Subnet)
		}
		if got := n.Subnet != ""; got != (f == IPFamilyDual) {
			t.Errorf("%s: node IPv4 subnet %q", f, n.Subnet)
		}
		cfg, err := netConf(st)
		if err != nil {
			t.Fatalf("%s: net-conf %s: %v", f, netConfJSON(st), err)
		}
		want := []netconf.Family{netconf.IPv6}
		if f == IPFamilyDual {
			want = []netconf.Family{netconf.IPv4, netconf.IPv6}
		}
		if got := cfg.Families(); len(got) != len(want) || got[len(got)-1] != netconf.IPv6 || got[0] != want[0] {
			t.Errorf("%s: net-conf families %v, want %v", f, got, want)
		}
		pool := cfg.Pool(netconf.IPv6)
		for _, node := range st.Nodes {
			sn := NodeSubnetV6(node.Index)
			if !pool.Allocatable(sn) {
				t.Errorf("%s: %s's IPv6 subnet %s is not allocatable in %s", f, node.Name, sn, ClusterCIDRv6)
			}
		}
		info := nodeFileInfo(st, &st.Nodes[0])
		if info.IPv6Subnet.String() != "fd00:10:244:1::1/64" || (info.Subnet.IsValid() != (f == IPFamilyDual)) {
			t.Errorf("%s: seed subnet file %+v", f, info)
		}
	}
}

func TestCallTarget(t *testing.T) {
	st := plan(Config{Name: "x", Nodes: 2, Pods: 1, Agent: true, IPFamily: IPFamilyDual}.withDefaults())
	st.Nodes[1].Pods[0].IP, st.Nodes[1].Pods[0].IPv6 = "10.244.2.2", "fd00:10:244:2::2"
	for _, c := range []struct{ dst, family, want string }{
		{"node2-a", "", "10.244.2.2:8080"},
		{"node2-a", "ipv4", "10.244.2.2:8080"},
		{"node2-a", "ipv6", "[fd00:10:244:2::2]:8080"},
		{"[fd00::1]:99", "", "[fd00::1]:99"},
		{"10.96.0.10:80", "", "10.96.0.10:80"},
	} {
		got, err := st.CallTarget(c.dst, c.family)
		if err != nil || got != c.want {
			t.Errorf("CallTarget(%q, %q) = %q, %v; want %q", c.dst, c.family, got, err, c.want)
		}
	}
	st.Nodes[1].Pods[0].IP = "" // IPv6 only
	if got, err := st.CallTarget("node2-a", ""); got != "[fd00:10:244:2::2]:8080" || err != nil {
		t.Errorf("IPv6-only pod: %q, %v", got, err)
	}
	for _, c := range [][2]string{{"node2-a", "ipv4"}, {"node2-a", "v6"}, {"10.96.0.10:80", "ipv6"}} {
		if got, err := st.CallTarget(c[0], c[1]); err == nil {
			t.Errorf("CallTarget(%q, %q) = %q, want an error", c[0], c[1], got)
		}
	}
}

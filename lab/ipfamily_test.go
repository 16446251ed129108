package lab

import (
	"fmt"
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
		{"web", "", "10.96.0.10:80"},
		{"lab/web", "ipv6", "[fd00:96::10]:80"},
		{"local-node2", "ipv6", "[fd00:96::1:2]:80"},
		{"default/kubernetes", "ipv6", "[fd00:96::1]:443"},
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
	// An IPv6-only lab's Services are IPv6 only.
	st6 := plan(Config{Name: "x", Nodes: 2, Pods: 1, Agent: true, IPFamily: IPFamilyIPv6}.withDefaults())
	if got, err := st6.CallTarget("web", ""); got != "[fd00:96::10]:80" || err != nil {
		t.Errorf("IPv6-only lab, web: %q, %v", got, err)
	}
	if got, err := st6.CallTarget("web", "ipv4"); err == nil {
		t.Errorf("IPv6-only lab, web over ipv4: %q, want an error", got)
	}
	for _, c := range [][2]string{{"node2-a", "ipv4"}, {"node2-a", "v6"}, {"10.96.0.10:80", "ipv6"}} {
		if got, err := st.CallTarget(c[0], c[1]); err == nil {
			t.Errorf("CallTarget(%q, %q) = %q, want an error", c[0], c[1], got)
		}
	}
}

// TestServicesPerFamily: a dual-stack lab's Services have a ClusterIP of
// each family (IPv4 first) and endpoints of each, and each family's rules
// translate that family's ClusterIP to that family's endpoints; an
// IPv6-only lab's are IPv6 only; in kube mode default/kubernetes stays the
// API server's IPv4 Service.
func TestServicesPerFamily(t *testing.T) {
	st := plan(Config{Name: "x", Nodes: 2, Pods: 2, Agent: true, IPFamily: IPFamilyDual}.withDefaults())
	for i := range st.Nodes {
		for k := range st.Nodes[i].Pods {
			p := &st.Nodes[i].Pods[k]
			p.IP, p.IPv6 = fmt.Sprintf("10.244.%d.%d", i+1, 10+k), fmt.Sprintf("fd00:10:244:%d::%x", i+1, 10+k)
		}
	}
	web, ok := st.service("web")
	if !ok || fmt.Sprint(web.Addrs()) != "[10.96.0.10 fd00:96::10]" || len(web.Endpoints) != 8 {
		t.Fatalf("dual lab/web: %+v", web)
	}
	local, _ := st.service("local-node2")
	if fmt.Sprint(local.Addrs()) != "[10.96.1.2 fd00:96::1:2]" || fmt.Sprint(local.Endpoints) != "[10.244.2.11:8080 [fd00:10:244:2::b]:8080]" {
		t.Errorf("dual lab/local-node2: %v -> %v", local.Addrs(), local.Endpoints)
	}
	fams := st.proxyFamilies()
	if len(fams) != 2 || fams[1].restore != "ip6tables-nft-restore" {
		t.Fatalf("dual lab: proxy families %+v", fams)
	}
	v6 := st.healthyRules(fams[1])
	for _, want := range []string{"-d fd00:96::10/128 -p tcp", "-d fd00:96::1:2/128", "--to-destination [fd00:10:244:2::b]:8080", "! -s fd00:10:244::/56", "*filter\n", "*nat\n"} {
		if !strings.Contains(v6, want) {
			t.Errorf("dual lab: ip6tables rules lack %q:\n%s", want, v6)
		}
	}
	if strings.Contains(v6, "10.96.") || strings.Contains(v6, "10.244.") {
		t.Errorf("dual lab: IPv4 addresses in the ip6tables rules:\n%s", v6)
	}

	st6 := plan(Config{Name: "x", Nodes: 1, Pods: 1, Agent: true, IPFamily: IPFamilyIPv6}.withDefaults())
	if fams := st6.proxyFamilies(); len(fams) != 1 || fams[0].cidr != ClusterCIDRv6 {
		t.Errorf("IPv6-only lab: proxy families %+v, want IPv6 only", fams)
	}
	if k, _ := st6.service("default/kubernetes"); fmt.Sprint(k.Addrs()) != "[fd00:96::1]" || fmt.Sprint(k.Endpoints) != "[[fd00:77::11]:6443]" {
		t.Errorf("IPv6-only lab: default/kubernetes %v -> %v", k.Addrs(), k.Endpoints)
	}
	st.Store, st.Kube = StoreKubernetes, &KubeState{}
	if k, _ := st.service("default/kubernetes"); fmt.Sprint(k.Addrs()) != "[10.96.0.1]" {
		t.Errorf("kube-mode dual lab: default/kubernetes %v, want the API server's IPv4 one", k.Addrs())
	}
	if got := kubeServiceCIDRs(st); got != "10.96.0.0/12,fd00:96::/108" {
		t.Errorf("kube-mode dual lab: --service-cluster-ip-range %s", got)
	}
}

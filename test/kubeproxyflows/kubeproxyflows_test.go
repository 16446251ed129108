package kubeproxyflows

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/twillnet/twill/backend/testbed"
	"github.com/twillnet/twill/checkid"
	"github.com/twillnet/twill/doctor"
	"github.com/twillnet/twill/kubecreds"
	"github.com/twillnet/twill/lease/etcd/etcdtest"
	"github.com/twillnet/twill/lease/kube/kubetest"
	"github.com/twillnet/twill/nodestate"
	"github.com/twillnet/twill/nsrun"
	"github.com/twillnet/twill/trace"
)

// The node kube-proxy runs for, and the outside host the external clients
// live on (two captured namespaces: the trace's two hosts).
const (
	nodeName    = "test-node"
	outsideName = "outside"
	namespace   = "kpf"
	clusterCIDR = "10.0.0.0/8,fd00:10::/64"
	serviceCIDR = "172.30.0.0/16,fd00:172:30::/112"
)

// family is one IP family's addresses, by the names flows and Services use.
// IPv4 takes kube-proxy's unit-test addresses (proxier_test.go: node
// 192.168.0.2, pods 10.0.0.0/8, endpoints 10.180.x, Services 172.30.0.x,
// external client 203.0.113.2, LoadBalancer IPs 1.2.3.4 and 5.6.7.8);
// IPv6 takes their IPv6 ones where TestNodePorts has them (node
// 2001:db8::1 and 2001:db8:1::2, pod fd00:10::2, endpoints fd00:10:180::1
// and fd00:10:180::2:1, Service fd00:172:30::41, client 2600:5200::1) and
// twins of the IPv4 ones elsewhere. Where one Service per unit test would
// reuse an address, each Service here gets its own.
type family struct {
	name string
	v6   bool
	a    map[string]string
	// prefix lengths of the node's and the outside's addresses and of the pod bridge
	seg, bridge int
}

var families = []family{
	{name: "IPv4", seg: 24, bridge: 8, a: map[string]string{
		"node": "192.168.0.2", "nodeAlt": "192.168.1.2", "gw": "192.168.0.1", "gwAlt": "192.168.1.1",
		"ext": "203.0.113.2", "extBlocked": "203.0.113.130", "localhost": "127.0.0.1",
		"bridge": "10.0.0.1", "pod": "10.0.0.2", "ep1": "10.180.0.1", "ep2": "10.180.2.1",
		"itp1": "10.0.1.1", "itp2": "10.0.1.2", "itp3": "10.0.1.3",
		"vipClusterIP": "172.30.0.41", "vipMultiProto": "172.30.0.42", "vipUnallocated": "172.30.0.50",
		"vipNoEps": "172.30.0.46", "extNoEps": "192.168.99.46", "lbNoEps": "1.2.3.46",
		"vipNodePort": "172.30.0.51",
		"vipLB":       "172.30.0.61", "lb1": "1.2.3.4", "lb2": "5.6.7.8",
		"rangeNode": "192.168.0.0/24", "rangeExt": "203.0.113.0/25",
		"vipETPLocal": "172.30.0.71", "extETPLocal": "192.168.99.71", "lbETPLocal": "1.2.3.71",
		"vipETPNone": "172.30.0.72", "extETPNone": "192.168.99.72", "lbETPNone": "1.2.3.72",
		"vipETPCluster": "172.30.0.81", "extETPCluster": "192.168.99.81", "lbETPCluster": "1.2.3.81",
		"vipITPLocal": "172.30.1.1", "vipITPNone": "172.30.1.2", "vipITPCluster": "172.30.1.3",
	}},
	{name: "IPv6", v6: true, seg: 64, bridge: 32, a: map[string]string{
		"node": "2001:db8::1", "nodeAlt": "2001:db8:1::2", "gw": "2001:db8::ff", "gwAlt": "2001:db8:1::ff",
		"ext": "2600:5200::1", "extBlocked": "2600:5200::130", "localhost": "::1",
		"bridge": "fd00:10::1", "pod": "fd00:10::2", "ep1": "fd00:10:180::1", "ep2": "fd00:10:180::2:1",
		"itp1": "fd00:10:1::1", "itp2": "fd00:10:1::2", "itp3": "fd00:10:1::3",
		"vipClusterIP": "fd00:172:30::41", "vipMultiProto": "fd00:172:30::42", "vipUnallocated": "fd00:172:30::50",
		"vipNoEps": "fd00:172:30::46", "extNoEps": "2001:db8:99::46", "lbNoEps": "fd00:1:2:3::46",
		"vipNodePort": "fd00:172:30::51",
		"vipLB":       "fd00:172:30::61", "lb1": "fd00:1:2:3::4", "lb2": "fd00:5:6:7::8",
		"rangeNode": "2001:db8::/64", "rangeExt": "2600:5200::/120",
		"vipETPLocal": "fd00:172:30::71", "extETPLocal": "2001:db8:99::71", "lbETPLocal": "fd00:1:2:3::71",
		"vipETPNone": "fd00:172:30::72", "extETPNone": "2001:db8:99::72", "lbETPNone": "fd00:1:2:3::72",
		"vipETPCluster": "fd00:172:30::81", "extETPCluster": "2001:db8:99::81", "lbETPCluster": "fd00:1:2:3::81",
		"vipITPLocal": "fd00:172:30::101", "vipITPNone": "fd00:172:30::102", "vipITPCluster": "fd00:172:30::103",
	}},
}

// addr is the family's address of a name (the test's own table: a missing
// name is a bug in this file).
func (f family) addr(t testing.TB, name string) string {
	t.Helper()
	a, ok := f.a[name]
	if !ok {
		t.Fatalf("%s: no address named %q", f.name, name)
	}
	return a
}

// endpoint is one endpoint of a Service: its address name and the node
// kube-proxy is told it runs on ("" none; nodeName is local). Every endpoint
// is a pod on the test node's bridge: only the EndpointSlice says where it
// runs, which is all kube-proxy reads.
type endpoint struct {
	addr, node string
}

// service is one Service with its EndpointSlice, modelled on a kube-proxy
// unit test.
type service struct {
	name         string
	test         string // the kube-proxy unit test it is modelled on
	typ          v1.ServiceType
	vip          string
	externalIPs  []string
	lbIPs        []string
	nodePort     int32
	etp          v1.ServiceExternalTrafficPolicy
	itp          v1.ServiceInternalTrafficPolicy
	sourceRanges []string
	eps          []endpoint
	// ports are the Service's ports (default: p80, TCP 80 to 80, with
	// nodePort when set).
	ports []svcPort
}

// svcPort is one port of a Service and its EndpointSlice.
type svcPort struct {
	name         string
	proto        v1.Protocol
	port, target int32
}

var services = []service{
	{name: "clusterip", test: "TestClusterIPGeneral", typ: v1.ServiceTypeClusterIP, vip: "vipClusterIP",
		eps: []endpoint{{"ep1", nodeName}}},
	{name: "multiproto", test: "TestClusterIPGeneral (svc2)", typ: v1.ServiceTypeClusterIP, vip: "vipMultiProto",
		eps: []endpoint{{"ep1", nodeName}, {"ep2", "node2"}},
		ports: []svcPort{{"http", v1.ProtocolTCP, 80, 80}, {"https", v1.ProtocolTCP, 443, 8443},
			{"dns-udp", v1.ProtocolUDP, 53, 53}, {"dns-tcp", v1.ProtocolTCP, 53, 5353}, {"dns-sctp", v1.ProtocolSCTP, 53, 53}}},
	{name: "noeps", test: "TestNoEndpointsReject", typ: v1.ServiceTypeLoadBalancer, vip: "vipNoEps",
		externalIPs: []string{"extNoEps"}, lbIPs: []string{"lbNoEps"}, nodePort: 30046},
	{name: "nodeport", test: "TestNodePorts", typ: v1.ServiceTypeNodePort, vip: "vipNodePort", nodePort: 30051,
		eps: []endpoint{{"ep1", ""}, {"ep2", nodeName}}},
	{name: "lb", test: "TestLoadBalancer", typ: v1.ServiceTypeLoadBalancer, vip: "vipLB", nodePort: 30061,
		lbIPs: []string{"lb1", "lb2"}, sourceRanges: []string{"rangeNode", "rangeExt"}, eps: []endpoint{{"ep1", ""}}},
	{name: "etp-local", test: "TestExternalTrafficPolicyLocal", typ: v1.ServiceTypeLoadBalancer, vip: "vipETPLocal", nodePort: 30071,
		externalIPs: []string{"extETPLocal"}, lbIPs: []string{"lbETPLocal"}, etp: v1.ServiceExternalTrafficPolicyLocal,
		eps: []endpoint{{"ep1", ""}, {"ep2", nodeName}}},
	{name: "etp-none", test: "TestOverallIPTablesRules/TestTracePacket (svc2: no local endpoints)", typ: v1.ServiceTypeLoadBalancer, vip: "vipETPNone", nodePort: 30072,
		externalIPs: []string{"extETPNone"}, lbIPs: []string{"lbETPNone"}, etp: v1.ServiceExternalTrafficPolicyLocal,
		eps: []endpoint{{"ep1", "node2"}}},
	{name: "etp-cluster", test: "TestExternalTrafficPolicyCluster", typ: v1.ServiceTypeLoadBalancer, vip: "vipETPCluster", nodePort: 30081,
		externalIPs: []string{"extETPCluster"}, lbIPs: []string{"lbETPCluster"}, etp: v1.ServiceExternalTrafficPolicyCluster,
		eps: []endpoint{{"ep1", ""}, {"ep2", nodeName}}},
	{name: "itp-local", test: "TestInternalTrafficPolicy", typ: v1.ServiceTypeClusterIP, vip: "vipITPLocal", itp: v1.ServiceInternalTrafficPolicyLocal,
		eps: []endpoint{{"itp1", nodeName}, {"itp2", "node1"}, {"itp3", "node2"}}},
	{name: "itp-none", test: "TestInternalTrafficPolicy", typ: v1.ServiceTypeClusterIP, vip: "vipITPNone", itp: v1.ServiceInternalTrafficPolicyLocal,
		eps: []endpoint{{"itp1", "node0"}, {"itp2", "node1"}, {"itp3", "node2"}}},
	{name: "itp-cluster", test: "TestInternalTrafficPolicy", typ: v1.ServiceTypeClusterIP, vip: "vipITPCluster", itp: v1.ServiceInternalTrafficPolicyCluster,
		eps: []endpoint{{"itp1", nodeName}, {"itp2", "node1"}, {"itp3", "node2"}}},
}

// Expected outputs besides endpoint lists, as runPacketFlowTests writes them.
const (
	reject = "REJECT"
	drop   = "DROP"
	// none: no kube-proxy rule acts on the packet (the unit tests' "").
	none = ""
)

// flow is one packet of a kube-proxy unit test: from a source to a
// destination, and what kube-proxy's test expects: the endpoints it may be
// DNATed to (names, port 80), REJECT, DROP or none, and masquerade.
type flow struct {
	svc  string // the Service it is about (for the report)
	name string // the unit test's name of the flow
	from string
	to   string
	port uint16
	// proto is the flow's protocol ("" tcp); tport the endpoints' port
	// the packet must be DNATed to (0: 80).
	proto string
	tport uint16
	want  []string // endpoint names, or one of reject, drop, none
	masq  bool
	// mode limits the flow to one proxy mode ("" both); fam to one family
	// (4 or 6; 0 both). The unit tests of the two modes differ in a few
	// expectations, which are then two flows.
	mode string
	fam  int
}

var flows = []flow{
	// TestClusterIPGeneral (both modes).
	{svc: "clusterip", name: "simple clusterIP", from: "pod", to: "vipClusterIP", port: 80, want: []string{"ep1"}},
	{svc: "clusterip", name: "hairpin to cluster IP", from: "ep1", to: "vipClusterIP", port: 80, want: []string{"ep1"}, masq: true},
	{svc: "clusterip", name: "svc1 does not accept svc2's ports", from: "pod", to: "vipClusterIP", port: 443, want: []string{none}, mode: "iptables"},
	{svc: "clusterip", name: "svc1 does not accept svc2's ports", from: "pod", to: "vipClusterIP", port: 443, want: []string{reject}, mode: "nftables"},
	{svc: "clusterip", name: "packet to unallocated cluster ip", from: "pod", to: "vipUnallocated", port: 80, want: []string{drop}, mode: "nftables"},

	// TestClusterIPGeneral: several ports and protocols on one Service.
	{svc: "multiproto", name: "clusterIP with multiple endpoints", from: "pod", to: "vipMultiProto", port: 80, want: []string{"ep1", "ep2"}},
	{svc: "multiproto", name: "clusterIP with TargetPort", from: "pod", to: "vipMultiProto", port: 443, tport: 8443, want: []string{"ep1", "ep2"}},
	{svc: "multiproto", name: "clusterIP with TCP, UDP, and SCTP on same port (TCP)", from: "pod", to: "vipMultiProto", port: 53, tport: 5353, want: []string{"ep1", "ep2"}},
	{svc: "multiproto", name: "clusterIP with TCP, UDP, and SCTP on same port (UDP)", proto: "udp", from: "pod", to: "vipMultiProto", port: 53, tport: 53, want: []string{"ep1", "ep2"}},
	{svc: "multiproto", name: "clusterIP with TCP, UDP, and SCTP on same port (SCTP)", proto: "sctp", from: "pod", to: "vipMultiProto", port: 53, tport: 53, want: []string{"ep1", "ep2"}},
	{svc: "multiproto", name: "TCP-only port does not match UDP traffic", proto: "udp", from: "pod", to: "vipMultiProto", port: 80, want: []string{none}, mode: "iptables"},
	{svc: "multiproto", name: "TCP-only port does not match UDP traffic", proto: "udp", from: "pod", to: "vipMultiProto", port: 80, want: []string{reject}, mode: "nftables"},

	// TestNoEndpointsReject.
	{svc: "noeps", name: "pod to cluster IP with no endpoints", from: "pod", to: "vipNoEps", port: 80, want: []string{reject}},
	{svc: "noeps", name: "external to external IP with no endpoints", from: "ext", to: "extNoEps", port: 80, want: []string{reject}},
	{svc: "noeps", name: "pod to NodePort with no endpoints", from: "pod", to: "node", port: 30046, want: []string{reject}},
	{svc: "noeps", name: "external to NodePort with no endpoints", from: "ext", to: "node", port: 30046, want: []string{reject}},
	{svc: "noeps", name: "pod to LoadBalancer IP with no endpoints", from: "pod", to: "lbNoEps", port: 80, want: []string{reject}},
	{svc: "noeps", name: "external to LoadBalancer IP with no endpoints", from: "ext", to: "lbNoEps", port: 80, want: []string{reject}},

	// TestNodePorts (the unit tests' own IPv6 flows).
	{svc: "nodeport", name: "pod to cluster IP", from: "pod", to: "vipNodePort", port: 80, want: []string{"ep1", "ep2"}},
	{svc: "nodeport", name: "external to nodePort", from: "ext", to: "node", port: 30051, want: []string{"ep1", "ep2"}, masq: true},
	{svc: "nodeport", name: "node to nodePort", from: "node", to: "node", port: 30051, want: []string{"ep1", "ep2"}, masq: true},
	// iptables: nodePortAddresses unset accepts NodePorts on every local
	// address; nftables: the default is the node's primary IPs.
	{svc: "nodeport", name: "external to nodePort on secondary IP", from: "ext", to: "nodeAlt", port: 30051, want: []string{"ep1", "ep2"}, masq: true, mode: "iptables"},
	{svc: "nodeport", name: "secondary nodeIP ignores NodePorts", from: "ext", to: "nodeAlt", port: 30051, want: []string{none}, mode: "nftables"},
	// localhost NodePorts: iptables mode, IPv4 only.
	{svc: "nodeport", name: "localhost to nodePort gets masqueraded", from: "localhost", to: "localhost", port: 30051, want: []string{"ep1", "ep2"}, masq: true, mode: "iptables", fam: 4},
	{svc: "nodeport", name: "localhost to nodePort is ignored", from: "localhost", to: "localhost", port: 30051, want: []string{none}, mode: "iptables", fam: 6},

	// TestLoadBalancer (LoadBalancerSourceRanges: the node's subnet and the
	// lower half of the external clients').
	{svc: "lb", name: "pod to cluster IP", from: "pod", to: "vipLB", port: 80, want: []string{"ep1"}},
	{svc: "lb", name: "external to nodePort", from: "ext", to: "node", port: 30061, want: []string{"ep1"}, masq: true},
	{svc: "lb", name: "nodePort bypasses LoadBalancerSourceRanges", from: "extBlocked", to: "node", port: 30061, want: []string{"ep1"}, masq: true},
	{svc: "lb", name: "accepted external to LB1", from: "ext", to: "lb1", port: 80, want: []string{"ep1"}, masq: true},
	{svc: "lb", name: "accepted external to LB2", from: "ext", to: "lb2", port: 80, want: []string{"ep1"}, masq: true},
	{svc: "lb", name: "blocked external to LB1", from: "extBlocked", to: "lb1", port: 80, want: []string{drop}},
	{svc: "lb", name: "blocked external to LB2", from: "extBlocked", to: "lb2", port: 80, want: []string{drop}},
	{svc: "lb", name: "pod to LB1 (blocked by LoadBalancerSourceRanges)", from: "pod", to: "lb1", port: 80, want: []string{drop}},
	{svc: "lb", name: "pod to LB2 (blocked by LoadBalancerSourceRanges)", from: "pod", to: "lb2", port: 80, want: []string{drop}},
	{svc: "lb", name: "node to LB1 (allowed by LoadBalancerSourceRanges)", from: "node", to: "lb1", port: 80, want: []string{"ep1"}, masq: true},
	{svc: "lb", name: "node to LB2 (allowed by LoadBalancerSourceRanges)", from: "node", to: "lb2", port: 80, want: []string{"ep1"}, masq: true},

	// TestExternalTrafficPolicyLocal.
	{svc: "etp-local", name: "pod to cluster IP hits both endpoints, unmasqueraded", from: "pod", to: "vipETPLocal", port: 80, want: []string{"ep1", "ep2"}},
	{svc: "etp-local", name: "pod to external IP hits both endpoints, unmasqueraded", from: "pod", to: "extETPLocal", port: 80, want: []string{"ep1", "ep2"}},
	{svc: "etp-local", name: "external to external IP hits only local endpoint, unmasqueraded", from: "ext", to: "extETPLocal", port: 80, want: []string{"ep2"}},
	{svc: "etp-local", name: "pod to LB IP hits only both endpoints, unmasqueraded", from: "pod", to: "lbETPLocal", port: 80, want: []string{"ep1", "ep2"}},
	{svc: "etp-local", name: "external to LB IP hits only local endpoint, unmasqueraded", from: "ext", to: "lbETPLocal", port: 80, want: []string{"ep2"}},
	{svc: "etp-local", name: "pod to NodePort hits both endpoints, unmasqueraded", from: "pod", to: "node", port: 30071, want: []string{"ep1", "ep2"}},
	{svc: "etp-local", name: "external to NodePort hits only local endpoint, unmasqueraded", from: "ext", to: "node", port: 30071, want: []string{"ep2"}},
	// TestTracePacket "LOCAL, KUBE-MARK-MASQ" (TestOverallIPTablesRules'
	// svc2: "masquerade LOCAL traffic", "route LOCAL traffic" to every endpoint).
	{svc: "etp-local", name: "LOCAL, KUBE-MARK-MASQ", from: "node", to: "extETPLocal", port: 80, want: []string{"ep1", "ep2"}, masq: true},

	// externalTrafficPolicy Local without a local endpoint
	// (TestOverallIPTablesRules' svc2 "has no local endpoints";
	// TestTracePacket "DROP").
	{svc: "etp-none", name: "external to external IP with no local endpoints", from: "ext", to: "extETPNone", port: 80, want: []string{drop}},
	{svc: "etp-none", name: "external to LB IP with no local endpoints", from: "ext", to: "lbETPNone", port: 80, want: []string{drop}},
	{svc: "etp-none", name: "external to NodePort with no local endpoints", from: "ext", to: "node", port: 30072, want: []string{drop}},
	{svc: "etp-none", name: "pod to LB IP with no local endpoints (internal: every endpoint)", from: "pod", to: "lbETPNone", port: 80, want: []string{"ep1"}},

	// TestExternalTrafficPolicyCluster.
	{svc: "etp-cluster", name: "pod to cluster IP hits both endpoints, unmasqueraded", from: "pod", to: "vipETPCluster", port: 80, want: []string{"ep1", "ep2"}},
	{svc: "etp-cluster", name: "pod to external IP hits both endpoints, masqueraded", from: "pod", to: "extETPCluster", port: 80, want: []string{"ep1", "ep2"}, masq: true},
	{svc: "etp-cluster", name: "external to external IP hits both endpoints, masqueraded", from: "ext", to: "extETPCluster", port: 80, want: []string{"ep1", "ep2"}, masq: true},
	{svc: "etp-cluster", name: "pod to LB IP hits both endpoints, masqueraded", from: "pod", to: "lbETPCluster", port: 80, want: []string{"ep1", "ep2"}, masq: true},
	{svc: "etp-cluster", name: "external to LB IP hits both endpoints, masqueraded", from: "ext", to: "lbETPCluster", port: 80, want: []string{"ep1", "ep2"}, masq: true},
	{svc: "etp-cluster", name: "pod to NodePort hits both endpoints, masqueraded", from: "pod", to: "node", port: 30081, want: []string{"ep1", "ep2"}, masq: true},
	{svc: "etp-cluster", name: "external to NodePort hits both endpoints, masqueraded", from: "ext", to: "node", port: 30081, want: []string{"ep1", "ep2"}, masq: true},

	// TestInternalTrafficPolicy.
	{svc: "itp-cluster", name: "pod to ClusterIP hits all endpoints", from: "pod", to: "vipITPCluster", port: 80, want: []string{"itp1", "itp2", "itp3"}},
	{svc: "itp-local", name: "pod to ClusterIP hits only local endpoint", from: "pod", to: "vipITPLocal", port: 80, want: []string{"itp1"}},
	{svc: "itp-none", name: "no endpoints", from: "pod", to: "vipITPNone", port: 80, want: []string{drop}},
}

// pods are every address name that is a pod on the node's bridge.
var pods = []string{"pod", "ep1", "ep2", "itp1", "itp2", "itp3"}

// TestKubeProxyFlows runs the real kube-proxy in both proxy modes,
// dual-stack, and checks every flow of both families with the simulator.
func TestKubeProxyFlows(t *testing.T) {
	testbed.RequireRoot(t)
	proxyBin, err := etcdtest.FindBin("kube-proxy", "TWILL_KUBE_PROXY_BIN")
	if err != nil {
		t.Fatalf("%v (run `make tools-kube`)", err)
	}
	srv := kubetest.StartServer(t, kubetest.Options{ServiceClusterIPRange: serviceCIDR})
	c := srv.Client(kubetest.Admin)
	createObjects(t, c)

	agree, total := 0, 0
	doctorIDs := map[string][]string{}
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) {
			node, outside := buildNode(t, mode)
			kc := filepath.Join(t.TempDir(), "kube-proxy.kubeconfig")
			fwd := forwardAPI(t, node, strings.TrimPrefix(srv.URL, "https://"))
			if err := os.WriteFile(kc, kubecreds.Kubeconfig("kubetest", "https://"+fwd, srv.CAFile, kubetest.Admin, srv.Token(kubetest.Admin)), 0o600); err != nil {
				t.Fatal(err)
			}
			logf := startKubeProxy(t, proxyBin, node, mode, kc)
			w := waitSynced(t, node, outside, logf)
			for _, fam := range families {
				a, n := checkFlows(t, w, mode, fam)
				t.Logf("%s %s: %d/%d flows agree with kube-proxy's unit-test expectations", mode, fam.name, a, n)
				agree, total = agree+a, total+n
			}
			doctorIDs[mode] = checkDoctor(t, w.Host(nodeName).Snap)
		})
	}
	t.Logf("kube-proxy flows: %d/%d agree (iptables and nftables modes, IPv4 and IPv6)", agree, total)
	// The same Services in either mode are the same node to doctor (here:
	// default/kubernetes has no endpoint, the apiserver advertising
	// 127.0.0.1, so TW030 in both).
	if !slices.Equal(doctorIDs["iptables"], doctorIDs["nftables"]) {
		t.Errorf("doctor's findings differ between the proxy modes: iptables %v, nftables %v", doctorIDs["iptables"], doctorIDs["nftables"])
	}
	if total == 0 {
		t.Fatal("no flow was traced")
	}
}

// createObjects creates the Node (both InternalIPs) and every Service with
// its EndpointSlice, once per family.
func createObjects(t *testing.T, c kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	n, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	for _, f := range families {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: f.a["node"]})
	}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("node status: %v", err)
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	for _, f := range families {
		for _, s := range services {
			createService(ctx, t, c, f, s)
		}
	}
}

// svcName is the Kubernetes name of s in family f.
func svcName(s service, f family) string {
	if f.v6 {
		return s.name + "-v6"
	}
	return s.name + "-v4"
}

func createService(ctx context.Context, t *testing.T, c kubernetes.Interface, f family, s service) {
	fam := v1.IPv4Protocol
	at := discovery.AddressTypeIPv4
	if f.v6 {
		fam, at = v1.IPv6Protocol, discovery.AddressTypeIPv6
	}
	name := svcName(s, f)
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: v1.ServiceSpec{
			Type:           s.typ,
			ClusterIP:      f.addr(t, s.vip),
			ClusterIPs:     []string{f.addr(t, s.vip)},
			IPFamilies:     []v1.IPFamily{fam},
			IPFamilyPolicy: ptr.To(v1.IPFamilyPolicySingleStack),
		},
	}
	ports := s.ports
	if ports == nil {
		ports = []svcPort{{"p80", v1.ProtocolTCP, 80, 80}}
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: p.name, Port: p.port, Protocol: p.proto, TargetPort: intstr.FromInt32(p.target), NodePort: s.nodePort})
	}
	if s.nodePort != 0 && f.v6 {
		// NodePorts are per Service, not per family: the IPv6 twin takes
		// the next thousand.
		svc.Spec.Ports[0].NodePort = s.nodePort + 1000
	}
	for _, e := range s.externalIPs {
		svc.Spec.ExternalIPs = append(svc.Spec.ExternalIPs, f.addr(t, e))
	}
	for _, r := range s.sourceRanges {
		svc.Spec.LoadBalancerSourceRanges = append(svc.Spec.LoadBalancerSourceRanges, f.addr(t, r))
	}
	if s.etp != "" {
		svc.Spec.ExternalTrafficPolicy = s.etp
	}
	if s.itp != "" {
		svc.Spec.InternalTrafficPolicy = ptr.To(s.itp)
	}
	got, err := c.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service %s (%s): %v", name, s.test, err)
	}
	if len(s.lbIPs) > 0 {
		for _, l := range s.lbIPs {
			got.Status.LoadBalancer.Ingress = append(got.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: f.addr(t, l)})
		}
		if _, err := c.CoreV1().Services(namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("Service %s: LoadBalancer status: %v", name, err)
		}
	}
	if len(s.eps) == 0 {
		return
	}
	sl := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: namespace, Labels: map[string]string{discovery.LabelServiceName: name}},
		AddressType: at,
	}
	for _, p := range ports {
		sl.Ports = append(sl.Ports, discovery.EndpointPort{Name: ptr.To(p.name), Port: ptr.To(p.target), Protocol: ptr.To(p.proto)})
	}
	for _, e := range s.eps {
		ep := discovery.Endpoint{Addresses: []string{f.addr(t, e.addr)}, Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}}
		if e.node != "" {
			ep.NodeName = ptr.To(e.node)
		}
		sl.Endpoints = append(sl.Endpoints, ep)
	}
	if _, err := c.DiscoveryV1().EndpointSlices(namespace).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create EndpointSlice of %s: %v", name, err)
	}
}

// nodePort is the NodePort of flow port p in family f (the IPv6 twins
// take the next thousand).
func nodePort(p uint16, f family) uint16 {
	if p >= 30000 && f.v6 {
		return p + 1000
	}
	return p
}

// buildNode makes the node namespace (eth0 with both node addresses of
// each family, the pod bridge cni0, forwarding and bridge netfilter on) and
// the outside namespace behind eth0 (the external clients and routes to
// the Services' external and LoadBalancer IPs through the node).
func buildNode(t *testing.T, mode string) (node, outside string) {
	node, outside = testbed.Netns(t, "kpf-"+mode[:3]), testbed.Netns(t, "kpf-out")
	run := func(ns string, argv ...string) { t.Helper(); testbed.In(t, ns, argv...) }
	run(node, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", outside)
	run(node, "ip", "link", "add", "cni0", "type", "bridge")
	// A port, so the bridge has a carrier (as with pods).
	run(node, "ip", "link", "add", "kpf0", "type", "veth", "peer", "name", "kpf1")
	run(node, "ip", "link", "set", "kpf0", "master", "cni0", "up")
	run(node, "ip", "link", "set", "kpf1", "up")
	for _, f := range families {
		add := func(ns, a string, bits int) {
			argv := []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", a, bits), "dev"}
			if f.v6 {
				run(ns, append(argv, "eth0", "nodad")...)
				return
			}
			run(ns, append(argv, "eth0")...)
		}
		add(node, f.a["node"], f.seg)
		add(node, f.a["nodeAlt"], f.seg)
		add(outside, f.a["gw"], f.seg)
		add(outside, f.a["gwAlt"], f.seg)
		add(outside, f.a["ext"], f.seg)
		add(outside, f.a["extBlocked"], f.seg)
		br := []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", f.a["bridge"], f.bridge), "dev", "cni0"}
		if f.v6 {
			br = append(br, "nodad")
		}
		run(node, br...)
	}
	run(node, "ip", "link", "set", "eth0", "up")
	run(node, "ip", "link", "set", "cni0", "up")
	run(outside, "ip", "link", "set", "eth0", "up")
	for _, f := range families {
		ipf := "-4"
		if f.v6 {
			ipf = "-6"
		}
		run(node, "ip", ipf, "route", "add", "default", "via", f.a["gw"])
		for _, s := range services {
			for _, e := range append(slices.Clone(s.externalIPs), s.lbIPs...) {
				run(outside, "ip", ipf, "route", "replace", f.a[e], "via", f.a["node"])
			}
		}
	}
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1"} {
		run(node, "sysctl", "-qw", kv)
	}
	return node, outside
}

// forwardAPI listens on 127.0.0.1 inside ns and forwards every connection
// to target (the API server, on the test's own loopback): kube-proxy runs
// in ns, where the test's loopback is not reachable. It returns the
// listening address.
func forwardAPI(t *testing.T, ns, target string) string {
	var ln net.Listener
	if err := nsrun.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().String()
}

// startKubeProxy runs bin/kube-proxy in ns as the lab does (dual-stack
// cluster CIDR, conntrack limits left alone) and stops it at cleanup. It
// returns its log file.
func startKubeProxy(t *testing.T, bin, ns, mode, kubeconfig string) string {
	logPath := filepath.Join(t.TempDir(), "kube-proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// ip netns exec: the process is in ns whichever thread starts it
	// (StartChild starts it from a thread of its own).
	cmd := exec.Command("ip", "netns", "exec", ns, bin,
		"--kubeconfig", kubeconfig,
		"--proxy-mode", mode,
		"--cluster-cidr", clusterCIDR,
		"--hostname-override", nodeName,
		"--conntrack-max-per-core", "0",
		"--conntrack-tcp-timeout-established", "0s",
		"--conntrack-tcp-timeout-close-wait", "0s",
		"--metrics-bind-address", "127.0.0.1:10249",
		"--healthz-bind-address", "127.0.0.1:10256",
		"--v", "2",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	done, err := etcdtest.StartChild(cmd)
	if err != nil {
		t.Fatalf("start kube-proxy in %s: %v", ns, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return logPath
}

// hosts captures both namespaces and compiles them into a trace World with
// the bridge's pods.
func hosts(t *testing.T, node, outside string) *trace.World {
	var snaps []*nodestate.Snapshot
	for _, h := range [][2]string{{node, nodeName}, {outside, outsideName}} {
		s, err := nodestate.Capture(context.Background(), nodestate.CaptureOptions{Netns: h[0], Node: h[1], Root: t.TempDir()})
		if err != nil {
			t.Fatalf("capture %s: %v", h[0], err)
		}
		if len(s.Errors) > 0 {
			t.Logf("capture %s: %v", h[1], s.Errors)
		}
		snaps = append(snaps, s)
	}
	var ps []trace.Pod
	v4, v6 := families[0], families[1]
	for _, p := range pods {
		ps = append(ps, trace.Pod{Name: p, Node: nodeName, Bridge: "cni0",
			IP:       netip.PrefixFrom(netip.MustParseAddr(v4.a[p]), v4.bridge),
			Gateway:  netip.MustParseAddr(v4.a["bridge"]),
			IPv6:     netip.PrefixFrom(netip.MustParseAddr(v6.a[p]), v6.bridge),
			Gateway6: netip.MustParseAddr(v6.a["bridge"]),
		})
	}
	w, err := trace.NewWorld(snaps, ps)
	if err != nil {
		t.Fatalf("trace world: %v", err)
	}
	return w
}

// waitSynced captures the namespaces until kube-proxy has written the
// rules of both families (a pod's call to the first Service is DNATed to
// its endpoint in each), then returns the World of the last capture. All
// objects exist before kube-proxy starts, so its first sync of a family
// has every Service of it.
func waitSynced(t *testing.T, node, outside, logPath string) *trace.World {
	deadline := time.Now().Add(90 * time.Second)
	for {
		w := hosts(t, node, outside)
		ready := true
		for _, f := range families {
			res, err := w.Trace(trace.Request{From: "pod", To: netip.MustParseAddr(f.a["vipClusterIP"]), Port: 80})
			if err != nil {
				t.Fatal(err)
			}
			got, _, _, _ := outcome(res, f)
			if !slices.Equal(got, []string{"ep1"}) {
				ready = false
			}
		}
		if ready {
			return w
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("kube-proxy has not programmed both families' rules after 90s; its log:\n%s", tail(string(b), 40))
		}
		time.Sleep(time.Second)
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// checkFlows traces every flow of the mode in family f and reports each
// disagreement; it returns how many agreed of how many were traced.
func checkFlows(t *testing.T, w *trace.World, mode string, f family) (agree, total int) {
	for _, fl := range flows {
		if (fl.mode != "" && fl.mode != mode) || (fl.fam == 4 && f.v6) || (fl.fam == 6 && !f.v6) {
			continue
		}
		total++
		req := trace.Request{From: fl.from, To: netip.MustParseAddr(f.addr(t, fl.to)), Port: nodePort(fl.port, f), Proto: fl.proto}
		switch fl.from {
		case "localhost", "node":
			// The node itself; "node" from its address, so that is the source.
			req.From = nodeName
			if fl.from == "node" {
				req.From = f.addr(t, "node")
			}
		case "ext", "extBlocked":
			req.From = f.addr(t, fl.from)
		}
		res, err := w.Trace(req)
		if err != nil {
			t.Errorf("%s %s %s %q: trace: %v", mode, f.name, fl.svc, fl.name, err)
			continue
		}
		got, masq, ports, why := outcome(res, f)
		ok := slices.Equal(got, fl.want) && why == ""
		if ok && len(got) > 0 && !isVerdict(got[0]) {
			ok = masq == fl.masq && slices.Equal(ports, []uint16{cmp.Or(fl.tport, 80)})
		}
		var b strings.Builder
		res.WriteText(&b)
		if os.Getenv("TWILL_KPF_TRACES") != "" {
			t.Logf("%s %s %s %q: %s -> %s:%d:\n%s", mode, f.name, fl.svc, fl.name, req.From, req.To, req.Port, b.String())
		}
		if ok {
			agree++
			continue
		}
		t.Errorf("%s %s %s %q: %s -> %s:%d: kube-proxy's test expects %v (port %d) masq=%v; the trace gives %v (ports %v) masq=%v %s\n%s",
			mode, f.name, fl.svc, fl.name, req.From, req.To, req.Port, fl.want, cmp.Or(fl.tport, 80), fl.masq, got, ports, masq, why, b.String())
	}
	return agree, total
}

func isVerdict(s string) bool { return s == reject || s == drop || s == none }

// outcome reads a trace the way runPacketFlowTests reads kube-proxy's
// rules: the endpoints (by name) the packet was DNATed to and reached,
// sorted, with whether it was masqueraded; or REJECT (refused by a
// netfilter rule), DROP (dropped by one), or none (no rule translated or
// stopped it). why says what does not fit any of these (mixed outcomes,
// a DNATed packet that did not get through).
func outcome(res *trace.Result, f family) (got []string, masq bool, ports []uint16, why string) {
	byAddr := map[netip.Addr]string{}
	for _, p := range pods {
		byAddr[netip.MustParseAddr(f.a[p])] = p
	}
	kinds := map[string]bool{}
	var masqs []bool
	for _, p := range res.Paths {
		o := p.Outcome
		name, isPod := byAddr[o.SeenDst.Addr()]
		switch {
		case o.Kind == trace.Refused && o.Cause == trace.CauseNetfilter || o.Kind == trace.Refused && !isPod:
			kinds[reject] = true
		case o.Kind == trace.Dropped && o.Cause == trace.CauseNetfilter:
			kinds[drop] = true
		case isPod && o.SeenDst.Addr() != res.Packet.Dst:
			if o.Kind != trace.Established {
				why += fmt.Sprintf("; DNATed to %s but %s (%s)", name, o.Kind, o.Where)
			}
			if !slices.Contains(got, name) {
				got = append(got, name)
			}
			masqs = append(masqs, o.SeenSrc.Addr() != res.Packet.Src)
			if !slices.Contains(ports, o.SeenDst.Port()) {
				ports = append(ports, o.SeenDst.Port())
			}
		default:
			kinds[none] = true
		}
	}
	if len(got) > 0 && len(kinds) > 0 || len(kinds) > 1 {
		why += fmt.Sprintf("; mixed outcomes: endpoints %v and %v", got, kinds)
	}
	if len(got) == 0 {
		for k := range kinds {
			got = append(got, k)
		}
		return got, false, nil, strings.TrimPrefix(why, "; ")
	}
	slices.Sort(got)
	masq = masqs[0]
	if slices.Contains(masqs, !masq) {
		why += "; masqueraded on some paths only"
	}
	return got, masq, ports, strings.TrimPrefix(why, "; ")
}

// checkDoctor runs twill doctor over the captured node: kube-proxy's real
// rules of both families (iptables and ip6tables, or nft ip and ip6) are
// no F4 (rules split across iptables backends, kube-proxy rules that lost
// a match) and no F7 (localhost NodePorts with route_localnet 0, or [::1]
// NodePorts), and those checks ran. It returns the IDs of every finding.
func checkDoctor(t *testing.T, snap *nodestate.Snapshot) []string {
	r := doctor.Run(snap, doctor.Config{ServiceCIDR: netip.MustParsePrefix("172.30.0.0/16"), ClusterCIDR: netip.MustParsePrefix("10.0.0.0/8")})
	for _, id := range []string{checkid.IptablesBackendsSplit, checkid.KubeRuleLostMatch, checkid.RouteLocalnet} {
		for _, f := range r.Findings {
			if f.ID == id {
				t.Errorf("doctor on kube-proxy's own rules: %s %s: %s %v", f.ID, f.Severity, f.Title, f.Evidence)
			}
		}
		for _, n := range r.NotChecked {
			if n.ID == id {
				t.Errorf("doctor did not run %s: %+v", id, n)
			}
		}
	}
	for _, f := range r.Findings {
		t.Logf("doctor (other checks; this node is no twill node): %s %s: %s", f.ID, f.Severity, f.Title)
	}
	return r.IDs()
}

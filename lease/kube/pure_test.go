package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/twillnet/twill/lease"
	"github.com/twillnet/twill/netconf"
)

var network = netip.MustParsePrefix("10.244.0.0/16")

func TestAnnotationsEncoding(t *testing.T) {
	req := lease.Request{Node: "n1", PublicIP: netip.MustParseAddr("192.168.1.10"), BackendType: "vxlan",
		BackendData: &lease.BackendData{VtepMAC: "0e:11:22:33:44:55"}}
	got := Annotations(req)
	want := map[string]string{
		"twill.io/public-ip":    "192.168.1.10",
		"twill.io/backend-type": "vxlan",
		"twill.io/backend-data": `{"VtepMAC":"0e:11:22:33:44:55"}`,
		// Flannel's set, which flanneld on other nodes reads.
		"flannel.alpha.coreos.com/public-ip":           "192.168.1.10",
		"flannel.alpha.coreos.com/backend-type":        "vxlan",
		"flannel.alpha.coreos.com/backend-data":        `{"VtepMAC":"0e:11:22:33:44:55"}`,
		"flannel.alpha.coreos.com/kube-subnet-manager": "true",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Annotations = %v, want %v", got, want)
	}
	hostgw := Annotations(lease.Request{Node: "n1", PublicIP: req.PublicIP, BackendType: "host-gw"})
	if _, ok := hostgw[AnnotationBackendData]; ok || len(hostgw) != 6 || hostgw[FlannelAnnotationBackendData] != "null" {
		t.Fatalf("host-gw annotations = %v, want public-ip and backend-type of both sets, Flannel's backend-data null and kube-subnet-manager", hostgw)
	}

	// The patch writes want's keys and removes twill's others; nil removes all.
	var p struct {
		Metadata struct {
			Annotations map[string]*string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(annotationPatch(hostgw), &p); err != nil {
		t.Fatal(err)
	}
	a := p.Metadata.Annotations
	if len(a) != len(annotationKeys) || a[AnnotationPublicIPv6] != nil || a[AnnotationBackendV6Data] != nil || a[AnnotationPublicIP] == nil || *a[AnnotationPublicIP] != "192.168.1.10" || a[AnnotationBackendData] != nil {
		t.Fatalf("patch for host-gw = %s: want public-ip and backend-type set, backend-data null", annotationPatch(hostgw))
	}
	if got := string(annotationPatch(nil)); got != `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":null,"flannel.alpha.coreos.com/backend-type":null,"flannel.alpha.coreos.com/backend-v6-data":null,"flannel.alpha.coreos.com/kube-subnet-manager":null,"flannel.alpha.coreos.com/public-ip":null,"flannel.alpha.coreos.com/public-ipv6":null,"twill.io/backend-data":null,"twill.io/backend-type":null,"twill.io/backend-v6-data":null,"twill.io/public-ip":null,"twill.io/public-ipv6":null}}}` {
		t.Fatalf("release patch = %s", got)
	}
	same := map[string]string{"other": "x"}
	for k, v := range hostgw {
		same[k] = v
	}
	if annotationsDiffer(same, hostgw) {
		t.Fatal("annotationsDiffer: other annotations must not count")
	}
	same[AnnotationBackendData] = "{}"
	if !annotationsDiffer(same, hostgw) {
		t.Fatal("annotationsDiffer: a stale backend-data must count")
	}
}

func TestAnnotationsDualStack(t *testing.T) {
	req := lease.Request{Node: "n1", PublicIP: netip.MustParseAddr("192.168.1.10"), PublicIPv6: netip.MustParseAddr("fd00:77::10"), BackendType: "vxlan",
		BackendData: &lease.BackendData{VtepMAC: "0e:11:22:33:44:55"}, BackendV6Data: &lease.BackendData{VtepMAC: "0e:11:22:33:44:66"}}
	want := map[string]string{
		"twill.io/public-ip":       "192.168.1.10",
		"twill.io/public-ipv6":     "fd00:77::10",
		"twill.io/backend-type":    "vxlan",
		"twill.io/backend-data":    `{"VtepMAC":"0e:11:22:33:44:55"}`,
		"twill.io/backend-v6-data": `{"VtepMAC":"0e:11:22:33:44:66"}`,
		// Flannel's set, both families, which flanneld on other nodes reads.
		"flannel.alpha.coreos.com/public-ip":           "192.168.1.10",
		"flannel.alpha.coreos.com/public-ipv6":         "fd00:77::10",
		"flannel.alpha.coreos.com/backend-type":        "vxlan",
		"flannel.alpha.coreos.com/backend-data":        `{"VtepMAC":"0e:11:22:33:44:55"}`,
		"flannel.alpha.coreos.com/backend-v6-data":     `{"VtepMAC":"0e:11:22:33:44:66"}`,
		"flannel.alpha.coreos.com/kube-subnet-manager": "true",
	}
	if got := Annotations(req); !reflect.DeepEqual(got, want) {
		t.Fatalf("Annotations = %v, want %v", got, want)
	}
	v6only := req
	v6only.PublicIP, v6only.BackendData = netip.Addr{}, nil
	got := Annotations(v6only)
	if _, ok := got[AnnotationPublicIP]; ok || got[AnnotationPublicIPv6] != "fd00:77::10" || len(got) != 7 {
		t.Fatalf("IPv6-only annotations = %v: want no public-ip (never \"invalid IP\")", got)
	}
	// What a node publishes is what its peers read back.
	cfg, err := netconf.Parse("t", []byte(`{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`))
	if err != nil {
		t.Fatal(err)
	}
	l, ok, err := LeaseOf(NodeInfo{Name: "n1", PodCIDRs: []string{"10.244.3.0/24", "fd00:10:244:3::/64"}, Annotations: want}, cfg)
	wantL := req.Lease(netip.MustParsePrefix("10.244.3.0/24"), netip.MustParsePrefix("fd00:10:244:3::/64"))
	if err != nil || !ok || !reflect.DeepEqual(l, wantL) {
		t.Fatalf("LeaseOf = %+v %v %v, want %+v", l, ok, err, wantL)
	}
	if r := lease.Check(cfg, l); r != nil {
		t.Fatalf("the published dual-stack lease does not pass lease.Check: %v", r)
	}
	v6cfg, _ := netconf.Parse("t", []byte(`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56"}`))
	l, ok, err = LeaseOf(NodeInfo{Name: "n1", PodCIDRs: []string{"fd00:10:244:3::/64"}, Annotations: Annotations(v6only)}, v6cfg)
	if err != nil || !ok || l.Subnet.IsValid() || l.IPv6Subnet != netip.MustParsePrefix("fd00:10:244:3::/64") || lease.Check(v6cfg, l) != nil {
		t.Fatalf("IPv6-only LeaseOf = %+v %v %v (Check %v)", l, ok, err, lease.Check(v6cfg, l))
	}
	// Without a config (twill doctor and trace reading the API), an
	// IPv6-only Node's lease is read too.
	l, ok, err = LeaseOf(NodeInfo{Name: "n1", PodCIDRs: []string{"fd00:10:244:3::/64"}, Annotations: Annotations(v6only)}, netconf.Config{})
	if err != nil || !ok || l.Subnet.IsValid() || l.IPv6Subnet != netip.MustParsePrefix("fd00:10:244:3::/64") {
		t.Fatalf("IPv6-only LeaseOf without a config = %+v %v %v", l, ok, err)
	}
	if _, ok, err := LeaseOf(NodeInfo{Name: "n1", Annotations: want}, netconf.Config{}); ok || err != nil {
		t.Fatalf("no podCIDR at all, without a config: ok %v err %v, want not a peer", ok, err)
	}
	// A dual-stack cluster: a node without an IPv6 podCIDR is not a peer yet.
	if _, ok, err := LeaseOf(NodeInfo{Name: "n2", PodCIDRs: []string{"10.244.4.0/24"}, Annotations: want}, cfg); ok || err != nil {
		t.Fatalf("no IPv6 podCIDR: ok %v err %v, want not a peer", ok, err)
	}
	_, _, err = Subnets(NodeInfo{Name: "n2", PodCIDRs: []string{"10.244.4.0/24"}}, cfg)
	var none *NoPodCIDRError
	if !errors.As(err, &none) || !strings.Contains(err.Error(), "node n2 has no IPv6 entry in spec.podCIDRs") || !strings.Contains(err.Error(), "--cluster-cidr=<Network>,fd00:10:244::/56") {
		t.Fatalf("no IPv6 podCIDR: %v", err)
	}
	_, _, err = Subnets(NodeInfo{Name: "n2", PodCIDRs: []string{"10.244.4.0/24", "fd00:99::/64"}}, cfg)
	if err == nil || !strings.Contains(err.Error(), "spec.podCIDR fd00:99::/64 is outside the cluster network fd00:10:244::/56 of net-conf.json") || !strings.Contains(err.Error(), "IPv6Network") {
		t.Fatalf("IPv6 podCIDR outside: %v", err)
	}
	bad := map[string]string{AnnotationPublicIPv6: "fd00::zz", AnnotationBackendType: "vxlan"}
	if _, _, err := LeaseOf(NodeInfo{Name: "n3", PodCIDRs: []string{"fd00:10:244:3::/64"}, Annotations: bad}, v6cfg); err == nil || !strings.Contains(err.Error(), `annotation twill.io/public-ipv6="fd00::zz": not an IP address`) {
		t.Fatalf("bad public-ipv6: %v", err)
	}
}

func TestLeaseOf(t *testing.T) {
	ann := map[string]string{AnnotationPublicIP: "192.168.1.11", AnnotationBackendType: "vxlan", AnnotationBackendData: `{"VtepMAC":"0e:00:00:00:00:02"}`}
	tests := []struct {
		name    string
		n       NodeInfo
		want    lease.Lease
		ok      bool
		wantErr string
	}{
		{"published", NodeInfo{Name: "n2", PodCIDR: "10.244.2.0/24", Annotations: ann},
			lease.Lease{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.1.11"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "0e:00:00:00:00:02"}, Node: "n2"}}, true, ""},
		{"dual-stack takes the IPv4 podCIDR", NodeInfo{Name: "n2", PodCIDRs: []string{"fd00:10::/64", "10.244.2.0/24"}, Annotations: ann},
			lease.Lease{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.1.11"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "0e:00:00:00:00:02"}, Node: "n2"}}, true, ""},
		{"not a twill node", NodeInfo{Name: "n3", PodCIDR: "10.244.3.0/24"}, lease.Lease{}, false, ""},
		{"a Flannel node (flanneld --kube-subnet-mgr)", NodeInfo{Name: "f1", PodCIDR: "10.244.9.0/24", Annotations: map[string]string{
			FlannelAnnotationKubeSubnetManager: "true", FlannelAnnotationPublicIP: "192.168.1.19", FlannelAnnotationBackendType: "vxlan",
			FlannelAnnotationBackendData: `{"VNI":1,"VtepMAC":"5a:1b:2c:3d:4e:5f"}`}},
			lease.Lease{Subnet: netip.MustParsePrefix("10.244.9.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.1.19"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "5a:1b:2c:3d:4e:5f"}, Node: "f1"}}, true, ""},
		{"Flannel's annotations without kube-subnet-manager", NodeInfo{Name: "f2", PodCIDR: "10.244.10.0/24", Annotations: map[string]string{
			FlannelAnnotationPublicIP: "192.168.1.20", FlannelAnnotationBackendType: "host-gw"}}, lease.Lease{}, false, ""},
		{"both sets: twill's wins", NodeInfo{Name: "n2", PodCIDR: "10.244.2.0/24", Annotations: map[string]string{
			AnnotationPublicIP: "192.168.1.11", AnnotationBackendType: "vxlan", AnnotationBackendData: `{"VtepMAC":"0e:00:00:00:00:02"}`,
			FlannelAnnotationKubeSubnetManager: "true", FlannelAnnotationPublicIP: "192.168.1.99", FlannelAnnotationBackendType: "host-gw"}},
			lease.Lease{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("192.168.1.11"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "0e:00:00:00:00:02"}, Node: "n2"}}, true, ""},
		{"bad Flannel public ip names Flannel's key", NodeInfo{Name: "f3", PodCIDR: "10.244.11.0/24", Annotations: map[string]string{
			FlannelAnnotationKubeSubnetManager: "true", FlannelAnnotationPublicIP: "x"}}, lease.Lease{}, false,
			`node f3: annotation flannel.alpha.coreos.com/public-ip="x": not an IP address`},
		{"no podCIDR yet", NodeInfo{Name: "n3", Annotations: ann}, lease.Lease{}, false, ""},
		{"bad public ip", NodeInfo{Name: "n4", PodCIDR: "10.244.4.0/24", Annotations: map[string]string{AnnotationPublicIP: "nope"}}, lease.Lease{}, false,
			`node n4: annotation twill.io/public-ip="nope": not an IP address`},
		{"bad backend data", NodeInfo{Name: "n5", PodCIDR: "10.244.5.0/24", Annotations: map[string]string{AnnotationPublicIP: "10.0.0.5", AnnotationBackendData: "{"}}, lease.Lease{}, false,
			`node n5: annotation twill.io/backend-data="{": want JSON like`},
		{"outside the network", NodeInfo{Name: "n6", PodCIDR: "10.99.6.0/24", Annotations: ann}, lease.Lease{}, false,
			"node n6: spec.podCIDR 10.99.6.0/24 is outside the cluster network 10.244.0.0/16"},
		{"bad podCIDR", NodeInfo{Name: "n7", PodCIDR: "10.244.7.0/33", Annotations: ann}, lease.Lease{}, false, `node n7: spec.podCIDR "10.244.7.0/33"`},
		{"oversized backend data", NodeInfo{Name: "n8", PodCIDR: "10.244.8.0/24", Annotations: map[string]string{AnnotationPublicIP: "10.0.0.8", AnnotationBackendData: strings.Repeat(" ", 5000)}}, lease.Lease{}, false,
			"node n8: annotation twill.io/backend-data has 5000 bytes, more than the 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := LeaseOf(tt.n, netconf.Config{Network: network})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("LeaseOf = %+v, %v, %v; want %+v, %v", got, ok, err, tt.want, tt.ok)
			}
		})
	}
}

func TestSubnetErrors(t *testing.T) {
	_, err := Subnet(NodeInfo{Name: "w1"}, network)
	var none *NoPodCIDRError
	if !errors.As(err, &none) {
		t.Fatalf("no podCIDR: err = %v, want *NoPodCIDRError", err)
	}
	want := `node w1 has no spec.podCIDR yet: kube-controller-manager must run with --allocate-node-cidrs --cluster-cidr=10.244.0.0/16, or set a subnet of 10.244.0.0/16 that no other node has (see: kubectl get nodes -o custom-columns=NAME:.metadata.name,PODCIDR:.spec.podCIDR): kubectl patch node w1 -p '{"spec":{"podCIDR":"<free subnet>"}}'`
	if err.Error() != want {
		t.Fatalf("no podCIDR:\n got %s\nwant %s", err, want)
	}
	_, err = Subnet(NodeInfo{Name: "w1", PodCIDRs: []string{"fd00::/64"}}, network)
	if !errors.As(err, &none) {
		t.Fatalf("IPv6 podCIDR only: err = %v, want *NoPodCIDRError", err)
	}
	_, err = Subnet(NodeInfo{Name: "w1", PodCIDR: "10.0.0.0/8"}, network)
	var out *OutsideNetworkError
	if !errors.As(err, &out) || !strings.Contains(err.Error(), "kube-controller-manager's --cluster-cidr and the Network in the twill ConfigMap must be the same") {
		t.Fatalf("podCIDR containing the network: err = %v, want *OutsideNetworkError", err)
	}
	sn, err := Subnet(NodeInfo{Name: "w1", PodCIDR: "10.244.9.0/24"}, network)
	if err != nil || sn != netip.MustParsePrefix("10.244.9.0/24") {
		t.Fatalf("Subnet = %v, %v", sn, err)
	}
}

func TestLeaseSetSortedAndMalformedLeftOut(t *testing.T) {
	node := func(name, cidr, ip string) any {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{AnnotationPublicIP: ip, AnnotationBackendType: "host-gw"}},
			Spec: corev1.NodeSpec{PodCIDR: cidr}}
	}
	objs := []any{
		node("c", "10.244.3.0/24", "10.0.0.3"),
		node("a", "10.244.1.0/24", "10.0.0.1"),
		node("b", "10.244.1.0/24", "10.0.0.2"), // same podCIDR as a: kept here, lease.Accept decides
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.9.0/24"}},
		node("far", "10.1.0.0/24", "10.0.0.9"),
	}
	set, bad := leaseSet(objs, netconf.Config{Network: network})
	var names []string
	for _, l := range set {
		names = append(names, l.Attrs.Node+"="+l.Subnet.String())
	}
	if got := strings.Join(names, " "); got != "a=10.244.1.0/24 b=10.244.1.0/24 c=10.244.3.0/24" {
		t.Fatalf("set = %s", got)
	}
	if len(bad) != 1 || bad[0].Key != "node/far" || bad[0].Reason != lease.ReasonMalformed || !strings.Contains(bad[0].Detail, "outside the cluster network") {
		t.Fatalf("rejected = %v", bad)
	}
	empty, _ := leaseSet(nil, netconf.Config{Network: network})
	if empty == nil || len(empty) != 0 {
		t.Fatalf("no nodes: set = %#v, want an empty non-nil slice", empty)
	}
}

func TestForbiddenMessage(t *testing.T) {
	// The API server's own Forbidden error, as client-go returns it.
	api := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes/status"}, "n1",
		errors.New(`User "twill" cannot patch resource "nodes/status" in API group "" at the cluster scope`))
	err := explain(api, "node n1: set condition NetworkUnavailable=False", "patch", "nodes/status")
	want := "node n1: set condition NetworkUnavailable=False: forbidden: twill needs 'patch' on 'nodes/status' — see deploy/twill.yaml (ClusterRole twill)"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got  %s\nwant %s…", err, want)
	}
	var fe *ForbiddenError
	if !errors.As(err, &fe) || !apierrors.IsForbidden(err) {
		t.Fatalf("want a *ForbiddenError that still IsForbidden: %v", err)
	}
	// The server's words win over the caller's guess (list failed, not watch).
	list := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New(`User "x" cannot list resource "nodes" in API group "" at the cluster scope`))
	if got := explain(list, "follow the Node objects", "list,watch", "nodes").Error(); !strings.Contains(got, "forbidden: twill needs 'list' on 'nodes' — see deploy/twill.yaml (ClusterRole twill)") {
		t.Fatalf("list: %s", got)
	}
	other := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("denied"))
	if got := explain(other, "follow the Node objects", "list,watch", "nodes").Error(); !strings.Contains(got, "twill needs 'list' and 'watch' on 'nodes'") {
		t.Fatalf("without the server's words: %s", got)
	}
	unauth := apierrors.NewUnauthorized("bad token")
	if got := explain(unauth, "node n1: read the Node", "get", "nodes").Error(); !strings.Contains(got, "unauthorized: the API server does not accept twill's credentials") {
		t.Fatalf("unauthorized: %s", got)
	}
}

func TestConditionPatch(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)
	var p struct {
		Status struct {
			Conditions []corev1.NodeCondition `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(conditionPatch(now), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Status.Conditions) != 1 {
		t.Fatalf("conditions = %+v", p.Status.Conditions)
	}
	c := p.Status.Conditions[0]
	if c.Type != "NetworkUnavailable" || c.Status != "False" || c.Reason != "TwillIsUp" || !c.LastTransitionTime.Time.Equal(now.Truncate(time.Second)) {
		t.Fatalf("condition = %+v", c)
	}
	n := &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: "True"}}}}
	if networkAvailable(n) {
		t.Fatal("no NetworkUnavailable condition: not available")
	}
	n.Status.Conditions = append(n.Status.Conditions, c)
	if !networkAvailable(n) {
		t.Fatal("NetworkUnavailable=False: available")
	}
}

func TestClusterRoleYAMLIsTheRules(t *testing.T) {
	var cr rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict([]byte(ClusterRoleYAML()), &cr); err != nil {
		t.Fatalf("ClusterRoleYAML does not parse: %v\n%s", err, ClusterRoleYAML())
	}
	if cr.Kind != "ClusterRole" || cr.Name != ClusterRoleName || !reflect.DeepEqual(cr.Rules, RBACRules()) {
		t.Fatalf("parsed %+v, want rules %+v", cr, RBACRules())
	}
	// Exactly the verbs the store uses, nothing more.
	want := map[string][]string{"nodes": {"get", "list", "watch", "patch"}, "nodes/status": {"patch"}, "events": {"create", "patch"}}
	got := map[string][]string{}
	for _, r := range RBACRules() {
		if len(r.APIGroups) != 1 || r.APIGroups[0] != "" || len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
			t.Fatalf("rule %+v: want the core group only, no names or URLs", r)
		}
		for _, res := range r.Resources {
			got[res] = append(got[res], r.Verbs...)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rules grant %v, want %v", got, want)
	}
}

func TestTrimNode(t *testing.T) {
	full := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
			CreationTimestamp: metav1.NewTime(time.Unix(1700000000, 0)),
			Annotations:       map[string]string{AnnotationPublicIP: "10.0.0.1", "node.alpha.kubernetes.io/ttl": "0"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", ProviderID: "x"},
		Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"big"}}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: "False"}}},
	}
	tr := trimNode(full, false).(*corev1.Node)
	if tr.Name != "n1" || tr.ResourceVersion != "7" || tr.Spec.PodCIDR != "10.244.1.0/24" || len(tr.Annotations) != 1 ||
		tr.Labels != nil || tr.Spec.ProviderID != "" || tr.Status.Images != nil || tr.Status.Conditions != nil {
		t.Fatalf("trimmed = %+v", tr)
	}
	// The age of a Node decides between overlapping podCIDRs (lease.Accept):
	// the trim must keep it.
	if !tr.CreationTimestamp.Equal(&full.CreationTimestamp) {
		t.Fatalf("creationTimestamp %v dropped by the trim (want %v)", tr.CreationTimestamp, full.CreationTimestamp)
	}
	if c := trimNode(full, true).(*corev1.Node); len(c.Status.Conditions) != 1 {
		t.Fatalf("with conditions: %+v", c.Status)
	}
}

func TestConfigSaysUseNetConf(t *testing.T) {
	s := NewForClient(nil, Options{})
	_, err := s.Config(context.Background())
	if !errors.Is(err, lease.ErrNoConfig) || !strings.Contains(err.Error(), "pass --net-conf FILE") {
		t.Fatalf("Config: %v", err)
	}
}

func TestLoadRESTConfigOrder(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	t.Setenv("KUBECONFIG", "")
	_, err := LoadRESTConfig("")
	if err == nil || !strings.Contains(err.Error(), "not in a pod") || !strings.Contains(err.Error(), "pass --kubeconfig FILE") {
		t.Fatalf("no config anywhere: %v", err)
	}
	kc := t.TempDir() + "/kubeconfig"
	write := func(server string) {
		data := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: " + server +
			"\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
		if err := os.WriteFile(kc, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("https://10.1.2.3:6443")
	t.Setenv("KUBECONFIG", kc)
	c, err := LoadRESTConfig("")
	if err != nil || c.Host != "https://10.1.2.3:6443" {
		t.Fatalf("$KUBECONFIG: %v, %v", c, err)
	}
	if _, err := LoadRESTConfig(kc + ".missing"); err == nil || !strings.Contains(err.Error(), "kubeconfig "+kc+".missing") {
		t.Fatalf("--kubeconfig of a missing file: %v", err)
	}
}

func TestTwillKeysAndFlannelSet(t *testing.T) {
	req := lease.Request{PublicIP: netip.MustParseAddr("192.168.77.11"), BackendType: "vxlan", BackendData: &lease.BackendData{VtepMAC: "0e:00:00:00:00:01"}}
	ann := Annotations(req)
	ann["other"] = "x"
	if got := TwillKeys(ann); len(got) != 3 || got[0] != AnnotationPublicIP {
		t.Errorf("TwillKeys = %v, want public-ip, backend-type, backend-data", got)
	}
	fl := flannelSet(ann)
	if len(fl) != 4 || fl[FlannelAnnotationKubeSubnetManager] != "true" || fl[FlannelAnnotationPublicIP] != "192.168.77.11" {
		t.Errorf("flannelSet = %v", fl)
	}
	// The patch that keeps Flannel's set removes twill's and nothing else.
	var patch struct {
		Metadata struct {
			Annotations map[string]*string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(annotationPatch(fl), &patch); err != nil {
		t.Fatal(err)
	}
	for k, v := range patch.Metadata.Annotations {
		if _, flannel := fl[k]; flannel != (v != nil) {
			t.Errorf("patch %s = %v", k, v)
		}
	}
	if _, ok := patch.Metadata.Annotations["other"]; ok {
		t.Error("the patch touches an annotation that is not twill's")
	}
	if len(TwillKeys(fl)) != 0 {
		t.Errorf("TwillKeys of Flannel's set = %v", TwillKeys(fl))
	}
}

// The Node's Event reference carries its name as UID, as kubelet's do:
// kubectl describe node matches on it. The pod's comes from the downward
// API, all three fields or none.
func TestEventRefs(t *testing.T) {
	refs := eventRefs("n1", nil)
	if len(refs) != 1 || refs[0].Kind != "Node" || refs[0].Name != "n1" || refs[0].UID != "n1" || refs[0].Namespace != "" {
		t.Fatalf("refs without a pod: %+v", refs)
	}
	t.Setenv("POD_NAMESPACE", "kube-twill")
	t.Setenv("POD_NAME", "twill-x")
	t.Setenv("POD_UID", "")
	if p := PodFromEnv(); p != nil {
		t.Fatalf("PodFromEnv without POD_UID: %+v, want nil", p)
	}
	t.Setenv("POD_UID", "u-1")
	p := PodFromEnv()
	refs = eventRefs("n1", p)
	if len(refs) != 2 || refs[1].Kind != "Pod" || refs[1].Namespace != "kube-twill" || refs[1].Name != "twill-x" || refs[1].UID != "u-1" {
		t.Fatalf("refs with the pod: %+v", refs)
	}
	if eventReason(&NoPodCIDRError{Node: "n1"}) != ReasonNoPodCIDR || eventReason(errors.New("x")) != "" {
		t.Error("eventReason: NoPodCIDRError must be NoPodCIDR, others none")
	}
}

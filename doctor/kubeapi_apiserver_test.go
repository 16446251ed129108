package doctor

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/twillnet/twill/kubeview/apiload"
	"github.com/twillnet/twill/lease/kube/kubetest"
)

// TestAPIChecksWithRealAPIServer creates the lab's Services and
// EndpointSlices in a real kube-apiserver (as admin), reads them back with
// kubeview.Load from a kubeconfig, and checks the recorded lab node
// against them: all agree; then one endpoint turns unready in the API and
// TW034 names it stale.
func TestAPIChecksWithRealAPIServer(t *testing.T) {
	s := kubetest.StartServer(t, kubetest.Options{})
	c := s.Client(kubetest.Admin)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// default/kubernetes is made by the API server's own controller shortly
	// after it is ready (on a cold machine, after /readyz answers): wait
	// for it, bounded. Its ClusterIP is the first of --service-cidr
	// (10.96.0.1), like the lab.
	for i := 0; ; i++ {
		_, err := c.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err == nil {
			break
		}
		if i == 300 {
			t.Fatalf("the API server did not create default/kubernetes within 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	svc := func(name, ip string) {
		t.Helper()
		o := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: name}, Spec: corev1.ServiceSpec{
			ClusterIP: ip, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
		if _, err := c.CoreV1().Services("lab").Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Service lab/%s: %v", name, err)
		}
	}
	slice := func(name string, ready map[string]bool) {
		t.Helper()
		port, pname, tcp := int32(8080), "http", corev1.ProtocolTCP
		o := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "lab", Name: name + "-twill", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &tcp}},
		}
		for ip, r := range ready {
			o.Endpoints = append(o.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &r}})
		}
		if _, err := c.DiscoveryV1().EndpointSlices("lab").Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create EndpointSlice for lab/%s: %v", name, err)
		}
	}
	svc("web", "10.96.0.10")
	web := map[string]bool{}
	for _, n := range []string{"1", "2", "3"} {
		svc("local-node"+n, "10.96.1."+n)
		slice("local-node"+n, map[string]bool{"10.244." + n + ".11": true})
		web["10.244."+n+".10"], web["10.244."+n+".11"] = true, true
	}
	web["10.244.3.11"] = false
	slice("web", web)
	v, err := apiload.Load(ctx, s.Kubeconfig(kubetest.Admin))
	if err != nil {
		t.Fatal(err)
	}
	if k := v.Service("default", "kubernetes"); k == nil || k.ClusterIP.String() != "10.96.0.1" {
		t.Fatalf("default/kubernetes from the API: %+v", k)
	}
	r := Run(labNode1(t), Config{Cluster: v})
	if len(findingsOf(r, "TW033")) != 0 {
		t.Errorf("TW033 on the healthy lab: %+v", findingsOf(r, "TW033"))
	}
	fs := findingsOf(r, "TW034")
	var stale []string
	for _, f := range fs {
		// default/kubernetes' endpoint here is this API server
		// (127.0.0.1), not the recorded lab's: compare lab/ only.
		if !strings.Contains(f.Title, "Service lab/") {
			continue
		}
		ev := strings.Join(f.Evidence, "\n")
		if strings.Contains(ev, "(missing)") {
			t.Errorf("missing endpoints reported: %s\n%s", f.Title, ev)
		}
		if strings.Contains(ev, "(stale)") {
			stale = append(stale, f.Title+": "+ev)
		}
	}
	if len(stale) != 1 || !strings.Contains(stale[0], "lab/web") || !strings.Contains(stale[0], "(stale): 10.244.3.11:8080") {
		t.Fatalf("want lab/web with stale 10.244.3.11:8080 (unready in the API), got %q", stale)
	}
}

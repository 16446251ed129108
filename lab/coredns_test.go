package lab

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
)

func TestUpstreamResolvConf(t *testing.T) {
	for _, c := range []struct {
		host, want string
		ok         bool
	}{
		{"nameserver 10.255.255.53\n", "nameserver 10.255.255.53\n", true},
		// Loopback resolvers (systemd-resolved's stub) would be the pod itself.
		{"# x\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n", "search example.org\n", false},
		{"nameserver ::1\nnameserver 2001:db8::53\nnameserver bogus\n", "nameserver 2001:db8::53\n", true},
		{"", "", false},
	} {
		got, ok := upstreamResolvConf([]byte(c.host))
		if string(got) != c.want || ok != c.ok {
			t.Errorf("upstreamResolvConf(%q) = %q, %v; want %q, %v", c.host, got, ok, c.want, c.ok)
		}
	}
}

// decodeManifest decodes a multi-document manifest into typed objects.
func decodeManifest(t *testing.T, b []byte) []runtime.Object {
	t.Helper()
	var objs []runtime.Object
	for _, doc := range strings.Split(string(b), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode %q: %v", doc, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func TestRenderCoreDNS(t *testing.T) {
	for _, forward := range []bool{true, false} {
		b, err := renderCoreDNS(corednsValues{Image: "ghcr.io/twillnet/twill-coredns:v1", ClusterIP: ClusterDNSVIP.String(), Domain: ClusterDomain, Forward: forward})
		if err != nil {
			t.Fatal(err)
		}
		var svc *corev1.Service
		var dep *appsv1.Deployment
		var cm *corev1.ConfigMap
		var role *rbacv1.ClusterRole
		for _, o := range decodeManifest(t, b) {
			switch o := o.(type) {
			case *corev1.Service:
				svc = o
			case *appsv1.Deployment:
				dep = o
			case *corev1.ConfigMap:
				cm = o
			case *rbacv1.ClusterRole:
				role = o
			}
		}
		if svc == nil || dep == nil || cm == nil || role == nil {
			t.Fatalf("manifest lacks a Service, Deployment, ConfigMap or ClusterRole:\n%s", b)
		}
		if svc.Namespace != CoreDNSNamespace || svc.Name != CoreDNSService || svc.Spec.ClusterIP != "10.96.0.53" || len(svc.Spec.Ports) != 2 ||
			svc.Spec.Ports[0].Protocol != corev1.ProtocolUDP || svc.Spec.Ports[1].Protocol != corev1.ProtocolTCP || svc.Spec.Ports[0].Port != 53 {
			t.Errorf("Service %s/%s %+v: want kube-system/kube-dns at 10.96.0.53, 53/udp and 53/tcp", svc.Namespace, svc.Name, svc.Spec)
		}
		c := dep.Spec.Template.Spec.Containers[0]
		if dep.Namespace != CoreDNSNamespace || dep.Name != CoreDNSDeployment || c.Image != "ghcr.io/twillnet/twill-coredns:v1" ||
			dep.Spec.Template.Labels["k8s-app"] != "kube-dns" || dep.Spec.Template.Spec.DNSPolicy != corev1.DNSDefault || c.ReadinessProbe == nil {
			t.Errorf("Deployment %s/%s: want kube-system/coredns running the image, labelled k8s-app=kube-dns, dnsPolicy Default, a readiness probe", dep.Namespace, dep.Name)
		}
		watches := map[string]bool{}
		for _, r := range role.Rules {
			for _, res := range r.Resources {
				if strings.Contains(strings.Join(r.Verbs, ","), "watch") {
					watches[res] = true
				}
			}
		}
		for _, res := range []string{"services", "endpointslices", "namespaces", "pods"} {
			if !watches[res] {
				t.Errorf("ClusterRole %s does not let CoreDNS watch %s", role.Name, res)
			}
		}
		corefile := cm.Data["Corefile"]
		for _, want := range []string{"kubernetes cluster.local in-addr.arpa ip6.arpa {", "ready", "health"} {
			if !strings.Contains(corefile, want) {
				t.Errorf("Corefile lacks %q:\n%s", want, corefile)
			}
		}
		if got := strings.Contains(corefile, "forward . /etc/resolv.conf"); got != forward {
			t.Errorf("Forward %v: Corefile forwards: %v:\n%s", forward, got, corefile)
		}
	}
}

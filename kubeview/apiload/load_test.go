package apiload

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestBuildFromAPIObjects(t *testing.T) {
	yes, no := true, false
	name, port, tcp := "http", int32(8080), corev1.ProtocolTCP
	node := "node2"
	svc := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: tcp}}}}
	sl := discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		Ports:      []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &tcp}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}, NodeName: &node},
			{Addresses: []string{"10.244.3.10"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
			{Addresses: []string{"10.244.1.10"}}, // ready unset: ready
		},
	}
	orphan := sl
	orphan.Labels = map[string]string{discoveryv1.LabelServiceName: "gone"}
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "a"}, Spec: corev1.PodSpec{NodeName: "node1"}, Status: corev1.PodStatus{PodIP: "10.244.1.10"}}
	v := build([]corev1.Service{svc}, []discoveryv1.EndpointSlice{sl, orphan}, []corev1.Pod{pod})
	s := v.Service("lab", "web")
	if s == nil || len(s.Endpoints) != 3 {
		t.Fatalf("service %+v", s)
	}
	got := s.ReadyEndpoints(s.Ports[0])
	if len(got) != 2 || got[0].String() != "10.244.1.10:8080" || got[1].String() != "10.244.2.10:8080" {
		t.Errorf("ready endpoints %v, want 10.244.1.10:8080 10.244.2.10:8080", got)
	}
	if p := v.Pod("lab", "a"); p == nil || p.Node != "node1" || p.IP.String() != "10.244.1.10" {
		t.Errorf("pod %+v", p)
	}
}

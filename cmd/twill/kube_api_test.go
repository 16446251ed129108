package main

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/twillnet/twill/lease/kube/kubetest"
)

// TestTraceAndDoctorWithRealAPI runs `twill trace --kubeconfig` with pod
// and Service names that a real kube-apiserver resolves (the recorded
// F1 lab: node1's pod 10.244.1.10 calls lab/local-node1 on 10.96.1.1:80),
// and `twill doctor --kubeconfig` on a recorded node with that API.
func TestTraceAndDoctorWithRealAPI(t *testing.T) {
	s := kubetest.StartServer(t, kubetest.Options{})
	c := s.Client(kubetest.Admin)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services("lab").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "local-node1"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.1.1", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs: create the namespace's default
	// ServiceAccount that admission looks up.
	if _, err := c.CoreV1().ServiceAccounts("lab").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "node1-a"},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	p, err := c.CoreV1().Pods("lab").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No kubelet runs: set the pod's IP as the kubelet would.
	p.Status.PodIP, p.Status.PodIPs = "10.244.1.10", []corev1.PodIP{{IP: "10.244.1.10"}}
	if _, err := c.CoreV1().Pods("lab").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc := s.Kubeconfig(kubetest.Admin)

	out, code := runTraceCmd(t, "--kubeconfig", kc, "--snapshot", traceData+"f1-node1.json", "--snapshot", traceData+"healthy-node2.json",
		"--from", "lab/node1-a", "--to", "lab/local-node1:http")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the F1 path fails):\n%s", code, out)
	}
	for _, want := range []string{"--from pod lab/node1-a is 10.244.1.10", "--to service lab/local-node1 is 10.96.1.1:80", "FAILURES.md F1", "DNAT to 10.244.1.11:8080"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, code = runTraceCmd(t, "--kubeconfig", kc, "--snapshot", traceData+"f1-node1.json", "--from", "lab/node1-a", "--to", "lab/gone:80")
	if code != 2 || !strings.Contains(out, "no Service or pod lab/gone") {
		t.Errorf("unknown name: exit %d, output:\n%s", code, out)
	}

	cmd := newDoctorCmd()
	var o strings.Builder
	cmd.SetOut(&o)
	cmd.SetErr(&o)
	cmd.SetArgs([]string{"--kubeconfig", kc, "--snapshot", "../../doctor/testdata/lab-node1.json"})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	// lab/local-node1 has no EndpointSlice in this API, but the node's
	// rules send it to 10.244.1.11:8080: a stale endpoint (a warning).
	if err != nil || !strings.Contains(o.String(), "TW034") || !strings.Contains(o.String(), "(stale): 10.244.1.11:8080") {
		t.Errorf("doctor --kubeconfig: %v\n%s", err, o.String())
	}
}

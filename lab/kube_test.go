package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/twillnet/twill/lease/kube"
)

// kubeConfig is agentConfig for a kube-mode lab: the repo's
// bin/kube-apiserver and bin/kubectl (built by `make tools`).
func kubeConfig(t *testing.T, backend string, nodes, pods int) Config {
	t.Helper()
	c := agentConfig(t, backend, nodes, pods)
	c.Store = StoreKubernetes
	for _, b := range []struct {
		dst  *string
		name string
	}{{&c.KubeAPIServerBin, "kube-apiserver"}, {&c.KubectlBin, "kubectl"}} {
		p, err := filepath.Abs("../bin/" + b.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: run `make tools` first (it builds kube-apiserver and kubectl from k8s.io/kubernetes): %v", p, err)
		}
		*b.dst = p
	}
	return c
}

// TestKubeMode builds a vxlan lab whose agents lease through a real
// kube-apiserver (`lab up --store kubernetes`), each with a token bound to
// exactly the shipped ClusterRole, and checks what users depend on: agents
// ready, every pod reaches every pod, each Node carries the twill.io
// annotations and NetworkUnavailable=False, kubectl and twill doctor work
// through `lab exec`, the API objects match the pods, an agent whose role
// lacks 'patch nodes/status' says exactly that, and deleting a Node object
// makes the other nodes drop its route.
func TestKubeMode(t *testing.T) {
	needRoot(t)
	c := kubeConfig(t, BackendVXLAN, 3, 2)
	st := upLab(t, c)
	ctx := context.Background()
	admin, err := kubeAdmin(st)
	if err != nil {
		t.Fatal(err)
	}
	if !st.KubeMode() || st.Kube.APIServer.PID == 0 {
		t.Fatalf("state: store %q kube %+v", st.Store, st.Kube)
	}
	if err := WaitAgentsReady(ctx, st, 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if !strings.Contains(strings.Join(n.Agent.Argv, " "), "--store kubernetes --kubeconfig "+nodeKubeconfig(n.Root)) {
			t.Errorf("%s's agent does not lease through the API: %v", n.Name, n.Agent.Argv)
		}
	}
	t.Run("pod-to-pod", func(t *testing.T) { allPairs(t, st) })
	t.Run("services", func(t *testing.T) {
		for _, n := range st.Nodes {
			a, b := n.Pods[0], n.Pods[1]
			if line, err := Call(ctx, a.Namespace, LocalVIP(n.Index).String(), 2*time.Second, false); err != nil || !strings.HasPrefix(line, b.Name+" ") {
				t.Errorf("%s -> %s: %q, %v; want an answer from %s", a.Name, LocalVIP(n.Index), line, err, b.Name)
			}
		}
	})
	t.Run("nodes", func(t *testing.T) {
		for _, n := range st.Nodes {
			obj, err := admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if obj.Spec.PodCIDR != n.Subnet {
				t.Errorf("Node %s podCIDR %q, want %s", n.Name, obj.Spec.PodCIDR, n.Subnet)
			}
			want := map[string]string{
				kube.AnnotationPublicIP:    n.IP,
				kube.AnnotationBackendType: BackendVXLAN,
				kube.AnnotationBackendData: `{"VtepMAC":"` + n.VtepMAC + `"}`,
			}
			for k, v := range want {
				if got := obj.Annotations[k]; got != v {
					t.Errorf("Node %s annotation %s=%q, want %q", n.Name, k, got, v)
				}
			}
			if s := condition(obj, corev1.NodeNetworkUnavailable); s == nil || s.Status != corev1.ConditionFalse || s.Reason != kube.ConditionReason {
				t.Errorf("Node %s: NetworkUnavailable %+v, want False set by twill (the lab registered it True)", n.Name, s)
			}
		}
	})
	t.Run("workloads", func(t *testing.T) {
		for _, p := range allPods(st) {
			obj, err := admin.CoreV1().Pods(KubeNamespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if obj.Status.PodIP != p.IP || obj.Spec.NodeName != p.Node || obj.Status.Phase != corev1.PodRunning {
				t.Errorf("Pod %s: ip %s node %s phase %s; want %s on %s, Running", p.Name, obj.Status.PodIP, obj.Spec.NodeName, obj.Status.Phase, p.IP, p.Node)
			}
		}
		svc, err := admin.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil || svc.Spec.ClusterIP != KubernetesVIP.Addr().String() {
			t.Errorf("default/kubernetes: %v %v; want ClusterIP %s (the lab's rules use it)", svc, err, KubernetesVIP.Addr())
		}
		slices, err := admin.DiscoveryV1().EndpointSlices(KubeNamespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err != nil || len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != len(allPods(st)) {
			t.Errorf("EndpointSlices of lab/web: %v %+v", err, slices)
		}
	})
	t.Run("kubectl-via-lab-exec", func(t *testing.T) {
		out, err := exec.Command(c.Self, "lab", "exec", "--name", st.Name, "node1", "--", "kubectl", "get", "nodes", "-o", "name").CombinedOutput()
		if err != nil || strings.Count(string(out), "node/") != len(st.Nodes) {
			t.Errorf("lab exec node1 -- kubectl get nodes: %v\n%s", err, string(out))
		}
	})
	t.Run("doctor", func(t *testing.T) {
		for _, n := range st.Nodes {
			out, err := labExec(t, st, n.Name, c.Self, "doctor")
			if err != nil || strings.Contains(out, "ERROR") {
				t.Errorf("twill doctor on %s (via lab exec): %v\n%s", n.Name, err, out)
			}
		}
	})
	t.Run("status", func(t *testing.T) {
		r, err := Status(ctx, st.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Healthy || r.KubeAPIServer == nil || !r.KubeAPIServer.Ready {
			t.Errorf("status: healthy=%v apiserver %+v problems %v", r.Healthy, r.KubeAPIServer, r.Problems)
		}
	})
	t.Run("missing-nodes-status-permission", func(t *testing.T) {
		limitedAgentFails(t, st, admin)
	})
	t.Run("node-deleted", func(t *testing.T) {
		gone := st.Nodes[2]
		for _, n := range st.Nodes[:2] {
			if routeTo(t, &n, gone.Subnet) == "" {
				t.Fatalf("%s has no route to %s before the delete", n.Name, gone.Subnet)
			}
		}
		if err := KubeNodeDelete(ctx, st.Name, gone.Name, testWriter{t}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for _, n := range st.Nodes[:2] {
			for routeTo(t, &n, gone.Subnet) != "" {
				if time.Now().After(deadline) {
					t.Fatalf("%s still routes %s 15s after Node %s was deleted:\n%s", n.Name, gone.Subnet, gone.Name, routeTo(t, &n, gone.Subnet))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		// The remaining nodes still talk.
		a, b := st.Nodes[0].Pods[0], st.Nodes[1].Pods[0]
		if _, err := Call(ctx, a.Namespace, b.IP+":8080", 2*time.Second, false); err != nil {
			t.Errorf("%s -> %s after the delete: %v", a.Name, b.Name, err)
		}
	})
}

// condition returns the node's condition of type ct, or nil.
func condition(n *corev1.Node, ct corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == ct {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// routeTo is node n's route to subnet ("" when there is none).
func routeTo(t *testing.T, n *Node, subnet string) string {
	t.Helper()
	out, err := runIn(context.Background(), n.Namespace, "", "ip", "route", "show", subnet)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// limitedAgentFails replaces node3's agent by one whose identity (a real
// ServiceAccount token) is bound to the shipped rules minus 'patch' on
// 'nodes/status', and checks that it says so and leaves the condition
// alone; then it puts node3's real agent back.
func limitedAgentFails(t *testing.T, st *State, admin kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := &st.Nodes[2]
	var rules []rbacv1.PolicyRule
	for _, r := range kube.RBACRules() {
		if len(r.Resources) == 1 && r.Resources[0] == "nodes/status" {
			continue
		}
		rules = append(rules, r)
	}
	if len(rules) != len(kube.RBACRules())-1 {
		t.Fatalf("the shipped rules have no separate nodes/status rule: %+v", kube.RBACRules())
	}
	const name = "twill-no-status"
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"}}
	if _, err := admin.CoreV1().ServiceAccounts("kube-system").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "kube-system"}}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s: %v", name, err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, kubeconfigYAML(st.Kube.URL, st.Kube.CAFile, name, tok.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := AgentControl(ctx, st.Name, n.Name, AgentStop, testWriter{t}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := AgentControl(context.Background(), st.Name, n.Name, AgentStart, testWriter{t}); err != nil {
			t.Errorf("restart node3's real agent: %v", err)
		}
	})
	// The condition back to True, as before any agent ran.
	patch := `{"status":{"conditions":[{"type":"NetworkUnavailable","status":"True","reason":"LabTest","message":"reset by the test"}]}}`
	if _, err := admin.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{}, n.Agent.Argv...)
	for i := range argv {
		if argv[i] == "--kubeconfig" {
			argv[i+1] = kc
		}
		if argv[i] == "--health-addr" {
			argv[i+1] = "127.0.0.1:9474"
		}
	}
	logPath := filepath.Join(t.TempDir(), "limited-agent.log")
	p, err := startDaemon(n.Namespace, argv, logPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(p.PID, syscall.SIGTERM)
		waitGone([]int{p.PID}, 5*time.Second)
	}()
	want := "twill needs 'patch' on 'nodes/status'"
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), want) {
			t.Logf("the agent says: %s", lineWith(string(b), want))
			break
		}
		if time.Now().After(deadline) || !p.Alive() {
			t.Fatalf("an agent without 'patch nodes/status' did not say %q within 20s (alive %v); log:\n%s", want, p.Alive(), tail(logPath, 15))
		}
		time.Sleep(200 * time.Millisecond)
	}
	obj, err := admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := condition(obj, corev1.NodeNetworkUnavailable); s == nil || s.Status != corev1.ConditionTrue {
		t.Errorf("NetworkUnavailable %+v after an agent without the permission ran, want still True", s)
	}
}

// lineWith is the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

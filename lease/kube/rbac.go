package kube

import (
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterRoleName is the name of the ClusterRole twill ships.
const ClusterRoleName = "twill"

// RBACRules are exactly the permissions the Kubernetes store uses, and so
// the rules of the ClusterRole twill ships (deploy/twill.yaml (ClusterRole twill), the lab):
//
//	nodes         get, list, watch   Acquire reads its Node; Watch and KeepAlive run Node informers
//	nodes         patch              publish and remove the twill.io/* annotations
//	nodes/status  patch              set the NetworkUnavailable=False condition
//	events        create, patch      Warning Events on the Node and the agent's pod (no podCIDR); patch counts repeats
//
// Nothing else: no update/delete, no secrets, no pods.
func RBACRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
}

// ClusterRole returns the ClusterRole named ClusterRoleName with RBACRules.
func ClusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: ClusterRoleName, Labels: map[string]string{"app.kubernetes.io/name": "twill"}},
		Rules:      RBACRules(),
	}
}

// ClusterRoleYAML returns ClusterRole as a YAML manifest, for deploy/ and
// `kubectl apply -f -`. The ClusterRoleBinding (to the DaemonSet's
// ServiceAccount) is the deployment's.
func ClusterRoleYAML() string {
	var b strings.Builder
	b.WriteString("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n")
	fmt.Fprintf(&b, "  name: %s\n  labels:\n    app.kubernetes.io/name: twill\nrules:\n", ClusterRoleName)
	quoted := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	for _, r := range RBACRules() {
		fmt.Fprintf(&b, "  - apiGroups: %s\n    resources: %s\n    verbs: %s\n", quoted(r.APIGroups), quoted(r.Resources), quoted(r.Verbs))
	}
	return b.String()
}

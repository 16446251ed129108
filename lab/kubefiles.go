package lab

import (
	"net"
	"path/filepath"
	"time"

	"github.com/twillnet/twill/kubecreds"
)

// Kubernetes mode: the credentials and files of the lab's kube-apiserver.

// KubeAdmin is the lab's admin token user (group system:masters): the lab
// itself and `lab exec ... kubectl` act as it.
const KubeAdmin = "admin"

// KubeNodeUser is the token user of node i's agent, bound to exactly the
// ClusterRole twill ships (kube.ClusterRole).
func KubeNodeUser(node string) string { return "twill-" + node }

// kubeDir is where lab name keeps its API server's files.
func kubeDir(name string) string { return filepath.Join(StateDir(name), "kube") }

// newKubeFiles names the files of lab name's API server (nothing is written).
func newKubeFiles(name string) kubecreds.Files { return kubecreds.Paths(kubeDir(name)) }

// writeKubeFiles generates the lab API server's credentials: a serving
// certificate for its lab address, the kubernetes Service VIP and names.
func writeKubeFiles(f kubecreds.Files, users []kubecreds.User) error {
	ips := []net.IP{UnderlayGateway.AsSlice(), KubernetesVIP.Addr().AsSlice(), net.IPv4(127, 0, 0, 1)}
	return kubecreds.Write(f, "twill lab CA", ips, 365*24*time.Hour, users)
}

// kubeconfigYAML renders a kubeconfig for a token user of the lab's API server.
func kubeconfigYAML(server, caFile, user, token string) []byte {
	return kubecreds.Kubeconfig("twill-lab", server, caFile, user, token)
}

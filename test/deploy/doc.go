// Package deploy holds the tests of deploy/twill.yaml, the manifests that
// install twill as a DaemonSet. They need no root: a real kube-apiserver
// (bin/kube-apiserver, via lease/kube/kubetest) accepts the manifests with
// `kubectl apply --dry-run=server` (the real bin/kubectl), the ClusterRole
// in the manifest is the one twill's code ships (kube.RBACRules), and the
// DaemonSet passes only flags that `twill agent` really has.
//
// Run `make tools` first: it builds bin/kube-apiserver and bin/kubectl.
package deploy

// Package e2e holds the end-to-end tests: they build the twill binary, bring
// up a lab (network namespaces, a real etcd, pods, kube-proxy-style rules)
// and drive it only through the CLI, the way a user does. They need root and
// fail loudly without it.
package e2e

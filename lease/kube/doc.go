// Package kube is the Kubernetes implementation of lease.Store: the mode
// Flannel calls --kube-subnet-mgr. Nothing is allocated by twill here; the
// API server is the source of truth:
//
//   - a node's subnet is its Node.spec.podCIDR, as kube-controller-manager
//     assigns it (--allocate-node-cidrs --cluster-cidr=<Network>) or an
//     administrator sets it;
//   - what the peers need (underlay address, backend type, VTEP MAC) is
//     published as annotations on the node's own Node object (twill.io/*),
//     written with a merge patch and re-asserted by KeepAlive;
//   - the peers are followed with a Node informer: Watch sends the full set
//     of nodes that have a podCIDR and twill's annotations, debounced;
//   - SetNetworkAvailable sets the node condition NetworkUnavailable=False
//     (reason TwillIsUp) through the nodes/status subresource.
//
// The network config (net-conf.json) is not read from the API: Config
// returns lease.ErrNoConfig and the agent takes it from --net-conf (the
// twill ConfigMap, mounted into the pod).
//
// The permissions it needs are exactly RBACRules (nodes get/list/watch/patch,
// nodes/status patch); a missing one is reported as
// "forbidden: twill needs 'patch' on 'nodes/status' — see deploy/twill.yaml (ClusterRole twill)".
//
// Package kubetest runs a real kube-apiserver for the tests.
package kube

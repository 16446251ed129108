// Package kubeview is what `twill doctor` and `twill trace` need to know
// from the Kubernetes API, as plain values: Services (ClusterIP and ports)
// with the endpoints their EndpointSlices list, and Pods (node and IP).
//
// view.go and resolve.go are pure (build a View by hand in tests); load.go
// reads one from a live API server with client-go (Load), using the same
// config rules as the agent: --kubeconfig, else the pod's in-cluster
// ServiceAccount, else $KUBECONFIG.
package kubeview

// Package kubeview is what `twill doctor` and `twill trace` need to know
// from the Kubernetes API, as plain values: Services (ClusterIP and ports)
// with the endpoints their EndpointSlices list, and Pods (node and IP).
//
// The package is pure (build a View by hand in tests) and imports no
// Kubernetes client: package kubeview/apiload reads a View from a live API
// server with client-go (apiload.Load), using the same config rules as the
// agent: --kubeconfig, else the pod's in-cluster ServiceAccount, else
// $KUBECONFIG.
package kubeview

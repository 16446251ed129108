// Package kubeproxyflows proves `twill trace` against kube-proxy's own
// expectations of where a packet goes. kube-proxy's unit tests
// (k8s.io/kubernetes pkg/proxy/iptables and pkg/proxy/nftables,
// runPacketFlowTests) state for each flow which endpoints a packet is
// DNATed to, whether it is masqueraded, or that it is dropped or rejected.
// The test here runs the real kube-proxy (bin/kube-proxy, dual-stack, in
// --proxy-mode iptables and nftables) in a network namespace against a real
// kube-apiserver, creates IPv4 and IPv6 Services and EndpointSlices modelled
// on those unit tests, captures the namespace as doctor and trace do and
// traces every flow with package trace: the simulator must reach the
// outcome kube-proxy's tests expect, in both modes and both families.
// Its test needs root; see kubeproxyflows_test.go.
package kubeproxyflows

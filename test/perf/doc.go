// Package perf holds twill's root benchmarks: how long the real agent takes
// to program thousands of peers and how much memory it uses doing it, how
// fast a new node's lease reaches every peer's kernel, and pod-to-pod
// throughput as a ratio of the underlay, for vxlan and host-gw.
//
// The benchmarks build throwaway clusters of network namespaces (package
// backend/testbed), run a real etcd inside the underlay namespace and the
// real `twill agent` binary as separate processes (so their memory can be
// read from /proc), and remove everything when they end. They need root and
// fail, not skip, without it. Run them one at a time:
//
//	go test -run '^$' -bench . -benchtime=1x -timeout 30m ./test/perf
//
// docs/performance.md explains every metric and records the figures
// measured on the development machine. The non-test files of this package
// are the pure pieces (percentiles, /proc status and iperf3 JSON parsing,
// fake lease generation); they have unit tests that need no root.
package perf

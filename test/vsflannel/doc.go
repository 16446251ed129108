// Package vsflannel measures twill beside Flannel in the same run, on the
// same lab harness: two 3-node labs (package lab), one whose nodes run
// `twill agent` and one whose nodes run the real flanneld (bin/flanneld,
// `twill lab up --flannel-nodes 3`), built side by side for each backend
// (vxlan, host-gw). BenchmarkVsFlannel reports, for each daemon:
//
//   - convergence: from a node's lease appearing in etcd until every other
//     node has its route (and, for vxlan, its neighbour and FDB entry) and a
//     ping from a pod on every other node reaches a pod on it;
//   - the resident memory of the daemon process in steady state;
//   - pod-to-pod TCP throughput across nodes as a ratio of the underlay's,
//     measured alternately in the same run with a small Go sender and
//     receiver opened inside the namespaces (no iperf).
//
// The CNI ADD/DEL side of the comparison is cni.BenchmarkCNIAddDelVsFlannel.
// `make bench` (scripts/bench.sh) runs both and prints one table with
// twill, Flannel and ratio columns, also written to docs/benchmarks.md.
//
// The benchmarks need root and fail, not skip, without it. Run them with
//
//	go test -run '^$' -bench VsFlannel -benchtime 1x -timeout 20m ./test/vsflannel
//
// The non-test files are the pure pieces (ICMP echo encoding, rates,
// medians), unit-tested without root.
package vsflannel

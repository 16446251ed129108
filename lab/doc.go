// Package lab builds a whole virtual twill cluster on one machine out of
// network namespaces, so that twill can be demonstrated, tested end to end and
// taught without any real nodes.
//
// A lab named "twill" is made of:
//
//	twill-underlay     the L2 switch: bridge br0 (192.168.77.1/24) and a real etcd
//	twill-node1..N     nodes: eth0 192.168.77.(10+i) on br0, cni0 10.244.i.1/24,
//	                   vxlan twill.1 (or host-gw routes), kube-proxy style iptables
//	twill-node1-a..    pods: eth0 10.244.i.(10+k), running `twill lab serve`
//
// Nothing is created in the root network namespace. Every namespace a lab
// creates starts with "<name>-", and its state lives in /run/twill-lab/<name>/
// (state.json, etcd data, logs, per-node file roots), so labs with different
// names coexist.
//
// The pod network is programmed statically here (the way Flannel would), and
// scenarios (see Scenarios) break a node exactly the way FAILURES.md
// describes, so that `twill doctor` can be shown to find and fix it.
//
// Entry points: Up, Down, Load/Status, Exec target resolution (Target), Call,
// Serve, Break, Fix and Demo. The CLI in cmd/twill/lab.go is a thin shell
// around them.
package lab

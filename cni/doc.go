// Package cni is twill's CNI plugin (installed as /opt/cni/bin/twill, built
// from cmd/twill-cni). It gives a pod its network on a twill (or Flannel)
// node: the node bridge cni0 with the node subnet's first address as the
// pods' gateway, a veth pair whose pod end is created directly inside the
// pod's network namespace, an address from the node subnet (persistent,
// file-locked IPAM in host-local's on-disk format), routes, hairpin mode and
// the pod MTU from the node's subnet file.
//
// It implements CNI spec 1.1: ADD, DEL, CHECK, STATUS and GC. The files it
// reads and writes live under TWILL_ROOT (default "/"), so several simulated
// nodes on one machine (the lab) each use their own files.
//
// The pure parts (configuration, address ranges, results) are separate from
// the kernel adapters (bridge.go, veth.go, podnet.go), which use netlink
// and never run the `ip` command.
package cni

// Package nodestate is the model of one network namespace's state: links,
// addresses, routes, policy rules, neighbours, bridge FDB, the sysctls that
// decide pod networking, netfilter rule dumps of both iptables backends and of
// nftables, CNI files and overlay leases.
//
// Everything twill reasons about (doctor checks, the packet tracer, the agent's
// drift repair) is a pure function over a Snapshot. A Snapshot is captured live
// by the capture code in this package (netlink, /proc, iptables-save, nft) or
// loaded from a versioned JSON file written by `twill snapshot`.
package nodestate

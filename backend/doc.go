// Package backend turns leases into the kernel objects that connect this
// node's pods to the other nodes' pods, as plain data:
//
//   - Compute (pure) maps the node's lease, its peers' leases and the network
//     config to the Desired state: for vxlan the device twill.<VNI>, its
//     address, and per peer a route, a permanent neighbour and an FDB entry
//     (or, with DirectRouting, a plain route to peers on the same segment);
//     for host-gw one route per peer via the peer's underlay address.
//   - Diff (pure) compares Desired with an observed nodestate.Snapshot and
//     returns the Changes that make the kernel match, touching only objects
//     twill owns (see Ownership).
//
// Package backend/kernel applies the Changes with netlink inside a network
// namespace; it is the only part that has side effects. Together they are
// the agent's reconcile step and its drift repair: re-running them on an
// unchanged node is a no-op.
package backend

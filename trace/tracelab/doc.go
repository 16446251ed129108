// Package tracelab connects the packet simulator (package trace) to a
// running lab: it captures the lab's nodes into a trace.World with the lab's
// pods (World), and sends one real probe with nftrace on to show the
// kernel's own trace beside the simulation (Live, `twill trace --live`).
// It lives apart from trace so that the simulator does not depend on the
// lab, etcd or Kubernetes clients.
package tracelab

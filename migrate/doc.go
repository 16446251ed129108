// Package migrate moves one node from Flannel to twill and back without
// touching its running pods: the node keeps its subnet (the agent and
// flanneld both adopt the lease of the node's PublicIP), its pods keep
// their addresses and their host-local allocations (the CNI network name
// stays Flannel's "cbr0"), and the other's vxlan device, rules and files
// are removed so the next daemon starts cleanly.
//
// PlanFor is the pure core: a function from the observed node state
// (Observed) to the ordered steps (Plan). Observe and Apply are the thin
// adapters that read the node and carry the steps out.
package migrate

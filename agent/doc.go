// Package agent is the node daemon behind `twill agent`: it leases the node's
// pod subnet, programs the overlay (package backend) and twill's firewall
// (package firewall), sets the kernel prerequisites, writes the subnet file
// for the CNI plugin, and then keeps all of it true: every resync interval it
// captures the node's state, compares it with the desired state and repairs
// what drifted, logging and counting each repair.
//
// Restarting the agent never disturbs running pods: it finds its own lease,
// device and rules in place and changes nothing that is already right.
package agent

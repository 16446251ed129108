// Package kernel applies backend.Changes to a network namespace through
// netlink (github.com/vishvananda/netlink; no `ip` commands) and tears
// twill's backend objects down again.
//
// Apply is idempotent and gentle: adds use replace semantics, an existing
// vxlan device is fixed in place (MTU, MAC, up) rather than re-created, and
// objects that are already gone are not an error. Re-applying the changes
// Diff computes for an unchanged node does nothing at all, so restarting the
// agent never flaps a route or a link that running pods depend on.
package kernel

// Package doctor checks one node's network state for the failures listed in
// FAILURES.md and reports each as a Finding: a stable ID users can grep and
// suppress (TW002), a severity, a one-line title in the style kubeadm's
// preflight checks made familiar, the evidence found, what it breaks, and
// the exact fix.
//
// Checks are pure functions over a nodestate.Snapshot, so the same code runs
// on a live node, on a snapshot file from a support ticket, and in unit tests.
// Fixes are returned as data (Actions); package remedy applies them.
package doctor

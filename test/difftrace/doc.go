// Package difftrace proves `twill trace` against the real kernel: it builds
// labs, mutates their rules and overlay state at random, sends real TCP
// probes between pods and compares each probe's result with what the
// simulator predicts. Its tests need root; see difftrace_test.go.
package difftrace

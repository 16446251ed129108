// Package flannel pins github.com/flannel-io/flannel for the lab's flanneld
// (./flanneld), built into bin/ by scripts/setup.sh.
package flannel

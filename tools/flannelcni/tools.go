//go:build tools

// Package flannelcni pins Flannel's CNI plugin for the lab's Flannel nodes,
// built into bin/cni/flannel by scripts/setup.sh. Its home today,
// github.com/flannel-io/cni-plugin, is refused by the Go module proxy here;
// the same plugin lived in github.com/containernetworking/plugins
// (plugins/meta/flannel) until v0.9.1, the release pinned here, before it
// moved there. It reads /run/flannel/subnet.env and delegates to bridge
// with host-local, as kube-flannel's conflist has it do.
package flannelcni

import _ "github.com/containernetworking/plugins/plugins/meta/flannel"

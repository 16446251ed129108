//go:build tools

// Package cniplugins pins the version of the upstream CNI plugins: loopback
// is shipped in twill's image (containerd 1.6 and 1.7 run it for every pod
// sandbox; make image builds it with CGO_ENABLED=0); bridge and host-local
// are what Flannel's CNI plugin delegates to, and portmap what
// kube-flannel's conflist chains after it, built into bin/ by
// scripts/setup.sh for the lab's Flannel nodes (twill lab up --flannel-nodes).
package cniplugins

import (
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
)

//go:build tools

// Package containerd2 pins containerd 2.x for the real nodes of
// `twill lab up --kubernetes --containerd 2`: scripts/setup.sh --kube builds
// containerd, containerd-shim-runc-v2 and ctr from this module into
// bin/containerd2/ (CGO_ENABLED=0, without the btrfs, devmapper and zfs
// snapshotters). Debian's containerd 1.6 stays the default runtime.
package containerd2

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)

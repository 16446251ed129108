//go:build tools

// Package cniplugins pins the version of the upstream CNI plugins shipped in
// twill's image (only loopback: containerd 1.6 and 1.7 run it for every pod
// sandbox). make image builds it with CGO_ENABLED=0.
package cniplugins

import _ "github.com/containernetworking/plugins/plugins/main/loopback"

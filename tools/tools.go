//go:build tools

// Package tools pins the versions of the upstream programs the lab and the
// tests run (etcd, cnitool); scripts/setup.sh builds them into bin/.
package tools

import (
	_ "github.com/containernetworking/cni/cnitool/cmd"
	_ "go.etcd.io/etcd/server/v3/etcdmain"
)

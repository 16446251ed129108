// Command twill-cni is twill's CNI plugin, installed as /opt/cni/bin/twill
// and named by "type": "twill" in the node's CNI conflist. Container
// runtimes run it; see docs/cni.md and package cni.
//
// Build: go build -o bin/twill-cni ./cmd/twill-cni
package main

import "github.com/twillnet/twill/cni"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { cni.Main(version) }

// Command etcd is the upstream etcd server, built from the Go module proxy so that
// the twill lab and tests run against a real etcd v3 without a downloaded binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }

// Command coredns is CoreDNS, built from github.com/coredns/coredns through
// the Go module proxy with only the plugins the twill lab's cluster DNS uses
// (the Corefile of `twill lab up --kubernetes`): the full build links every
// plugin CoreDNS has, clouds included, and takes over an hour on a small
// machine.
package main

import (
	"slices"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins linked in; each registers itself with caddy.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// linkedDirectives keeps upstream's directive order (the order plugins see a
// query in) but only the plugins this binary registered, so a Corefile naming
// any other plugin fails with CoreDNS's own "unknown directive" error.
func linkedDirectives(all []string, registered []string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(d string) bool {
		return !slices.Contains(registered, "dns."+d)
	})
}

func main() {
	dnsserver.Directives = linkedDirectives(dnsserver.Directives, caddy.ListPlugins()["others"])
	coremain.Run()
}

// Command twill-testserver is the lab's pod server as a container image
// (twill lab up --kubernetes): on TCP and UDP port 8080 it answers with one
// line "<pod name> <client ip:port as seen here>", and on TCP port 8081 it
// greets the same way and echoes every line (see package labserve). The pod
// name is $POD_NAME (the Downward API), else the host name.
//
// With --call host:port it is a client instead: it resolves host with the
// pod's resolver (so through the cluster DNS, search path included),
// connects to it, prints "<host> -> <addresses>: <server's line>" and exits
// (1 on failure, with the reason on stderr). Run it in a pod with
// `kubectl exec`:
//
//	twill-testserver [--port 8080] [--echo-port 8081]
//	twill-testserver --call web:80 [--timeout 5s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twillnet/twill/labserve"
)

func main() {
	port := flag.Int("port", 8080, "TCP and UDP port of the line server")
	echo := flag.Int("echo-port", 8081, "TCP port of the line echo (0: none)")
	call := flag.String("call", "", "client mode: resolve and call this host:port, print the answer, exit")
	timeout := flag.Duration("timeout", 5*time.Second, "client mode: bound of the lookup and the call")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *call != "" {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		a, err := labserve.CallName(cctx, *call)
		if err != nil {
			fmt.Fprintln(os.Stderr, "twill-testserver:", err)
			os.Exit(1)
		}
		fmt.Println(a)
		return
	}
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	if err := labserve.ServeEcho(ctx, name, *port, *echo); err != nil {
		fmt.Fprintln(os.Stderr, "twill-testserver:", err)
		os.Exit(1)
	}
}

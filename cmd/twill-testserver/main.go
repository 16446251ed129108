// Command twill-testserver is the lab's pod server as a container image
// (twill lab up --kubernetes): on TCP and UDP port 8080 it answers with one
// line "<pod name> <client ip:port as seen here>", and on TCP port 8081 it
// greets the same way and echoes every line (see package labserve). The pod
// name is $POD_NAME (the Downward API), else the host name.
//
//	twill-testserver [--port 8080] [--echo-port 8081]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/twillnet/twill/labserve"
)

func main() {
	port := flag.Int("port", 8080, "TCP and UDP port of the line server")
	echo := flag.Int("echo-port", 8081, "TCP port of the line echo (0: none)")
	flag.Parse()
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := labserve.ServeEcho(ctx, name, *port, *echo); err != nil {
		fmt.Fprintln(os.Stderr, "twill-testserver:", err)
		os.Exit(1)
	}
}

// Command twill-pause is the pod sandbox ("pause") process of the lab's real
// nodes (twill lab up --kubernetes): it holds the pod's namespaces, reaps
// the children it inherits as the pod's PID 1, and exits on SIGTERM or
// SIGINT. Its image is tagged as the sandbox image containerd is configured
// with, so no node ever pulls one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

// Package nsrun runs Go code and commands inside a named network namespace
// (one under /run/netns, as `ip netns add` creates them).
//
// Do locks the calling goroutine to its OS thread, switches that thread into
// the namespace, runs the function and switches back. Sockets opened, files
// under /proc/sys/net read, and processes started inside the function all
// belong to the target namespace. Processes started there keep running in it
// after Do returns, which is how the lab starts its daemons.
package nsrun

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// Do runs fn with the current OS thread in the named network namespace. An
// empty name runs fn in the caller's own namespace.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: current namespace: %w", name, err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w (does it exist? see `ip netns list`)", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: enter: %w", name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards it when the
			// goroutine exits, so no other goroutine runs in the wrong namespace.
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Output runs a command in the named namespace and returns its standard
// output. A failure includes the command line and its standard error.
func Output(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	var out []byte
	err := Do(ns, func() error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		var err error
		out, err = cmd.Output()
		if err != nil {
			where := ns
			if where == "" {
				where = "current netns"
			}
			return fmt.Errorf("%s (in %s): %w: %s", strings.Join(argv, " "), where, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	return out, err
}

// Run is Output for commands whose output is not needed.
func Run(ctx context.Context, ns string, argv ...string) error {
	_, err := Output(ctx, ns, argv...)
	return err
}

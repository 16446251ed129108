package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/twillnet/twill/nsrun"
)

// startDaemon starts argv inside namespace ns as a daemon: its own session,
// stdin from /dev/null, stdout and stderr appended to logPath. The child is
// reaped in the background so a dead daemon never looks alive.
func startDaemon(ns string, argv []string, logPath string, env []string) (Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Process{}, fmt.Errorf("start %s in %s: log: %w", argv[0], ns, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := nsrun.Do(ns, cmd.Start); err != nil {
		return Process{}, fmt.Errorf("start %s in %s: %w", argv[0], ns, err)
	}
	go cmd.Wait() //nolint:errcheck // reaping only; the daemon's fate is read from /proc
	return Process{PID: cmd.Process.Pid, Namespace: ns, Argv: argv, Log: logPath}, nil
}

// Alive tells whether the process still runs in its namespace.
func (p Process) Alive() bool { return inNS(p.PID, p.Namespace) }

// stopPIDs sends SIGTERM to every pid, waits up to grace for them to exit,
// then sends SIGKILL to the rest and waits up to two more seconds. It returns
// the pids that still exist after that.
func stopPIDs(pids []int, grace time.Duration) []int {
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		_ = syscall.Kill(pid, syscall.SIGCONT) // a paused agent acts on SIGTERM only once resumed
	}
	left := waitGone(pids, grace)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return waitGone(left, 2*time.Second)
}

// waitGone polls until none of pids exists (or is a zombie) or d has passed.
func waitGone(pids []int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		var left []int
		for _, pid := range pids {
			if exists(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// exists tells whether pid is a live (non-zombie) process.
func exists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return !(i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X'))
		}
	}
	return true
}

// runIn runs argv in namespace ns with stdin as its input and returns its
// standard output. Errors name the command, the namespace and stderr.
func runIn(ctx context.Context, ns, stdin string, argv ...string) (string, error) {
	var out string
	err := nsrun.Do(ns, func() error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		if stdin != "" {
			cmd.Stdin = stringReader(stdin)
		}
		var stdout, stderr limitedBuffer
		cmd.Stdout = &stdout
		cmd.Stderr = &stderr
		err := cmd.Run()
		out = stdout.Buffer.String()
		if err != nil {
			return fmt.Errorf("%s (in netns %s): %w: %s", joinArgv(argv), ns, err, stderr.String())
		}
		return nil
	})
	return out, err
}

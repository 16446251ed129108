package etcdtest

import (
	"os/exec"
	"runtime"
	"syscall"
)

// StartChild starts cmd so that the kernel kills it (SIGKILL) when the
// test process dies, however it dies: a test timeout, Ctrl-C, kill -9. No
// server is left behind holding ports and temporary directories.
//
// It uses Linux's parent-death signal, which fires when the *thread* that
// started the child ends, not the process. So the child is started from a
// goroutine locked to its OS thread that stays alive, blocked in Wait,
// for the child's whole life: the runtime never ends or reuses that thread
// meanwhile, and a caller whose own thread ends (a goroutine that locked
// its thread and returned) does not kill the child. The returned channel
// is closed once the child has exited and been reaped (cmd.ProcessState
// is then set).
func StartChild(cmd *exec.Cmd) (done <-chan struct{}, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait() //nolint:errcheck // the caller reads cmd.ProcessState
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

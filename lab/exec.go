package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/twillnet/twill/nsrun"
)

// Exec runs argv inside the namespace of target (a node, pod or "underlay")
// of lab name, with the terminal attached, TWILL_ROOT set to the node's root
// and TWILL_ETCD_ENDPOINTS to the lab's etcd. It returns argv's exit status.
// Ctrl-C goes to the command; Exec waits for it.
func Exec(name, target string, argv []string) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("lab exec: no command given")
	}
	st, err := Load(name)
	if err != nil {
		return 0, err
	}
	t, err := st.Find(target)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "TWILL_ETCD_ENDPOINTS="+st.EtcdEndpoint)
	if t.Node != nil {
		cmd.Env = append(cmd.Env, "TWILL_ROOT="+t.Node.Root)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := nsrun.Do(t.Namespace, cmd.Start); err != nil {
		return 0, fmt.Errorf("lab exec in %s: %w", t.Namespace, err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("lab exec in %s: %w", t.Namespace, err)
	}
	return 0, nil
}

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/twillnet/twill/nsrun"
)

// Exec runs argv inside the namespace of target (a node, pod or "underlay")
// of lab name, with the terminal attached, TWILL_ROOT set to the node's root
// and TWILL_ETCD_ENDPOINTS and TWILL_ETCD_PREFIX to the lab's etcd and prefix. In kube mode KUBECONFIG is the
// lab's admin kubeconfig and kubectl's directory leads PATH. It returns argv's exit status.
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
	cmd.Env = append(os.Environ(), "TWILL_ETCD_ENDPOINTS="+st.EtcdEndpoint, "TWILL_ETCD_PREFIX="+st.prefix())
	if t.Node != nil {
		cmd.Env = append(cmd.Env, "TWILL_ROOT="+t.Node.Root)
	}
	if st.KubeMode() {
		cmd.Env = append(cmd.Env, kubeExecEnv(st)...)
		if !strings.Contains(argv[0], "/") {
			// Resolve with the PATH the command gets (kubectl's directory first).
			if p, err := lookPathIn(argv[0], pathOf(cmd.Env)); err == nil {
				cmd.Path, cmd.Err = p, nil
			}
		}
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

// kubeExecEnv is what Exec adds in kube mode: KUBECONFIG (the admin's),
// TWILL_STORE=kubernetes (so twill commands read leases from the API) and
// PATH with kubectl's directory first.
func kubeExecEnv(st *State) []string {
	env := []string{"KUBECONFIG=" + st.Kube.AdminKubeconfig, "TWILL_STORE=kubernetes"}
	if st.Kube.KubectlBin != "" {
		env = append(env, "PATH="+filepath.Dir(st.Kube.KubectlBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	return env
}

// pathOf is the last PATH in env.
func pathOf(env []string) string {
	p := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			p = v
		}
	}
	return p
}

// lookPathIn finds an executable named file in the directories of path.
func lookPathIn(file, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", file, path)
}

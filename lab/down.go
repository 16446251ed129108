package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Down removes lab name: it stops the processes it recorded (etcd, agents,
// pod servers) and any other process living in the lab's namespaces, deletes
// every namespace named like the lab's (<name>-underlay, <name>-nodeN,
// <name>-nodeN-x) and removes /run/twill-lab/<name>. It works without (or
// with a corrupt) state.json, touches nothing not named like the lab's, and
// is idempotent. out receives progress (nil discards it). Agents get SIGTERM
// (paused ones are resumed first), on which they leave the node as it is:
// nothing like `twill uninstall` runs, and the node namespaces are deleted
// anyway.
func Down(ctx context.Context, name string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := requireRoot(); err != nil {
		return err
	}
	start := time.Now()
	var recorded, first []Process
	if st, err := Load(name); err == nil {
		recorded = st.processes()
		first = st.kubeletsAndProxies()
	}
	nss, err := labNamespaces(name)
	if err != nil {
		return err
	}
	cgroups := labCgroupDirs(name)
	_, stateErr := os.Stat(StateDir(name))
	if len(nss) == 0 && len(recorded) == 0 && len(cgroups) == 0 && os.IsNotExist(stateErr) {
		fmt.Fprintf(out, "Lab %q does not exist; nothing to do.\n", name)
		return nil
	}
	fmt.Fprintf(out, "Removing lab %q ...\n", name)
	var problems []string
	// Real nodes: kubelets and kube-proxies first (a kubelet would restart
	// the containers), then every process in the lab's cgroups (the
	// containers); the shims and containerd live in the node namespaces.
	var early []int
	for _, p := range first {
		if p.PID > 0 && p.Alive() {
			early = append(early, p.PID)
		}
	}
	if len(cgroups) > 0 { // without a state file: found by name in the node namespaces
		early = append(early, pidsNamed(pidsIn(nss), "kubelet", "kube-proxy")...)
	}
	early = append(early, pidsInCgroups(cgroupTree(cgroups))...)
	if left := stopPIDs(early, 3*time.Second); len(left) > 0 {
		problems = append(problems, fmt.Sprintf("processes %v did not exit after SIGKILL", left))
	}
	// Recorded processes first (etcd included), then anything else inside.
	var pids []int
	seen := map[int]bool{}
	for _, p := range recorded {
		if p.PID > 0 && (p.Alive() || sameCmdline(p.PID, p.Argv)) {
			pids = append(pids, p.PID)
			seen[p.PID] = true
		}
	}
	for _, pid := range pidsIn(nss) {
		if !seen[pid] {
			pids = append(pids, pid)
		}
	}
	if left := stopPIDs(pids, 3*time.Second); len(left) > 0 {
		problems = append(problems, fmt.Sprintf("processes %v did not exit after SIGKILL", left))
	}
	fmt.Fprintf(out, "  stopped %d processes\n", len(early)+len(pids))
	for _, ns := range nss {
		if err := deleteNS(ns); err != nil {
			problems = append(problems, err.Error())
		}
	}
	fmt.Fprintf(out, "  deleted %d namespaces\n", len(nss))
	if len(cgroups) > 0 {
		if err := removeCgroups(name); err != nil {
			problems = append(problems, err.Error())
		} else {
			fmt.Fprintf(out, "  removed cgroups %s\n", strings.Join(cgroups, ", "))
		}
	}
	if err := removeAllRetry(StateDir(name), 5*time.Second); err != nil {
		problems = append(problems, fmt.Sprintf("remove %s: %v", StateDir(name), err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("lab %s: down incomplete: %s", name, strings.Join(problems, "; "))
	}
	fmt.Fprintf(out, "Lab %q removed (%s).\n", name, since(start))
	return nil
}

// pidsNamed keeps the pids whose command name (/proc/<pid>/comm) is one of names.
func pidsNamed(pids []int, names ...string) []int {
	var out []int
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		for _, n := range names {
			if strings.TrimSpace(string(b)) == n {
				out = append(out, pid)
			}
		}
	}
	return out
}

// removeAllRetry removes dir, retrying for up to d while the kernel still
// holds mounts of a node namespace whose last process just exited.
func removeAllRetry(dir string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := os.RemoveAll(dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubeletsAndProxies lists the real nodes' kubelets and kube-proxies.
func (st *State) kubeletsAndProxies() []Process {
	var ps []Process
	for _, n := range st.Nodes {
		if n.Real != nil {
			ps = append(ps, n.Real.Kubelet, n.Real.KubeProxy)
		}
	}
	return ps
}

// processes lists every daemon the state records.
func (st *State) processes() []Process {
	ps := []Process{st.Etcd}
	if st.Kube != nil && st.Kube.APIServer.PID > 0 {
		ps = append(ps, st.Kube.APIServer)
	}
	if st.Real != nil {
		ps = append(ps, st.Real.ControllerManager, st.Real.Scheduler)
	}
	for _, n := range st.Nodes {
		if r := n.Real; r != nil {
			ps = append(ps, r.Kubelet, r.KubeProxy, r.Containerd, r.Anchor)
		}
		if n.Agent.PID > 0 {
			ps = append(ps, n.Agent)
		}
		for _, p := range n.Pods {
			ps = append(ps, p.Server)
		}
	}
	return ps
}

// sameCmdline tells whether pid runs exactly argv (used when the namespace
// it was recorded in is already gone).
func sameCmdline(pid int, argv []string) bool {
	if len(argv) == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	want := []byte(strings.Join(argv, "\x00") + "\x00")
	return bytes.Equal(b, want)
}

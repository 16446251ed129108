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
	var recorded []Process
	if st, err := Load(name); err == nil {
		recorded = st.processes()
	}
	nss, err := labNamespaces(name)
	if err != nil {
		return err
	}
	_, stateErr := os.Stat(StateDir(name))
	if len(nss) == 0 && len(recorded) == 0 && os.IsNotExist(stateErr) {
		fmt.Fprintf(out, "Lab %q does not exist; nothing to do.\n", name)
		return nil
	}
	fmt.Fprintf(out, "Removing lab %q ...\n", name)
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
	var problems []string
	if left := stopPIDs(pids, 3*time.Second); len(left) > 0 {
		problems = append(problems, fmt.Sprintf("processes %v did not exit after SIGKILL", left))
	}
	fmt.Fprintf(out, "  stopped %d processes\n", len(pids))
	for _, ns := range nss {
		if err := deleteNS(ns); err != nil {
			problems = append(problems, err.Error())
		}
	}
	fmt.Fprintf(out, "  deleted %d namespaces\n", len(nss))
	if err := os.RemoveAll(StateDir(name)); err != nil {
		problems = append(problems, fmt.Sprintf("remove %s: %v", StateDir(name), err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("lab %s: down incomplete: %s", name, strings.Join(problems, "; "))
	}
	fmt.Fprintf(out, "Lab %q removed (%s).\n", name, since(start))
	return nil
}

// processes lists every daemon the state records.
func (st *State) processes() []Process {
	ps := []Process{st.Etcd}
	if st.Kube != nil && st.Kube.APIServer.PID > 0 {
		ps = append(ps, st.Kube.APIServer)
	}
	for _, n := range st.Nodes {
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
